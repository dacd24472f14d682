//! Policy versions: every policy applied, by version, each row tagged like every
//! protected row (an edited or planted version is found, not obeyed).

use redb::{ReadableTable, TableDefinition};

use super::{Checked, Store, StoreError};

pub(crate) const POLICIES_NAME: &str = "policies";
/// Version (20 decimal digits, so that text order is number order) → its record.
pub(crate) const POLICIES: TableDefinition<&str, &[u8]> = TableDefinition::new(POLICIES_NAME);

/// The row key of a version.
fn row(version: u64) -> String {
    format!("{version:020}")
}

impl Store {
    /// Stores policy `version`, refusing one that exists (two appliers racing: one
    /// wins, the other is told).
    pub fn put_policy(&self, version: u64, record: &[u8]) -> Result<bool, StoreError> {
        let key = row(version);
        let sealed = self.row_key()?.seal(POLICIES_NAME, key.as_bytes(), record);
        if let Some(etcd) = self.shared() {
            let k = super::shared::row_key(POLICIES_NAME, key.as_bytes());
            return etcd.txn(
                vec![super::etcd::Cmp::Absent(k.clone())],
                vec![(k, sealed)],
                Vec::new(),
            );
        }
        self.write(|tx| {
            let mut table = tx.open_table(POLICIES)?;
            if table.get(key.as_str())?.is_some() {
                return Ok(false);
            }
            table.insert(key.as_str(), sealed.as_slice())?;
            Ok(true)
        })
    }

    /// Every stored policy version, oldest first, checked.
    pub fn policies(&self) -> Result<Vec<(u64, Checked)>, StoreError> {
        Ok(self
            .rows(POLICIES)?
            .into_iter()
            .map(|(k, c)| (k.parse().unwrap_or(u64::MAX), c))
            .collect())
    }
}
