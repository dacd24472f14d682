//! The rules of the statements about a node's keys over time: `rekey_order` (an
//! ancestor orders a rekey) and `extend` (a parent renews a node's validity).

use super::error::Rule;
use super::state::{ChainState, KeyKind};
use super::statement::{Extend, RekeyOrder, Statement};

impl ChainState {
    /// An ancestor, not the node itself, orders a node not revoked to rekey.
    pub(super) fn check_rekey_order(
        &self,
        st: &Statement,
        o: &RekeyOrder,
    ) -> Result<Option<ed25519_dalek::VerifyingKey>, Rule> {
        let record = self.keys.get(&o.node).ok_or_else(|| Rule::UnknownTarget {
            target: o.node.clone(),
        })?;
        if !matches!(record.kind, KeyKind::Node { .. }) {
            return Err(Rule::NotNode {
                path: o.node.clone(),
            });
        }
        if !st.signer.is_prefix_of(&o.node) || st.signer == o.node {
            return Err(Self::no_authority(
                st,
                format!("only an ancestor of {} orders it to rekey", o.node),
            ));
        }
        if let Some(prior) = &record.revoked {
            return Err(Rule::AlreadyRevoked {
                target: o.node.clone(),
                seq: prior.seq,
            });
        }
        Ok(None)
    }

    /// Only a node's parent moves its end of validity, only later, never for a node
    /// revoked.
    pub(super) fn check_extend(
        &self,
        st: &Statement,
        x: &Extend,
    ) -> Result<Option<ed25519_dalek::VerifyingKey>, Rule> {
        let record = self.keys.get(&x.node).ok_or_else(|| Rule::UnknownTarget {
            target: x.node.clone(),
        })?;
        let KeyKind::Node { not_after, .. } = &record.kind else {
            return Err(Rule::NotNode {
                path: x.node.clone(),
            });
        };
        let parent = x.node.parent_node().ok_or_else(|| Rule::NotNode {
            path: x.node.clone(),
        })?;
        if st.signer != parent {
            return Err(Self::no_authority(
                st,
                format!("only the parent {parent} extends {}", x.node),
            ));
        }
        if let Some(prior) = &record.revoked {
            return Err(Rule::AlreadyRevoked {
                target: x.node.clone(),
                seq: prior.seq,
            });
        }
        if x.not_after <= *not_after {
            return Err(Rule::ValidityBackwards {
                node: x.node.clone(),
                not_after: x.not_after,
                current: *not_after,
            });
        }
        Ok(None)
    }
}
