"""Independent check of the chain vectors (docs/test-vectors.json, `chain`), written from
docs/formats/chain.md and DESIGN.md section 4 alone: a verifier of the links, the
signatures, the authority of certify (nodes and named keys), epoch, revoke, extend, rekey_order
and replica, the names of named keys, revoked
signers, the branch
anchors and the heads. Refusals carry the names keyd gives the same rules. Shares no
code with keyd. Used by check_test_vectors.py.
"""
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from check_envelopes import cbor, uncbor_at


class Refused(Exception):
    """A chain that breaks a rule; args[0] is the rule's name."""


def parse(path):
    return tuple(int(x[:-1]) for x in path.split("/")[1:])


def text(path):
    return "/".join(["m"] + [f"{i}'" for i in path])


def role(path):
    """'node' (m/i' then pairs 1',n'), 'named' (a node's 2',n'), 'epoch' (then 0',e'), or 'other'."""
    if not path:
        return "root"
    pairs = [path[i:i + 2] for i in range(1, len(path), 2)]
    if not pairs:
        return "node"
    if len(pairs[-1]) != 2:
        return "other"
    kind = "node"
    for i, (branch, _) in enumerate(pairs):
        last = i == len(pairs) - 1
        if branch == 1 and kind == "node":
            continue
        if branch == 2 and kind == "node" and i >= len(pairs) - 2:
            kind = "named"
        elif branch == 0 and last:
            return "epoch"
        else:
            return "other"
    return kind


def parent_node(path):
    # Nodes are m/i' and P/1'/n', named keys P/2'/n': certified by m for a level-1 node,
    # else by the node two levels up; nothing else is certified.
    if role(path) not in ("node", "named"):
        raise Refused("NotNode")
    return () if len(path) == 1 else path[:-2]


def verify(signer_key, message, signature):
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(signer_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        raise Refused("BadSignature")


class Chain:
    def __init__(self):
        self.keys = {}  # path -> ed25519 public key
        self.key_sets = {}  # node path -> its certified key set
        self.not_after = {}  # node path -> its end of validity
        self.revoked = set()
        self.logs = {}  # log -> (next seq, last hash, last appended_at)
        self.root_entries = {}  # seq -> hash of the root log's entries
        self.succeeded = False  # the root named its successor: its log ends there
        self.replicas = {}  # (branch log, name) -> [install key, removed]
        self.named = {}  # (owner, name) -> named key paths holding it

    def is_revoked(self, path):
        return any(path[:n] in self.revoked for n in range(1, len(path) + 1))

    def apply(self, entry):
        log = parse(entry["log"])
        seq, prev, at = self.logs.get(log, (0, bytes(32), 0))
        if entry["seq"] != seq:
            raise Refused("OutOfOrder")
        if entry["prev"] != prev:
            raise Refused("BadPrev")
        if entry["appended_at"] < at:
            raise Refused("TimeBackwards")
        st = entry["statement"]
        (kind, body), = st["body"].items()
        signer = parse(st["signer"])
        if kind == "certify":
            # A role key:<type> on named keys, and on them only.
            fits = {"named": True, "node": False}.get(role(parse(body["path"])))
            if fits is not None and fits != body["role"].startswith("key:"):
                raise Refused("Bounds")
        if kind == "genesis":
            key = body["keys"]["ed25519"]
        else:
            if signer not in self.keys:
                raise Refused("UnknownSigner")
            if self.is_revoked(signer):
                raise Refused("SignerRevoked")
            key = self.keys[signer]
        unsigned = {k: st[k] for k in ("v", "body", "signer", "issued_at")}
        verify(key, b"keyd/v1/statement\x00" + cbor(unsigned), st["signature"])
        if log == () and self.succeeded:
            raise Refused("AfterSuccession")
        if kind == "genesis":
            self.keys[()] = key
        elif kind == "certify":
            path = parse(body["path"])
            if signer != parent_node(path):
                raise Refused("NoAuthority")
            if role(path) == "named":
                # One live named key a name per owner.
                holders = self.named.setdefault((signer, body["name"]), [])
                if any(not self.is_revoked(h) for h in holders):
                    raise Refused("NameTaken")
                holders.append(path)
            self.keys[path] = body["keys"]["ed25519"]
            self.key_sets[path] = body["keys"]
            self.not_after[path] = body["not_after"]
        elif kind == "epoch":
            node = parse(body["node"])
            if signer != node:
                raise Refused("NoAuthority")
            self.keys[node + (0, body["epoch"])] = body["keys"]["ed25519"]
        elif kind == "revoke":
            target = parse(body["target"])
            if signer != target[:len(signer)]:
                raise Refused("NoAuthority")
            self.revoked.add(target)
        elif kind == "rekey_order":
            node = parse(body["node"])
            if node not in self.not_after:
                raise Refused("UnknownTarget")
            if signer == node or signer != node[:len(signer)]:
                raise Refused("NoAuthority")
            if self.is_revoked(node):
                raise Refused("AlreadyRevoked")
        elif kind == "extend":
            node = parse(body["node"])
            if node not in self.not_after:
                raise Refused("UnknownTarget")
            if signer != parent_node(node):
                raise Refused("NoAuthority")
            if self.is_revoked(node):
                raise Refused("AlreadyRevoked")
            if body["not_after"] <= self.not_after[node]:
                raise Refused("ValidityBackwards")
            self.not_after[node] = body["not_after"]
        elif kind == "anchor":
            if seq != 0 or signer != log or self.root_entries.get(body["root_seq"]) != body["root_entry"]:
                raise Refused("BadAnchor")
        elif kind == "succession":
            self.succeeded = True
        elif kind == "replica":
            if len(log) != 1 or signer != log:
                raise Refused("NoAuthority")
            if body["action"] not in ("add", "remove"):
                raise Refused("Bounds")
            known = self.replicas.get((log, body["name"]))
            if body["action"] == "add":
                if known is not None:
                    raise Refused("NameTaken")
                self.replicas[(log, body["name"])] = [body["install_key"], False]
            elif known is not None and known[1]:
                raise Refused("AlreadyRevoked")
            elif known is None or known[0] != body["install_key"]:
                raise Refused("UnknownTarget")
            else:
                known[1] = True
        elif kind not in ("trust", "untrust"):
            raise Refused("UnknownKind")
        digest = hashlib.sha256(cbor(entry)).digest()
        if log == ():
            self.root_entries[seq] = digest
        self.logs[log] = (seq + 1, digest, entry["appended_at"])

    def check_head(self, head):
        log = parse(head["log"])
        seq, last, _ = self.logs.get(log, (0, None, 0))
        if head["seq"] != seq - 1:
            raise Refused("HeadMismatch")
        if head["hash"] != last:
            raise Refused("HeadHash")
        unsigned = {k: head[k] for k in ("log", "seq", "hash", "signed_at")}
        verify(self.keys[log], b"keyd/v1/head\x00" + cbor(unsigned), head["signature"])


def verify_file(data):
    """Verifies a chain file; returns (entries, the chain's state), or raises Refused."""
    chain, entries, open_log, at = Chain(), 0, None, 0
    while at < len(data):
        record, at = uncbor_at(data, at)
        (kind, value), = record.items()
        if kind == "entry":
            open_log = value["log"]
            chain.apply(value)
            entries += 1
        else:
            chain.check_head(value)
            open_log = None
    if open_log is not None:
        raise Refused("LogWithoutHead")
    if entries == 0:
        raise Refused("NoHead")
    return entries, chain


def check(section):
    """The valid chain verifies; every invalid one is refused for its rule."""
    n, _ = verify_file(bytes.fromhex(section["valid"]))
    assert n == 13, n
    for v in section["invalid"]:
        try:
            verify_file(bytes.fromhex(v["file"]))
        except Refused as e:
            assert e.args[0] == v["rule"], (v["name"], e.args[0], v["rule"])
        else:
            raise AssertionError(f"{v['name']}: verifies")
    return 1 + len(section["invalid"])
