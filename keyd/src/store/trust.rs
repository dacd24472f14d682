//! Trusted clusters: per other cluster's root (hex), its record — the persona and chain
//! the exchange gave, the trust granted, whether it was revoked (blocklisted) — tagged
//! like every protected row.

use redb::TableDefinition;

use super::{Checked, Store, StoreError};

pub(crate) const TRUSTED_NAME: &str = "trusted";
/// Root fingerprint (hex) → its record.
pub(crate) const TRUSTED: TableDefinition<&str, &[u8]> = TableDefinition::new(TRUSTED_NAME);

impl Store {
    /// Stores (or replaces) the record of the cluster of root `root`.
    pub fn put_trusted(&self, root: &str, record: &[u8]) -> Result<(), StoreError> {
        let sealed = self.row_key()?.seal(TRUSTED_NAME, root.as_bytes(), record);
        if let Some(etcd) = self.shared() {
            return self.put_shared_row(etcd, TRUSTED_NAME, root.as_bytes(), sealed);
        }
        self.write(|tx| {
            tx.open_table(TRUSTED)?.insert(root, sealed.as_slice())?;
            Ok(())
        })
    }

    /// Every trusted (or blocklisted) cluster's record, checked.
    pub fn trusted_clusters(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(TRUSTED)
    }
}
