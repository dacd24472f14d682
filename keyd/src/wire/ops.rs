//! Node operations: `/v1/OP` and its batch form `/v1/batch/OP`.

use serde::{Deserialize, Serialize};

use super::{Blob, Bytes, ErrorBody};

/// A batch request.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Batch<T> {
    /// 1 to 1,000 items.
    #[cfg_attr(feature = "server", schema(min_items = 1, max_items = 1000))]
    pub items: Vec<T>,
}

/// A batch response: one result per item, in order.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct BatchResults<T> {
    /// Each item's result, or its error.
    pub results: Vec<Item<T>>,
}

/// One item's result, or its error.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Item<T> {
    /// The item's error (tried first when reading: an error is `{"error": …}`).
    Err(ErrorBody),
    /// The result.
    Ok(T),
}

/// Data to sign.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The data.
    pub data: Blob,
}

/// A signature and the key that made it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SignResponse {
    /// Ed25519 signature, 64 bytes.
    pub signature: Bytes,
    /// Key id of the epoch key.
    pub key_id: String,
    /// Its epoch.
    pub epoch: u32,
    /// Its path.
    pub path: String,
    /// Its Ed25519 public key, hex (what `/v1/verify` takes as `public_key`).
    pub public_key: String,
}

/// A signature to check.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The signed data.
    pub data: Blob,
    /// The 64-byte signature.
    pub signature: Blob,
    /// The Ed25519 public key, hex.
    pub public_key: String,
}

/// The result of `verify`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Verification {
    /// Whether the signature verifies and the key is a valid key of the cluster.
    pub valid: bool,
    /// Whether the signature itself verifies.
    pub signature_ok: bool,
    /// The key id of the public key (whether or not the cluster knows it).
    pub key_id: String,
    /// The key's path, if it is a key of the cluster.
    pub path: Option<String>,
    /// Its epoch, for epoch keys.
    pub epoch: Option<u32>,
    /// Its status (`valid`, `unknown`, `revoked`, `superseded`, `expired`).
    pub status: String,
    /// Why a key is not valid.
    pub reason: Option<String>,
    /// The trusted cluster the key is of, when it is not of this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

impl Verification {
    /// Why the answer is not valid, in words.
    pub fn not_valid_reason(&self) -> String {
        if !self.signature_ok {
            return "the signature does not verify with this public key".into();
        }
        let key = self.path.as_deref().unwrap_or("the key");
        match &self.reason {
            Some(reason) => format!("{key}: {reason}"),
            None => format!("{key} is {}", self.status),
        }
    }
}

/// Data to encrypt to a node.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EncryptRequest {
    /// The recipient node: name or path.
    pub to: String,
    /// The plaintext.
    pub plaintext: Blob,
    /// `x-wing` (the default: ML-KEM-768 + X25519) or `x25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Associated data (at most 4 KiB) the recipient must give again to decrypt; not
    /// stored in the envelope, which only says that there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Blob>,
}

/// A public-key envelope.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct EncryptResponse {
    /// The envelope (CBOR).
    pub envelope: Bytes,
    /// The recipient's epoch key path.
    pub recipient: String,
    /// The HPKE suite.
    pub suite: String,
}

/// An envelope.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvelopeRequest {
    /// The envelope (CBOR).
    pub envelope: Blob,
    /// The context it was sealed or encrypted with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Blob>,
}

/// A plaintext and who sent it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct DecryptResponse {
    /// The plaintext.
    pub plaintext: Bytes,
    /// The sender's epoch key path (its signature verified against the chain).
    pub sender: String,
}

/// Data to seal.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    /// The plaintext.
    pub plaintext: Blob,
    /// Associated data (at most 4 KiB) to give again to unseal; not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Blob>,
}

/// An envelope.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct EnvelopeResponse {
    /// The envelope (CBOR).
    pub envelope: Bytes,
}

/// A plaintext.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct PlaintextResponse {
    /// The plaintext.
    pub plaintext: Bytes,
}

/// A data key request.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DatakeyRequest {
    /// Associated data (at most 4 KiB) the sealed key is bound to; not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Blob>,
}

/// A data key and its sealed form.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct DatakeyResponse {
    /// The 32-byte key.
    pub key: Bytes,
    /// The key sealed under the caller's current epoch.
    pub envelope: Bytes,
}

/// An envelope for an admin to open as the ancestor of its key.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// The envelope (CBOR): sealed or encrypted, of any node below the branch.
    pub envelope: Blob,
    /// The context it was bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Blob>,
}

/// A new replica of this keyd's group, approved by its install key.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReplicaRequest {
    /// The replica's name (its `[etcd] replica`).
    pub name: String,
    /// Its install public key (hex), as its `keyd init` printed it.
    pub install_key: String,
}

/// The branch sealed to a new replica's install key: `keyd import` it there.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ReplicaResponse {
    /// The replica's name.
    pub name: String,
    /// The bundle (CBOR, as a ceremony's): the branch secret sealed to the install key,
    /// with the root log and the branch log.
    pub bundle: Bytes,
}

/// A replica as the branch log records it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ReplicaInfo {
    /// Its name.
    pub name: String,
    /// Its install public key (hex).
    pub install_key: String,
    /// Seq of the branch-log entry that added it.
    pub added_seq: u64,
    /// Seq of the entry that removed it, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_seq: Option<u64>,
}

/// An envelope opened by an ancestor.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct RecoverResponse {
    /// `sealed` or `encrypted`.
    pub kind: String,
    /// The key it was sealed under or encrypted to.
    pub key: String,
    /// Its sender (encrypted envelopes; the signature was checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// The plaintext.
    pub plaintext: Bytes,
}
