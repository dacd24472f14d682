//! Issued credentials, credential generations and revoked admin names: the rows that
//! grant access, each tagged like every protected row.

use redb::ReadableTable;

use super::{
    CREDENTIALS, CREDENTIALS_NAME, Checked, GENERATIONS, GENERATIONS_NAME, REVOKED_ADMINS,
    REVOKED_ADMINS_NAME, Store, StoreError, TOKENS, TOKENS_NAME, etcd, shared,
};

impl Store {
    /// Records an admin name as revoked (`record`: the revocation, CBOR); false when it
    /// already was (the first record stays).
    pub fn revoke_admin(&self, name: &str, record: &[u8]) -> Result<bool, StoreError> {
        let row = self
            .row_key()?
            .seal(REVOKED_ADMINS_NAME, name.as_bytes(), record);
        if let Some(etcd) = &self.shared {
            let key = shared::row_key(REVOKED_ADMINS_NAME, name.as_bytes());
            return etcd.txn(
                vec![etcd::Cmp::Absent(key.clone())],
                vec![(key, row)],
                Vec::new(),
            );
        }
        self.write(|tx| {
            let mut table = tx.open_table(REVOKED_ADMINS)?;
            let known = table.get(name)?.is_some();
            if !known {
                table.insert(name, row.as_slice())?;
            }
            Ok(!known)
        })
    }

    /// Every revoked admin name with its record.
    pub fn revoked_admins(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(REVOKED_ADMINS)
    }

    /// Records credential generations and issued certificates in one transaction; with
    /// `token`, the enrollment token is spent in the same transaction, and nothing is
    /// written (false) when it was spent already.
    pub fn put_credentials(
        &self,
        token: Option<&[u8]>,
        generations: &[(&str, &[u8])],
        issued: &[(&str, &[u8])],
    ) -> Result<bool, StoreError> {
        let key = self.row_key()?;
        let generations: Vec<(&str, Vec<u8>)> = generations
            .iter()
            .map(|(k, v)| (*k, key.seal(GENERATIONS_NAME, k.as_bytes(), v)))
            .collect();
        let issued: Vec<(&str, Vec<u8>)> = issued
            .iter()
            .map(|(k, v)| (*k, key.seal(CREDENTIALS_NAME, k.as_bytes(), v)))
            .collect();
        if let Some(etcd) = &self.shared {
            let puts = generations
                .iter()
                .map(|(k, v)| (shared::row_key(GENERATIONS_NAME, k.as_bytes()), v.clone()))
                .chain(
                    issued
                        .iter()
                        .map(|(k, v)| (shared::row_key(CREDENTIALS_NAME, k.as_bytes()), v.clone())),
                )
                .collect();
            let (when, deletes) = match token {
                Some(hash) => {
                    let k = shared::row_key(TOKENS_NAME, hash);
                    (vec![etcd::Cmp::Present(k.clone())], vec![k])
                }
                None => (Vec::new(), Vec::new()),
            };
            return etcd.txn(when, puts, deletes);
        }
        let run = || -> Result<bool, redb::Error> {
            let tx = self.db.begin_write()?;
            if let Some(hash) = token
                && tx.open_table(TOKENS)?.remove(hash)?.is_none()
            {
                tx.abort()?;
                return Ok(false);
            }
            {
                let mut table = tx.open_table(GENERATIONS)?;
                for (k, v) in &generations {
                    table.insert(*k, v.as_slice())?;
                }
                let mut table = tx.open_table(CREDENTIALS)?;
                for (k, v) in &issued {
                    table.insert(*k, v.as_slice())?;
                }
            }
            tx.commit()?;
            Ok(true)
        };
        run().map_err(self.db_err())
    }

    /// Every principal's credential generation record.
    pub fn generations(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(GENERATIONS)
    }

    /// Every issued certificate's record, by serial.
    pub fn credentials(&self) -> Result<Vec<(String, Checked)>, StoreError> {
        self.rows(CREDENTIALS)
    }
}
