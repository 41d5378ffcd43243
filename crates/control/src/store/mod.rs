//! The control plane's store: orgs, API token hashes (with their scope, expiry and revocation), apps, the registry of hosts and the machine
//! index (`machine id -> app, host, name`), in SQLite at `<data_dir>/control.db` (WAL).
//!
//! The schema is plain SQL (TEXT, BIGINT, BOOLEAN, `ON CONFLICT`, no rowid or PRAGMA tricks in
//! queries) so it can move to PostgreSQL; only the connection set-up is SQLite-specific. Machine
//! *state* is not here: the agents own it. The index only says where each machine lives.
//!
//! This module opens the database and runs queries on a blocking thread (`Store::call`); one
//! child module per table family adds the queries of its tables (`impl Store` blocks) and the
//! records they return.

mod apps;
mod certificates;
mod host_credentials;
mod hosts;
mod machines;
mod orgs;
mod registry_logins;
mod releases;
mod schema;
mod secrets;
#[cfg(test)]
mod tests;
mod tokens;
mod volumes;

pub(crate) use apps::AppRecord;
pub use certificates::{CertChange, CertPart, CertRecord};
pub(crate) use host_credentials::JoinOutcome;
pub(crate) use hosts::HostRecord;
pub(crate) use machines::MachineRecord;
pub(crate) use registry_logins::RegistryLoginRecord;
pub use releases::ReleaseRecord;
pub use secrets::{SecretRecord, SecretsChange, SecretsRefused};
pub(crate) use tokens::{Caller, Scope, TokenRecord};
pub use volumes::{SnapshotRecord, VolumeRecord, VolumeSettings};

use crate::error::ControlPlaneError;
use parking_lot::Mutex;
use rusqlite::Connection;
use schema::{MIGRATIONS, SCHEMA, SCHEMA_VERSION};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The store. Cheap to clone; every operation runs on a blocking thread.
#[derive(Clone)]
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or creates) `path` and brings its schema up to date. Blocking.
    pub fn open(path: &Path) -> Result<Store, ControlPlaneError> {
        let open_err = |source| ControlPlaneError::OpenStore {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        let found: Option<i64> = conn
            .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
            .map_err(open_err)?;
        let version = match found {
            None => {
                conn.execute("INSERT INTO schema_version (version) VALUES (1)", [])
                    .map_err(open_err)?;
                1
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(ControlPlaneError::SchemaTooNew {
                    path: PathBuf::from(path),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(v) => v,
        };
        for &(to, sql) in MIGRATIONS.iter().filter(|(to, _)| *to > version) {
            let tx = conn.transaction().map_err(open_err)?;
            tx.execute_batch(sql).map_err(open_err)?;
            tx.execute("UPDATE schema_version SET version = ?1", [to])
                .map_err(open_err)?;
            tx.commit().map_err(open_err)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// How many values are sealed with the secrets key (app secrets, volume keys, uploaded
    /// certificates' private keys, registry passwords). Blocking:
    /// for the control plane's open, before it serves.
    pub fn sealed_values(&self) -> Result<u64, ControlPlaneError> {
        self.conn
            .lock()
            .query_row(
                "SELECT (SELECT COUNT(*) FROM secrets) + (SELECT COUNT(*) FROM volumes)
                      + (SELECT COUNT(*) FROM certificates WHERE private_key LIKE 'sealed:%')
                      + (SELECT COUNT(*) FROM registry_logins)",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(to_u64)
            .map_err(|source| ControlPlaneError::Store {
                op: "count sealed values",
                source,
            })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn call<T, F>(&self, op: &'static str, f: F) -> Result<T, ControlPlaneError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock();
            f(&mut conn)
        })
        .await
        .map_err(|source| ControlPlaneError::StoreTask { op, source })?
        .map_err(|source| ControlPlaneError::Store { op, source })
    }
}

/// Counters are stored as BIGINT; values outside the Rust type saturate.
fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
