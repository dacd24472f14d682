//! Restoring stored logs without re-verifying every signature (keyd's start-up), and
//! incremental updates (a node pulling `?since=m:5,1:10`): the same state as full
//! verification, and any change, fork or gap refused.

mod common;

use common::{NOW, Tree, m, next_entry, p};
use keyd::chain::{Body, Chain, ChainError, Entry, Head, Revoke, Rule, encode_log, verify_file};
use keyd::derive::KeyPath;

/// The root log: genesis, certify m/1' (branch). The log of m/1': its anchor, nodes a
/// and b, a's epochs 0 and 1, b revoked by the branch. Heads signed at NOW.
fn chain(tree: &Tree) -> Chain {
    let mut c = tree.root_and_branch();
    for st in [
        tree.certify(&p("m/1'/1'/0'"), "a"),
        tree.certify(&p("m/1'/1'/1'"), "b"),
        tree.epoch(&p("m/1'/1'/0'"), 0),
        tree.epoch(&p("m/1'/1'/0'"), 1),
        tree.revoke(&p("m/1'/1'/1'"), &p("m/1'")),
    ] {
        c.append(&p("m/1'"), st, NOW).expect("valid chain");
    }
    tree.close(&mut c, NOW);
    c
}

fn branch_head(tree: &Tree, entries: &[Entry]) -> Head {
    tree.head(&p("m/1'"), entries, NOW)
}

/// A chain holding the root log of `c` (restored, fully verified).
fn with_root(c: &Chain) -> Chain {
    let mut r = Chain::new();
    r.restore_log(
        c.entries(&m()).to_vec(),
        c.head(&m()).expect("root head").clone(),
        false,
    )
    .expect("root log");
    r
}

/// Restores the branch log `entries` under `head` (trusted: links and the head only)
/// after the root log of `c`, and returns the refusal.
fn refused(c: &Chain, entries: Vec<Entry>, head: &Head) -> Rule {
    refusal(c, entries, head, true).rule
}

fn refusal(c: &Chain, entries: Vec<Entry>, head: &Head, trusted: bool) -> ChainError {
    with_root(c)
        .restore_log(entries, head.clone(), trusted)
        .expect_err("must be refused")
}

#[test]
fn restore_gives_the_verified_state_and_appends_stay_checked() {
    let tree = Tree::new(3);
    let b1 = p("m/1'");
    let w = chain(&tree);
    for trusted in [true, false] {
        let mut r = with_root(&w);
        r.restore_log(
            w.entries(&b1).to_vec(),
            w.head(&b1).expect("head").clone(),
            trusted,
        )
        .expect("restore");
        assert_eq!(r.entries(&b1), w.entries(&b1));
        assert_eq!(r.to_file(), w.to_file());
        r.check_complete().expect("complete");
        for path in [
            "m",
            "m/1'",
            "m/1'/1'/0'",
            "m/1'/1'/0'/0'/1'",
            "m/1'/1'/1'",
            "m/9'",
        ] {
            let path = p(path);
            let (a, b) = (r.state().key(&path), w.state().key(&path));
            assert_eq!(
                a.map(|k| (&k.keys, &k.kind, &k.revoked, k.published_at, k.seq)),
                b.map(|k| (&k.keys, &k.kind, &k.revoked, k.published_at, k.seq))
            );
            assert_eq!(
                r.state().status_at(&path, NOW),
                w.state().status_at(&path, NOW)
            );
        }
        assert_eq!(
            r.state().find("a").map(|(p, _)| p.clone()),
            Some(p("m/1'/1'/0'"))
        );
        assert_eq!(r.state().link(&b1), w.state().link(&b1));
        // Appending after a restore is fully checked again.
        r.append(&b1, tree.epoch(&p("m/1'/1'/0'"), 2), NOW)
            .expect("next epoch");
        let mut forged = tree.epoch(&p("m/1'/1'/0'"), 3);
        forged.signature[0] ^= 1;
        assert!(matches!(
            r.append(&b1, forged, NOW),
            Err(Rule::BadSignature { .. })
        ));
        // The revoked node signs nothing.
        let by_b = tree.certify_body(&p("m/1'/1'/1'/1'/0'"), "c");
        assert!(
            r.append(&b1, tree.sign(by_b, &p("m/1'/1'/1'")), NOW)
                .is_err()
        );
        // The head is signed again over the new entry.
        r.sign_head(&b1, &tree.signing_key(&b1), NOW + 1)
            .expect("head");
        verify_file(&r.to_file()).expect("verifies");
    }
}

#[test]
fn restore_refuses_changed_entries_and_heads() {
    let tree = Tree::new(4);
    let b1 = p("m/1'");
    let w = chain(&tree);
    let good = w.entries(&b1).to_vec();
    let head = branch_head(&tree, &good);
    assert_eq!(w.head(&b1), Some(&head));

    // The last entry changed (a revocation's target): the head no longer matches.
    let mut es = good.clone();
    if let Body::Revoke(Revoke { target, .. }) = &mut es[5].statement.body {
        *target = p("m/1'/1'/0'");
    }
    assert_eq!(refused(&w, es, &head), Rule::HeadHash);
    // A signature in the middle changed (a trusted restore does not check signatures):
    // the next link breaks.
    let mut es = good.clone();
    es[2].statement.signature[0] ^= 1;
    let e = refusal(&w, es.clone(), &head, true);
    assert_eq!(e.rule, Rule::BadPrev);
    assert_eq!((e.log, e.seq, e.position), (Some(b1.clone()), Some(3), 3));
    // ... and with every later link rewritten, the head still catches it.
    for i in 3..es.len() {
        es[i].prev = es[i - 1].hash();
    }
    assert_eq!(refused(&w, es.clone(), &head), Rule::HeadHash);
    // Under a head over the changed entries (signed by the branch key), a trusted
    // restore takes them: the head vouches for them. A full restore checks the
    // signature.
    let forged_head = branch_head(&tree, &es);
    with_root(&w)
        .restore_log(es.clone(), forged_head.clone(), true)
        .expect("the head vouches for its log");
    assert_eq!(
        refusal(&w, es, &forged_head, false).rule,
        Rule::BadSignature { signer: b1.clone() }
    );
    // Entries dropped from the end, or from the start.
    assert!(matches!(
        refused(&w, good[..5].to_vec(), &head),
        Rule::HeadMismatch { .. }
    ));
    assert!(matches!(
        refused(&w, good[1..].to_vec(), &head),
        Rule::OutOfOrder { .. }
    ));
    // A head not signed by the branch key: forged, signed by a node, by the root, or
    // by another tree's branch key.
    let mut forged = head.clone();
    forged.signature[3] ^= 8;
    assert!(matches!(
        refused(&w, good.clone(), &forged),
        Rule::BadSignature { .. }
    ));
    let last = good.last().expect("entries");
    for key in [
        tree.signing_key(&p("m/1'/1'/0'")),
        tree.signing_key(&m()),
        Tree::new(5).signing_key(&b1),
    ] {
        let by = Head::sign(b1.clone(), last.seq, last.hash(), NOW, &key);
        assert_eq!(
            refused(&w, good.clone(), &by),
            Rule::BadSignature { signer: b1.clone() }
        );
    }
    // The head of another log.
    let root_head = w.head(&m()).expect("root head").clone();
    assert!(matches!(
        refused(&w, good.clone(), &root_head),
        Rule::WrongLog { .. }
    ));
    // An entry of another log among the stored ones.
    let mut es = good.clone();
    es[2].log = p("m/2'");
    let e = refusal(&w, es, &head, true);
    assert!(matches!(e.rule, Rule::WrongLog { .. }), "{e}");
    assert_eq!(e.position, 2);
    // The branch log restored before the root log that certifies it.
    let e = Chain::new()
        .restore_log(good, head, true)
        .expect_err("no root log");
    assert_eq!(e.rule, Rule::UnknownLog { log: b1 });
}

/// The log a key's record names (derived from its path, not stored) is the log of the
/// entry that published it: the record's seq in that log holds the statement that
/// published its keys.
#[test]
fn every_key_is_published_in_the_log_its_path_names() {
    let tree = Tree::new(9);
    let mut c = chain(&tree);
    tree.open_branch(&mut c, &p("m/2'"), "second");
    c.append(&p("m/2'"), tree.epoch(&p("m/2'"), 0), NOW)
        .expect("the branch's own epoch");
    let mut checked = 0;
    for (path, record) in c.state().keys() {
        let log = keyd::chain::log_of(path);
        let entry = &c.entries(&log)[record.seq as usize];
        let published = match &entry.statement.body {
            Body::Genesis(g) => g.keys,
            Body::Certify(x) => x.keys,
            Body::Epoch(x) => x.keys,
            other => panic!("{path}: {} publishes no key", other.kind()),
        };
        assert_eq!(published, record.keys, "{path} in log {log}");
        checked += 1;
    }
    assert_eq!(checked, c.state().len());
    assert!(checked >= 8, "root, branches, nodes and epochs: {checked}");
}

/// keyd's start-up: rows decoded as stored (no re-encoding) and hashed as they are. The
/// same state as the canonical restore; a row rewritten in another encoding of the same
/// entry, or with its content changed, breaks its link or the head.
#[test]
fn restore_from_stored_bytes_refuses_rows_not_as_written() {
    use sha2::{Digest, Sha256};
    let tree = Tree::new(6);
    let b1 = p("m/1'");
    let w = chain(&tree);
    let head = w.head(&b1).expect("head").clone();
    let rows: Vec<Vec<u8>> = w.entries(&b1).iter().map(keyd::chain::cbor_bytes).collect();
    let restore = |rows: &[Vec<u8>]| {
        let entries: Vec<Entry> = rows
            .iter()
            .map(|r| keyd::chain::decode_hashed(r, keyd::chain::MAX_RECORD_BYTES))
            .collect::<Result<_, _>>()
            .expect("rows decode");
        let hashes: Vec<[u8; 32]> = rows.iter().map(|r| Sha256::digest(r).into()).collect();
        let mut c = with_root(&w);
        c.restore_hashed(entries, &hashes, head.clone()).map(|()| c)
    };
    let restored = restore(&rows).expect("rows as written");
    assert_eq!(restored.entries(&b1), w.entries(&b1));
    assert_eq!(restored.state().len(), w.state().len());

    // Entry 2 with its seq written in two bytes (0x18 0x02): valid CBOR, the same entry,
    // not the bytes that were hashed when it was appended.
    let mut longer = rows.clone();
    let at = longer[2]
        .windows(5)
        .position(|w| w == [0x63, b's', b'e', b'q', 0x02])
        .expect("seq field");
    longer[2].splice(at + 4..at + 5, [0x18, 0x02]);
    let same: Entry =
        keyd::chain::decode_hashed(&longer[2], keyd::chain::MAX_RECORD_BYTES).expect("decodes");
    assert_eq!(same, w.entries(&b1)[2]);
    let e = restore(&longer).expect_err("another encoding");
    assert_eq!((e.rule, e.seq), (Rule::BadPrev, Some(3)));

    // A byte of the last row's signature changed in place (a trusted restore checks
    // no signature): still an entry, not the one the head names.
    let mut edited = rows.clone();
    let last = edited.last_mut().expect("rows");
    let at = last
        .windows(9)
        .position(|w| w == b"signature")
        .expect("signature field");
    last[at + 9 + 2 + 5] ^= 0x01;
    keyd::chain::decode_hashed::<Entry>(last, keyd::chain::MAX_RECORD_BYTES).expect("decodes");
    assert_eq!(restore(&edited).expect_err("edited").rule, Rule::HeadHash);
    // Fewer hashes than entries.
    let entries = w.entries(&b1).to_vec();
    let e = with_root(&w)
        .restore_hashed(entries, &[[0; 32]], head.clone())
        .expect_err("hashes missing");
    assert!(matches!(e.rule, Rule::HeadMismatch { .. }), "{e}");
}

/// A node that holds verified logs pulls updates and verifies only them.
#[test]
fn incremental_updates_verify_and_refuse_forks_and_gaps() {
    let tree = Tree::new(6);
    let b1 = p("m/1'");
    let w = chain(&tree);
    let all = w.entries(&b1).to_vec();
    let root = w.file_of([&m()]);
    let head = branch_head(&tree, &all);
    let full = verify_file(&w.to_file()).expect("full");
    // A holder of the root log and of the first `n` entries of the branch log.
    let prefix = |n: usize| {
        let mut bytes = root.clone();
        encode_log(&mut bytes, &all[..n], Some(&branch_head(&tree, &all[..n])));
        verify_file(&bytes).expect("prefix")
    };
    let pull = |entries: &[Entry], head: Option<&Head>| {
        let mut bytes = Vec::new();
        encode_log(&mut bytes, entries, head);
        bytes
    };

    // From where the node stands: three new entries, the same state as the full file.
    let mut v = prefix(3);
    assert_eq!(v.update(&pull(&all[3..], Some(&head))).expect("update"), 3);
    assert_eq!(v.entries(&b1), full.entries(&b1));
    assert_eq!(v.head(&b1), full.head(&b1));
    assert_eq!(
        v.state().status_at(&p("m/1'/1'/1'"), NOW),
        full.state().status_at(&p("m/1'/1'/1'"), NOW)
    );
    assert_eq!(v.to_file(), w.to_file());
    // Overlapping entries are fine when identical; nothing new is fine.
    let mut v = prefix(3);
    assert_eq!(v.update(&pull(&all[1..], Some(&head))).expect("overlap"), 3);
    assert_eq!(v.update(&pull(&[], Some(&head))).expect("nothing new"), 0);
    // The root log's section repeated with the update is fine too.
    let mut v = prefix(3);
    let mut both = root.clone();
    both.extend(pull(&all[3..], Some(&head)));
    assert_eq!(v.update(&both).expect("both logs"), 3);

    // A different history for an entry the node holds: refused, naming the log.
    let mut forked = all.clone();
    forked[2].statement.signature[1] ^= 1;
    let mut v = prefix(4);
    let e = v
        .update(&pull(&forked[2..], Some(&head)))
        .expect_err("fork");
    assert_eq!(e.rule, Rule::Diverged { seq: 2 });
    assert_eq!((e.log, e.seq), (Some(b1.clone()), Some(2)));
    // A gap, or a head that does not close the update: refused.
    let mut v = prefix(3);
    let e = v.update(&pull(&all[4..], Some(&head))).expect_err("gap");
    assert_eq!(
        e.rule,
        Rule::OutOfOrder {
            expected: 3,
            found: 4
        }
    );
    assert_eq!(e.log, Some(b1.clone()));
    let mut v = prefix(3);
    let e = v
        .update(&pull(&all[3..5], Some(&head)))
        .expect_err("stale head");
    assert!(matches!(e.rule, Rule::HeadMismatch { .. }));
    // A page cut short (no head): taken, and the log is incomplete until its head.
    let mut v = prefix(3);
    assert_eq!(v.update(&pull(&all[3..4], None)).expect("page"), 1);
    assert_eq!(
        v.check_complete().expect_err("incomplete").rule,
        Rule::Incomplete {
            log: b1.clone(),
            head_seq: 2
        }
    );
    assert_eq!(v.update(&pull(&all[4..], Some(&head))).expect("rest"), 2);
    v.check_complete().expect("complete");
    // An entry repeated inside the update: refused as a duplicate.
    let mut v = prefix(3);
    let mut repeated = all[3..5].to_vec();
    repeated.push(all[3].clone());
    let e = v.update(&pull(&repeated, None)).expect_err("repeated");
    assert_eq!(
        e.rule,
        Rule::Duplicate {
            expected: 5,
            found: 3
        }
    );
    // A head older than the one held, over the same entries: a replay.
    let mut v = prefix(6);
    let newer = tree.head(&b1, &all, NOW + 10);
    v.update(&pull(&[], Some(&newer))).expect("newer head");
    assert_eq!(
        v.update(&pull(&[], Some(&head))).expect_err("older").rule,
        Rule::OlderHead {
            log: b1.clone(),
            signed_at: NOW,
            held: NOW + 10
        }
    );
}

/// Updates that bring new logs and grow the root log.
#[test]
fn updates_bring_new_logs() {
    let tree = Tree::new(7);
    let (b1, b2) = (p("m/1'"), p("m/2'"));
    let w = chain(&tree);
    let mut v = verify_file(&w.to_file()).expect("held");
    let mut src = w.clone();
    tree.open_branch(&mut src, &b2, "second");
    src.append(&b2, tree.certify(&p("m/2'/1'/0'"), "a"), NOW)
        .expect("a in m/2'");
    tree.close(&mut src, NOW + 1);
    let page = src.since(&v.positions(), 1000);
    assert!(page.complete);
    assert_eq!(v.update(&page.bytes).expect("update"), 3);
    assert_eq!(v.to_file(), src.to_file());
    assert_eq!(
        v.state().find_in("a", &b2).map(|(p, _)| p.clone()),
        Some(p("m/2'/1'/0'"))
    );
    assert_eq!(
        v.state().find_in("a", &b1).map(|(p, _)| p.clone()),
        Some(p("m/1'/1'/0'"))
    );
    // A branch log whose anchor names an entry the root log of the holder does not
    // have: the forged root log's certification differs.
    let mut forged = w.entries(&m()).to_vec();
    forged.push(next_entry(&m(), &forged, tree.certify(&b2, "other"), NOW));
    let mut bytes = Vec::new();
    encode_log(
        &mut bytes,
        &forged,
        Some(&tree.head(&m(), &forged, NOW + 2)),
    );
    let e = v.update(&bytes).expect_err("fork of the root log");
    assert_eq!(e.rule, Rule::Diverged { seq: 2 });
    assert_eq!(e.log, Some(KeyPath::root()));
}

/// keyd serving from its store: logs restored offloaded (only their hashes in memory)
/// give the same state, pages and files as logs held whole (the older entries read back
/// as stored), take repeated entries by their hash and refuse a changed one, and keep
/// what is appended after.
#[test]
fn offloaded_logs_serve_what_whole_logs_serve() {
    use std::collections::BTreeMap;
    let tree = Tree::new(8);
    let b1 = p("m/1'");
    let mut whole = chain(&tree);
    let rows: BTreeMap<KeyPath, Vec<Vec<u8>>> = whole
        .logs()
        .map(|(log, l)| {
            let rows = l.entries.iter().map(keyd::chain::cbor_bytes).collect();
            (log.clone(), rows)
        })
        .collect();
    let mut off = Chain::new();
    for (_, l) in whole.logs() {
        let hashes = l.entries.iter().map(Entry::hash).collect();
        off.restore_offloaded(l.entries.clone(), hashes, l.head.clone().expect("head"))
            .expect("restored offloaded");
    }
    let reads = std::cell::Cell::new(0);
    let older = |log: &KeyPath, seqs: std::ops::Range<u64>, out: &mut Vec<u8>| {
        for seq in seqs {
            reads.set(reads.get() + 1);
            keyd::chain::push_entry_record(out, &rows[log][seq as usize]);
        }
        Ok::<(), ()>(())
    };
    assert!(off.entries(&b1).is_empty());
    assert_eq!((off.len(), off.log_len(&b1)), (whole.len(), 6));
    assert_eq!(off.state().len(), whole.state().len());
    assert_eq!(off.entry_hash(&b1, 4), Some(whole.entries(&b1)[4].hash()));
    assert_eq!(off.positions(), whole.positions());
    assert_eq!(off.version(), whole.version());

    let check_pages = |off: &Chain, whole: &Chain| {
        for (held, limit) in [
            (BTreeMap::new(), 100),
            (BTreeMap::new(), 3),
            (BTreeMap::from([(m(), 2)]), 4),
            (BTreeMap::from([(m(), 2), (b1.clone(), 5)]), 100),
            (BTreeMap::from([(m(), 2), (b1.clone(), 6)]), 1),
        ] {
            let page = off.since_with(&held, limit, older).expect("page");
            let want = whole.since(&held, limit);
            assert_eq!(
                (page.bytes, page.complete),
                (want.bytes, want.complete),
                "{held:?} {limit}"
            );
        }
        let logs = [m(), b1.clone()];
        assert_eq!(
            off.file_of_with(&logs, older).expect("file"),
            whole.file_of(&logs)
        );
    };
    check_pages(&off, &whole);
    assert!(reads.get() > 0, "the offloaded entries were read back");

    // A pull repeating the held entries: taken by their hashes, nothing new.
    let everything = whole.since(&BTreeMap::new(), 100).bytes;
    assert_eq!(off.update(&everything).expect("repeats"), 0);
    // ... one of them changed (a byte of its signature): refused as a fork.
    let mut changed = everything.clone();
    let at = changed
        .windows(9)
        .enumerate()
        .filter(|(_, w)| *w == b"signature")
        .map(|(i, _)| i)
        .nth(4)
        .expect("a fifth entry");
    changed[at + 9 + 2 + 3] ^= 0x10;
    let e = off.update(&changed).expect_err("changed entry");
    assert!(matches!(e.rule, Rule::Diverged { .. }), "{e}");

    // Appends after the restore are held in memory and served with the older ones.
    for c in [&mut off, &mut whole] {
        c.append(&b1, tree.certify(&p("m/1'/1'/2'"), "c"), NOW)
            .expect("append");
        tree.close(c, NOW + 1);
    }
    assert_eq!(off.entries(&b1).len(), 1);
    assert_eq!(off.log(&b1).expect("log").first_held(), 6);
    check_pages(&off, &whole);
}
