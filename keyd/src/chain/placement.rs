//! Where entries go: each log's link (seq, `prev`, time) and the placement rules of one
//! writer per log (DESIGN.md section 4): what the root log holds, what a branch log
//! holds, and the anchor that opens a branch log.

use super::entry::Entry;
use super::error::Rule;
use super::state::ChainState;
use super::statement::Body;
use crate::derive::KeyPath;

/// Where a log stands: what its next entry must carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// The seq the next entry must have.
    pub next_seq: u64,
    /// Hash of the last entry (zeros before the first): the next entry's `prev`.
    pub last_hash: [u8; 32],
    /// Time of the last entry.
    pub last_appended_at: u64,
}

impl Link {
    /// Seq of the last entry, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }
}

impl ChainState {
    /// Checks an entry's link to the one before in its log; returns the log's link.
    pub(super) fn check_link(&self, entry: &Entry) -> Result<Link, Rule> {
        let link = self.link(&entry.log);
        if entry.seq > link.next_seq {
            return Err(Rule::OutOfOrder {
                expected: link.next_seq,
                found: entry.seq,
            });
        }
        if entry.seq < link.next_seq {
            return Err(Rule::Duplicate {
                expected: link.next_seq,
                found: entry.seq,
            });
        }
        if entry.prev != link.last_hash {
            return Err(Rule::BadPrev);
        }
        if entry.appended_at < link.last_appended_at {
            return Err(Rule::TimeBackwards {
                found: entry.appended_at,
                previous: link.last_appended_at,
            });
        }
        let st = &entry.statement;
        if st.v != super::statement::STATEMENT_VERSION {
            return Err(Rule::Version(st.v));
        }
        st.body.check_bounds().map_err(Rule::Bounds)?;
        Ok(link)
    }

    /// One writer per log: the root log holds what the root signs (genesis first;
    /// certify and revoke of level-1 branches, trust, untrust, succession); a branch
    /// log, once the root log certified its branch, opens with the anchor to that
    /// certification and then holds what keys of the branch sign about the branch.
    pub(super) fn check_placement(&self, entry: &Entry, link: &Link) -> Result<(), Rule> {
        let (log, st) = (&entry.log, &entry.statement);
        let wrong = |why: String| Rule::WrongLog {
            log: log.clone(),
            kind: st.body.kind(),
            why,
        };
        match log.depth() {
            0 => {
                match (&st.body, link.next_seq) {
                    (Body::Genesis(_), 0) => {}
                    (Body::Genesis(_), _) => return Err(Rule::SecondGenesis),
                    (_, 0) => return Err(Rule::NoGenesis),
                    (Body::Anchor(_), _) => {
                        return Err(wrong("an anchor opens a branch log".into()));
                    }
                    (Body::Revoke(r), _) if r.target.depth() > 1 => {
                        return Err(wrong(format!(
                            "the root log revokes level-1 branches; {} is revoked in its branch's log",
                            r.target
                        )));
                    }
                    _ => {}
                }
                if st.signer != *log {
                    return Err(wrong(format!(
                        "the root log holds only what the root signs, not {}",
                        st.signer
                    )));
                }
                Ok(())
            }
            1 => {
                let Some(&(root_seq, root_entry)) = self.branch_certs.get(log) else {
                    return Err(Rule::UnknownLog { log: log.clone() });
                };
                match (&st.body, link.next_seq) {
                    (Body::Anchor(a), 0) => {
                        if a.root_seq != root_seq || a.root_entry != root_entry {
                            return Err(Rule::BadAnchor {
                                log: log.clone(),
                                root_seq,
                                found: Some(a.root_seq),
                            });
                        }
                        if st.signer != *log {
                            return Err(wrong(format!("the anchor is signed by {log} itself")));
                        }
                    }
                    (_, 0) => {
                        return Err(Rule::BadAnchor {
                            log: log.clone(),
                            root_seq,
                            found: None,
                        });
                    }
                    (Body::Anchor(_), _) => return Err(wrong("a log has one anchor".into())),
                    (Body::Genesis(_) | Body::Succession(_), _) => {
                        return Err(wrong("only the root log holds this".into()));
                    }
                    (Body::Revoke(r), _) if r.target == *log && st.signer == *log => {
                        return Err(wrong(format!(
                            "a branch is revoked in the root log, not in its own log {log}"
                        )));
                    }
                    _ => {}
                }
                if !log.is_prefix_of(&st.signer) {
                    return Err(wrong(format!(
                        "signed by {}, which is not a key of branch {log}",
                        st.signer
                    )));
                }
                Ok(())
            }
            _ => Err(wrong("logs are m and the level-1 branches m/i'".into())),
        }
    }
}

/// The log that publishes the key at `path`: the root log for the root and the level-1
/// branches (the root certifies them), the branch's own log for every key below a
/// branch (one writer per log). Derived, so that no key record holds it.
pub fn log_of(path: &KeyPath) -> KeyPath {
    match path.depth() {
        0 | 1 => KeyPath::root(),
        _ => path.prefix(1),
    }
}

/// Whether the node at `path` is certified in `log`: level-1 branches in the root log,
/// every node below a branch in that branch's log.
pub(super) fn in_log(path: &KeyPath, log: &KeyPath) -> bool {
    match log.index_slice().first() {
        None => path.depth() == 1,
        Some(branch) => path.depth() >= 2 && path.index_slice().first() == Some(branch),
    }
}
