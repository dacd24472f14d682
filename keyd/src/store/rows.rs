//! Row integrity: the rows that grant access — enrollment tokens, issued-credential
//! records, credential generations and admin revocations — carry an HMAC-SHA256 tag
//! under a key sealed by the seal token, checked on every read. Someone who can write
//! the data directory but cannot use the seal token cannot add a token, re-open a
//! revoked credential or un-revoke an admin: the row is refused and logged.
//!
//! A stored row is `record || tag`, tag = HMAC-SHA256(row key, `"keyd/v1/row\0"` ||
//! table || `0x00` || len(key) (4 bytes, big-endian) || key || record). The table and key
//! are covered, so a valid row copied under another key or into another table fails.

use hmac::{Hmac, KeyInit, Mac};
use redb::{ReadableTable, TableDefinition, TableHandle};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{
    CREDENTIALS, Checked, GENERATIONS, META, REVOKED_ADMINS, SUITES, Store, StoreError, TOKENS,
};
use crate::hsm::Hsm;

/// Meta key of the row key, sealed by the seal token.
pub const ROW_KEY_SEALED: &str = "row_key_sealed";
/// AAD the row key is sealed under.
pub const ROW_KEY_AAD: &[u8] = b"keyd/v1/row-key";
/// Length of a row tag.
pub const TAG_LEN: usize = 32;
const TAG_DOMAIN: &[u8] = b"keyd/v1/row\0";
/// HKDF info of a replica group's row key.
const GROUP_ROW_KEY_INFO: &[u8] = b"keyd/v1/row-key/group";

/// The row key (32 bytes), unsealed for the life of the process.
pub struct RowKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowKey(..)")
    }
}

impl RowKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        RowKey(Zeroizing::new(*bytes))
    }

    fn tag(&self, table: &str, key: &[u8], record: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(TAG_DOMAIN);
        mac.update(table.as_bytes());
        mac.update(&[0]);
        mac.update(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
        mac.update(key);
        mac.update(record);
        mac.finalize().into_bytes().into()
    }

    /// The stored form of `record`: the record and its tag.
    pub fn seal(&self, table: &str, key: &[u8], record: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(record.len() + TAG_LEN);
        out.extend_from_slice(record);
        out.extend_from_slice(&self.tag(table, key, record));
        out
    }

    /// The record of a stored row, if its tag is this key's for this table and key.
    pub fn open<'a>(&self, table: &str, key: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
        let split = stored.len().checked_sub(TAG_LEN)?;
        let (record, tag) = stored.split_at(split);
        bool::from(self.tag(table, key, record).ct_eq(tag)).then_some(record)
    }
}

impl Store {
    /// Unseals the row key with the seal token, so that protected rows can be written
    /// and read. The first unlock of a store makes the key (32 random bytes from the
    /// token, sealed to it) and tags the rows already there, in one transaction.
    pub fn unlock(&self, hsm: &Hsm) -> Result<(), StoreError> {
        if self.rows.get().is_some() || self.shared.is_some() {
            // A replica group's row key comes with the branch ([`Store::unlock_group`]).
            return Ok(());
        }
        let row_err = |source| StoreError::RowKey {
            path: self.path.clone(),
            source,
        };
        let to_key = |bytes: &[u8]| -> Result<RowKey, StoreError> {
            let mut arr = zeroize::Zeroizing::new([0u8; 32]);
            if bytes.len() != 32 {
                return Err(StoreError::Corrupt {
                    path: self.path.clone(),
                    what: "row key".into(),
                    detail: format!("{} bytes, not 32", bytes.len()),
                });
            }
            arr.copy_from_slice(bytes);
            Ok(RowKey::from_bytes(&arr))
        };
        let key = match self.meta(ROW_KEY_SEALED)? {
            Some(sealed) => to_key(&hsm.unseal(ROW_KEY_AAD, &sealed).map_err(row_err)?)?,
            None => {
                let bytes = hsm.random(32).map_err(row_err)?;
                let key = to_key(&bytes)?;
                let sealed = hsm.seal(ROW_KEY_AAD, &bytes).map_err(row_err)?;
                let tagged = self.write(|tx| {
                    let mut n = 0usize;
                    n += tag_existing(tx, TOKENS, &key)?;
                    for def in [REVOKED_ADMINS, CREDENTIALS, GENERATIONS, SUITES] {
                        n += tag_existing(tx, def, &key)?;
                    }
                    tx.open_table(META)?
                        .insert(ROW_KEY_SEALED, sealed.as_slice())?;
                    Ok(n)
                })?;
                if tagged > 0 {
                    tracing::info!(rows = tagged, "row integrity tags added to an older store");
                }
                key
            }
        };
        let _ = self.rows.set(key);
        Ok(())
    }

    /// For a replica group (etcd): the row key every replica derives from the branch
    /// secret they share (each replica's seal token is its own, so a key sealed by one
    /// could not be read by the others), HKDF-SHA256 over the branch's storage key.
    pub fn unlock_group(&self, branch: &crate::derive::NodeSecret) {
        let material = branch.material();
        let hk = hkdf::Hkdf::<Sha256>::new(None, material.storage_key());
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(GROUP_ROW_KEY_INFO, bytes.as_mut())
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
        let _ = self.rows.set(RowKey::from_bytes(&bytes));
    }

    pub(super) fn row_key(&self) -> Result<&RowKey, StoreError> {
        self.rows
            .get()
            .ok_or_else(|| StoreError::Locked(self.path.clone()))
    }

    /// Checks a protected row, logging a tampered one.
    pub(super) fn check(
        &self,
        key: &RowKey,
        table: &str,
        row_key: &[u8],
        stored: &[u8],
    ) -> Checked {
        match key.open(table, row_key, stored) {
            Some(record) => Checked::Valid(record.to_vec()),
            None => {
                tracing::error!(
                    table,
                    row = %String::from_utf8(row_key.to_vec()).unwrap_or_else(|_| hex::encode(row_key)),
                    "a stored row fails its integrity tag: it was added or edited outside keyd (someone with write access to the data directory?); refused"
                );
                Checked::Tampered
            }
        }
    }
}

/// Tags every row of a table written before row tags; how many. The tag covers the
/// key's stored bytes (for a `&str` key, its UTF-8), as [`RowKey::seal`] does.
fn tag_existing<K: redb::Key + 'static>(
    tx: &redb::WriteTransaction,
    def: TableDefinition<K, &[u8]>,
    key: &RowKey,
) -> Result<usize, redb::Error> {
    let mut table = tx.open_table(def)?;
    let mut rows = Vec::new();
    for row in table.iter()? {
        let (k, v) = row?;
        rows.push((
            K::as_bytes(&k.value()).as_ref().to_vec(),
            v.value().to_vec(),
        ));
    }
    for (k, v) in &rows {
        table.insert(K::from_bytes(k), key.seal(def.name(), k, v).as_slice())?;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_binds_table_key_and_record() {
        let k = RowKey::from_bytes(&[3; 32]);
        let row = k.seal("tokens", b"abc", b"record");
        assert_eq!(k.open("tokens", b"abc", &row), Some(&b"record"[..]));
        assert_eq!(k.open("tokens", b"abd", &row), None, "another key");
        assert_eq!(k.open("credentials", b"abc", &row), None, "another table");
        let mut edited = row.clone();
        edited[0] ^= 1;
        assert_eq!(k.open("tokens", b"abc", &edited), None, "an edited record");
        assert_eq!(k.open("tokens", b"abc", &row[..10]), None, "truncated");
        let other = RowKey::from_bytes(&[4; 32]);
        assert_eq!(other.open("tokens", b"abc", &row), None, "another row key");
        assert_eq!(format!("{k:?}"), "RowKey(..)");
    }

    #[test]
    fn rows_written_before_tags_are_tagged_as_keyd_reads_them() {
        use redb::ReadableDatabase;
        let dir = tempfile::tempdir().expect("tempdir");
        let db = redb::Database::create(dir.path().join("t.redb")).expect("db");
        let k = RowKey::from_bytes(&[5; 32]);
        let tx = db.begin_write().expect("tx");
        {
            let mut tokens = tx.open_table(TOKENS).expect("tokens");
            tokens
                .insert(&b"hash"[..], &b"token record"[..])
                .expect("insert");
            let mut gens = tx.open_table(GENERATIONS).expect("generations");
            gens.insert("keyd:node:m/1'/1'/0'", &b"generation"[..])
                .expect("insert");
        }
        assert_eq!(tag_existing(&tx, TOKENS, &k).expect("tag"), 1);
        assert_eq!(tag_existing(&tx, GENERATIONS, &k).expect("tag"), 1);
        tx.commit().expect("commit");
        let tx = db.begin_read().expect("tx");
        let tokens = tx.open_table(TOKENS).expect("tokens");
        let row = tokens.get(&b"hash"[..]).expect("get").expect("row");
        assert_eq!(
            k.open("tokens", b"hash", row.value()),
            Some(&b"token record"[..])
        );
        let gens = tx.open_table(GENERATIONS).expect("generations");
        let row = gens.get("keyd:node:m/1'/1'/0'").expect("get").expect("row");
        assert_eq!(
            k.open("generations", b"keyd:node:m/1'/1'/0'", row.value()),
            Some(&b"generation"[..])
        );
    }
}
