//! The embedded backend: one redb file, ACID, no other process needed.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Batch, Check, Collection, Consistent, StoreError, Write};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// File name inside `--data-dir`.
pub(crate) const FILE_NAME: &str = "portcullis.redb";

/// A redb database shared by all tasks; blocking work runs on the blocking pool.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Embedded(e.to_string())
}

fn key(c: Collection, k: &str) -> String {
    format!("{}/{k}", c.name())
}

impl EmbeddedStore {
    /// Opens or creates `data_dir/portcullis.redb` (directory 0700 if created, file 0600).
    /// Fails if another process holds it.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        crate::files::private_dir(data_dir)
            .map_err(|e| err(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(FILE_NAME);
        crate::files::ensure_private_file(&path)
            .map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => err(format!(
                "{} is in use by another process (is the control plane running?)",
                path.display()
            )),
            other => err(format!("cannot open {}: {other}", path.display())),
        })?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(RECORDS).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(err)?
    }

    pub(super) async fn get(&self, c: Collection, k: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let k = key(c, k);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let table = txn.open_table(RECORDS).map_err(err)?;
            Ok(table
                .get(k.as_str())
                .map_err(err)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    pub(super) async fn read_consistent(
        &self,
        cs: &[Collection],
    ) -> Result<Consistent, StoreError> {
        let cs = cs.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(err)?;
            let table = txn.open_table(RECORDS).map_err(err)?;
            let meta = txn.open_table(META).map_err(err)?;
            let revision = meta
                .get(REVISION)
                .map_err(err)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut collections = Vec::with_capacity(cs.len());
            for c in cs {
                let start = format!("{}/", c.name());
                // '0' is the byte after '/', so this range is exactly the prefix.
                let end = format!("{}0", c.name());
                let mut items = Vec::new();
                for entry in table.range(start.as_str()..end.as_str()).map_err(err)? {
                    let (k, v) = entry.map_err(err)?;
                    items.push((k.value()[start.len()..].to_owned(), v.value().to_vec()));
                }
                collections.push(items);
            }
            Ok(Consistent {
                revision,
                collections,
            })
        })
        .await
    }

    pub(super) async fn apply(&self, batch: Batch) -> Result<u64, StoreError> {
        self.blocking(move |db| {
            let bump = batch.bumps_revision();
            let txn = db.begin_write().map_err(err)?;
            let revision = {
                let mut table = txn.open_table(RECORDS).map_err(err)?;
                let mut meta = txn.open_table(META).map_err(err)?;
                for (i, check) in batch.checks.iter().enumerate() {
                    let ok = match check {
                        Check::Absent(c, k) => {
                            table.get(key(*c, k).as_str()).map_err(err)?.is_none()
                        }
                        Check::Present(c, k) => {
                            table.get(key(*c, k).as_str()).map_err(err)?.is_some()
                        }
                        Check::Equals(c, k, want) => table
                            .get(key(*c, k).as_str())
                            .map_err(err)?
                            .is_some_and(|v| v.value() == want.as_slice()),
                    };
                    if !ok {
                        // Dropping the transaction aborts it: nothing is written.
                        return Err(StoreError::CheckFailed(i));
                    }
                }
                for w in &batch.writes {
                    match w {
                        Write::Put(c, k, v) => {
                            table
                                .insert(key(*c, k).as_str(), v.as_slice())
                                .map_err(err)?;
                        }
                        Write::Delete(c, k) => {
                            table.remove(key(*c, k).as_str()).map_err(err)?;
                        }
                    }
                }
                let current = meta
                    .get(REVISION)
                    .map_err(err)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                if bump {
                    meta.insert(REVISION, current + 1).map_err(err)?;
                    current + 1
                } else {
                    current
                }
            };
            txn.commit().map_err(err)?;
            Ok(revision)
        })
        .await
    }
}
