//! Node secrets `(k, c)` and the derivation of any path from the root.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::material::{KeyMaterial, PublicKeys};
use super::root::{HmacOutput, hmac_sha512};
use super::{DeriveError, KeyPath, LEVEL1_LABEL_PREFIX, ROOT_IDENTITY_LABEL, RootSecret};

const HARDENED: u32 = 1 << 31;

/// A node of the key tree: its key `k` and chain code `c` (both secret: with
/// hardened-only derivation the chain code is as sensitive as the key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct NodeSecret {
    k: [u8; 32],
    c: [u8; 32],
}

impl NodeSecret {
    fn from_i(i: &HmacOutput) -> Self {
        let mut k = [0u8; 32];
        let mut c = [0u8; 32];
        k.copy_from_slice(&i[..32]);
        c.copy_from_slice(&i[32..]);
        NodeSecret { k, c }
    }

    /// SLIP-0010 Ed25519 hardened child `index'` (index given without the hardened bit):
    /// `I = HMAC-SHA512(c, 0x00 || k || ser32(index + 2^31))`.
    pub fn child(&self, index: u32) -> NodeSecret {
        let ser = (index | HARDENED).to_be_bytes();
        NodeSecret::from_i(&hmac_sha512(&self.c, &[&[0u8], &self.k, &ser]))
    }

    /// A node from its key and chain code (as carried by a sealed branch bundle).
    pub fn danger_from_parts(k: [u8; 32], c: [u8; 32]) -> NodeSecret {
        NodeSecret { k, c }
    }

    /// All per-node keys (signing, X25519, X-Wing seed, storage).
    pub fn material(&self) -> KeyMaterial {
        KeyMaterial::from_node_key(&self.k)
    }

    /// Only the public keys and key id (cheaper than [`NodeSecret::material`]).
    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys::from_node_key(&self.k)
    }

    /// The node key `k`. Exposed for test vectors and export paths only.
    pub fn danger_key(&self) -> &[u8; 32] {
        &self.k
    }

    /// The chain code `c`. Exposed for test vectors and export paths only.
    pub fn danger_chain_code(&self) -> &[u8; 32] {
        &self.c
    }

    /// SLIP-0010 master node from a seed (`HMAC-SHA512("ed25519 seed", seed)`).
    ///
    /// keyd's own root node is *not* made this way (see [`derive_node`]); this exists so
    /// that the child derivation can be checked against the SLIP-0010 test vectors.
    #[doc(hidden)]
    pub fn slip10_master(seed: &[u8]) -> NodeSecret {
        NodeSecret::from_i(&hmac_sha512(b"ed25519 seed", &[seed]))
    }
}

impl fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeSecret([REDACTED])")
    }
}

/// Derives the node at `path`.
///
/// - `m`: `I = HSM("keyd/v1/root-identity")`;
/// - `m/i'`: `I = HSM("keyd/v1/child" || ser32(i + 2^31))` — two HSM operations at most;
/// - deeper: SLIP-0010 hardened derivation in software from the level-1 node.
pub fn derive_node(root: &dyn RootSecret, path: &KeyPath) -> Result<NodeSecret, DeriveError> {
    let mut indexes = path.indexes();
    let Some(first) = indexes.next() else {
        return Ok(NodeSecret::from_i(&root.hmac_sha512(ROOT_IDENTITY_LABEL)?));
    };
    let mut node = NodeSecret::from_i(&root.hmac_sha512(&level1_label(first))?);
    for index in indexes {
        node = node.child(index);
    }
    Ok(node)
}

/// The message the root MACs for the level-1 child `index'`.
pub(crate) fn level1_label(index: u32) -> [u8; 17] {
    let mut label = [0u8; 17];
    label[..13].copy_from_slice(LEVEL1_LABEL_PREFIX);
    label[13..].copy_from_slice(&(index | HARDENED).to_be_bytes());
    label
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::SoftwareRoot;

    #[test]
    fn level1_label_layout() {
        let l = level1_label(7);
        assert_eq!(&l[..13], b"keyd/v1/child");
        assert_eq!(&l[13..], &[0x80, 0, 0, 7]);
    }

    #[test]
    fn derivation_is_deterministic_and_path_dependent() {
        let root = SoftwareRoot::danger_from_bytes(&[7u8; 64]);
        let p: KeyPath = "m/1'/2'/3'".parse().unwrap();
        let q: KeyPath = "m/1'/2'/4'".parse().unwrap();
        let a = derive_node(&root, &p).unwrap();
        let b = derive_node(&root, &p).unwrap();
        let c = derive_node(&root, &q).unwrap();
        assert_eq!(a.danger_key(), b.danger_key());
        assert_ne!(a.danger_key(), c.danger_key());
        // Deriving step by step equals deriving the whole path.
        let parent = derive_node(&root, &p.parent().unwrap()).unwrap();
        assert_eq!(parent.child(3).danger_key(), a.danger_key());
    }

    proptest::proptest! {
        /// Derivation is deterministic, and deriving a path equals deriving its parent
        /// then one hardened child, at every depth below level 1.
        #[test]
        fn determinism_and_stepwise(
            secret in proptest::collection::vec(proptest::num::u8::ANY, 64),
            indexes in proptest::collection::vec(0u32..(1 << 31), 2..8),
        ) {
            let root = SoftwareRoot::danger_from_bytes(&secret);
            let mut path = KeyPath::root();
            for i in &indexes { path = path.child(*i).unwrap(); }
            let a = derive_node(&root, &path).unwrap();
            let b = derive_node(&root, &path).unwrap();
            proptest::prop_assert_eq!(a.danger_key(), b.danger_key());
            let parent = derive_node(&root, &path.parent().unwrap()).unwrap();
            let last = *indexes.last().unwrap();
            let stepwise = parent.child(last);
            proptest::prop_assert_eq!(stepwise.danger_key(), a.danger_key());
            proptest::prop_assert_eq!(stepwise.public_keys(), a.public_keys());
        }
    }

    #[test]
    fn debug_is_redacted() {
        let root = SoftwareRoot::danger_from_bytes(&[0xAB; 64]);
        let node = derive_node(&root, &KeyPath::root()).unwrap();
        let shown = format!("{node:?} {root:?} {:?}", node.material());
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains(&hex::encode(node.danger_key())), "{shown}");
        assert!(shown.contains("REDACTED"));
    }
}
