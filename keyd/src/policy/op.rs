//! The operations a policy names: every authenticated API operation, by name.

use std::fmt;

macro_rules! ops {
    ($($variant:ident = $name:literal: $doc:literal,)*) => {
        /// An operation of the API, as policies name it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Op {
            $(#[doc = $doc] $variant,)*
        }

        impl Op {
            /// Every operation, in order.
            pub const ALL: &'static [Op] = &[$(Op::$variant,)*];

            /// Its name in policies and in the API's messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)*
                }
            }

            /// What it does, in a phrase.
            pub fn describe(self) -> &'static str {
                match self {
                    $(Op::$variant => $doc,)*
                }
            }
        }
    };
}

ops! {
    Sign = "sign": "sign with one's own current epoch key",
    Verify = "verify": "check a signature and its key against the chain",
    Encrypt = "encrypt": "encrypt to a node (the target)",
    Decrypt = "decrypt": "open an envelope addressed to oneself",
    Seal = "seal": "seal data for one's own storage",
    Unseal = "unseal": "open what one sealed",
    Rewrap = "rewrap": "re-seal under one's current epoch",
    Datakey = "datakey": "a fresh data key and its sealed form",
    Rekey = "rekey": "move to one's next epoch",
    Renew = "renew": "a fresh client certificate for oneself",
    KeyCreate = "key.create": "create a named key of one's own",
    KeyRead = "key.read": "list and read one's own named keys",
    KeyRotate = "key.rotate": "move one's own named key to a new version",
    KeyConfig = "key.config": "set which versions of one's own named key decrypt and encrypt, and whether it may be deleted",
    KeyDelete = "key.delete": "delete one's own named key (a revocation)",
    NodeAdd = "node.add": "create a node below the target (its parent)",
    NodeList = "node.list": "list the nodes of the branch",
    NodeShow = "node.show": "show a node",
    NodeRevoke = "node.revoke": "revoke a node and its descendants",
    NodeRekey = "node.rekey": "move a node to its next epoch",
    NodeReenroll = "node.reenroll": "a new enrollment token for a node",
    NodeSuite = "node.suite": "set which envelope suites a node accepts",
    NodeMinEpoch = "node.min_epoch": "set the oldest epoch a node's envelopes open at",
    NodeExtend = "node.extend": "renew a node's validity (its parent signs)",
    NodeCredentialsRevoke = "node.credentials.revoke": "end every certificate of a node",
    AdminList = "admin.list": "list the revoked admins",
    AdminRevoke = "admin.revoke": "revoke an admin name (the target)",
    AdminCredentialsRevoke = "admin.credentials.revoke": "end every certificate of an admin",
    AdminRecover = "admin.recover": "open a descendant's envelope as its ancestor",
    AdminReplica = "admin.replica": "approve a new replica's install key (the branch is sealed to it)",
    ChainPush = "chain.push": "push root-log records",
    ChainPull = "chain.pull": "pull the peers' logs now",
    PolicyShow = "policy.show": "read the policy in force",
    PolicyApply = "policy.apply": "replace the policy",
    PolicyCheck = "policy.check": "ask keyd how it would decide a request",
    AuditRead = "audit.read": "read the audit log",
    TrustInvite = "trust.invite": "invite another cluster to a trust exchange, and confirm it",
    TrustAccept = "trust.accept": "answer another cluster's invitation, and confirm it",
    TrustList = "trust.list": "list the trusted clusters and read their chains",
    TrustRevoke = "trust.revoke": "end the trust in another cluster (and blocklist it)",
}

impl Op {
    /// The operation named `name`.
    pub fn parse(name: &str) -> Option<Op> {
        Op::ALL.iter().copied().find(|op| op.name() == name)
    }

    /// The set of operations an entry of a rule's `operations` names: a name, a
    /// family (`node.*`), or `*` (every operation).
    pub fn matching(entry: &str) -> Result<u64, String> {
        let set = match entry {
            "*" => Op::ALL.iter().fold(0, |s, op| s | op.bit()),
            family if family.ends_with(".*") => {
                let prefix = &family[..family.len() - 1];
                Op::ALL
                    .iter()
                    .filter(|op| op.name().starts_with(prefix))
                    .fold(0, |s, op| s | op.bit())
            }
            name => Op::parse(name).map_or(0, Op::bit),
        };
        if set == 0 {
            return Err(format!(
                "{entry:?} names no operation (one of: {}; a family such as node.*; or *)",
                Op::ALL
                    .iter()
                    .map(|o| o.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(set)
    }

    /// Its bit in a set of operations.
    pub fn bit(self) -> u64 {
        1 << self as u8
    }

    /// Whether an admin scoped to a subtree may be granted it without a node target
    /// (it reads; [`super::Policy`] filters what it shows).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Op::Verify
                | Op::NodeList
                | Op::PolicyShow
                | Op::PolicyCheck
                | Op::AuditRead
                | Op::TrustList
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
