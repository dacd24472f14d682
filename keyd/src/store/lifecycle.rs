//! Each node's minimum decryption epoch (a protected table, like the suite policies).

use redb::TableDefinition;

use super::{Checked, Store, StoreError};

pub(crate) const MIN_EPOCHS_NAME: &str = "min_epochs";
/// Node path → its minimum decryption epoch (decimal); named-key path → its limits.
pub(crate) const MIN_EPOCHS: TableDefinition<&str, &[u8]> = TableDefinition::new(MIN_EPOCHS_NAME);

impl Store {
    /// Sets a node's minimum decryption epoch, or a named key's limits (the row text:
    /// `D` or `D E X`, see `service::lifecycle::KeyLimits`).
    pub fn put_min_epoch(&self, node: &str, text: &str) -> Result<(), StoreError> {
        let row = self
            .row_key()?
            .seal(MIN_EPOCHS_NAME, node.as_bytes(), text.as_bytes());
        if let Some(etcd) = self.shared() {
            return self.put_shared_row(etcd, MIN_EPOCHS_NAME, node.as_bytes(), row);
        }
        self.write(|tx| {
            tx.open_table(MIN_EPOCHS)?.insert(node, row.as_slice())?;
            Ok(())
        })
    }

    /// Every node's minimum decryption epoch, checked.
    pub fn min_epochs(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(MIN_EPOCHS)
    }
}
