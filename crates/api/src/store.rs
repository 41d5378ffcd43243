//! The control plane's store: orgs, API token hashes, apps, the registry of hosts and the machine
//! index (`machine id -> app, host, name`), in SQLite at `<data_dir>/control.db` (WAL).
//!
//! The schema is plain SQL (TEXT, BIGINT, BOOLEAN, `ON CONFLICT`, no rowid or PRAGMA tricks in
//! queries) so it can move to PostgreSQL; only the connection set-up is SQLite-specific. Machine
//! *state* is not here: the agents own it. The index only says where each machine lives.

use crate::auth::ApiToken;
use crate::error::ControlPlaneError;
use aloft_types::api::{HostInfo, MeshJoin, MeshPeer, ProxyCertificate};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The schema version this code writes; a database with a higher one is refused.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version     BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS orgs (
    slug        TEXT PRIMARY KEY,
    network_id  BIGINT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash  TEXT PRIMARY KEY,
    org_slug    TEXT NOT NULL REFERENCES orgs (slug),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS apps (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    org_slug    TEXT NOT NULL REFERENCES orgs (slug),
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS apps_by_org ON apps (org_slug);
CREATE TABLE IF NOT EXISTS hosts (
    id                   TEXT PRIMARY KEY,
    region               TEXT NOT NULL,
    address              TEXT NOT NULL,
    runtime              TEXT NOT NULL,
    cpus                 BIGINT NOT NULL,
    memory_mb            BIGINT NOT NULL,
    allocated_cpus       BIGINT NOT NULL,
    allocated_memory_mb  BIGINT NOT NULL,
    last_seen            BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS host_numbers (
    host_id     TEXT PRIMARY KEY,
    number      BIGINT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS mesh_members (
    host_id     TEXT PRIMARY KEY REFERENCES host_numbers (host_id),
    region      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    endpoint    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS machines (
    id          TEXT PRIMARY KEY,
    app_name    TEXT NOT NULL REFERENCES apps (name),
    host_id     TEXT NOT NULL REFERENCES hosts (id),
    name        TEXT NOT NULL,
    destroyed   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS machines_by_app ON machines (app_name);
CREATE TABLE IF NOT EXISTS releases (
    app_name     TEXT NOT NULL REFERENCES apps (name),
    version      BIGINT NOT NULL,
    image        TEXT NOT NULL,
    strategy     TEXT NOT NULL,
    status       TEXT NOT NULL,
    description  TEXT,
    reason       TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (app_name, version)
);
CREATE TABLE IF NOT EXISTS secrets (
    app_name     TEXT NOT NULL REFERENCES apps (name),
    name         TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    digest       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (app_name, name)
);
CREATE TABLE IF NOT EXISTS volumes (
    id                   TEXT PRIMARY KEY,
    app_name             TEXT NOT NULL REFERENCES apps (name),
    name                 TEXT NOT NULL,
    region               TEXT NOT NULL,
    host_id              TEXT NOT NULL,
    size_gb              BIGINT NOT NULL,
    key_nonce            TEXT NOT NULL,
    key_ciphertext       TEXT NOT NULL,
    attached_machine_id  TEXT,
    created_at           BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS volumes_by_app ON volumes (app_name);
CREATE TABLE IF NOT EXISTS volume_snapshots (
    id           TEXT PRIMARY KEY,
    volume_id    TEXT NOT NULL REFERENCES volumes (id),
    size         BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS certificates (
    hostname     TEXT PRIMARY KEY,
    app_name     TEXT NOT NULL REFERENCES apps (name),
    certificate  TEXT,
    private_key  TEXT,
    created_at   BIGINT NOT NULL
);
";

/// An org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrgRecord {
    pub slug: String,
    /// The org's 6PN network id, assigned in creation order from 1.
    pub network_id: u32,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub org: OrgRecord,
    /// The token's name; sent to agents as the actor (lease owner).
    pub token_name: String,
    /// The token itself; sent to agents for the registry pulls of the request.
    pub token: ApiToken,
}

/// An app and how many live machines the index holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppRecord {
    pub id: String,
    pub name: String,
    pub org_slug: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub machine_count: u32,
}

/// A registered host, as of its last heartbeat (or the last placement on it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostRecord {
    pub info: HostInfo,
    /// Milliseconds since the Unix epoch.
    pub last_seen: i64,
}

impl HostRecord {
    pub fn free_memory_mb(&self) -> u64 {
        self.info
            .memory_mb
            .saturating_sub(self.info.allocated_memory_mb)
    }

    pub fn free_cpus(&self) -> u32 {
        self.info.cpus.saturating_sub(self.info.allocated_cpus)
    }
}

/// An app secret as stored: sealed (see `crate::secrets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    pub name: String,
    pub sealed: crate::secrets::Sealed,
    pub digest: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One deploy of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub app: String,
    pub version: u32,
    pub image: String,
    pub strategy: String,
    /// A [`aloft_types::api::ReleaseStatus`] name.
    pub status: String,
    pub description: Option<String>,
    pub reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

const RELEASE_SELECT: &str = "SELECT app_name, version, image, strategy, status, description, \
     reason, created_at, updated_at FROM releases";

fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReleaseRecord> {
    Ok(ReleaseRecord {
        app: r.get(0)?,
        version: r.get(1)?,
        image: r.get(2)?,
        strategy: r.get(3)?,
        status: r.get(4)?,
        description: r.get(5)?,
        reason: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// A hostname an app is served at, with the user's certificate and key (PEM) if uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub hostname: String,
    pub app: String,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl From<CertRecord> for ProxyCertificate {
    fn from(c: CertRecord) -> Self {
        Self {
            hostname: c.hostname,
            app: c.app,
            certificate: c.certificate,
            private_key: c.private_key,
        }
    }
}

/// A volume: where it lives, its key (sealed, see `crate::secrets`) and who mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub id: String,
    pub app: String,
    pub name: String,
    pub region: String,
    pub host_id: String,
    pub size_gb: u32,
    pub key: crate::secrets::Sealed,
    pub attached_machine_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

const VOLUME_SELECT: &str = "SELECT id, app_name, name, region, host_id, size_gb, key_nonce, \
     key_ciphertext, attached_machine_id, created_at FROM volumes";

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        id: r.get(0)?,
        app: r.get(1)?,
        name: r.get(2)?,
        region: r.get(3)?,
        host_id: r.get(4)?,
        size_gb: r.get(5)?,
        key: crate::secrets::Sealed {
            nonce: r.get(6)?,
            ciphertext: r.get(7)?,
        },
        attached_machine_id: r.get(8)?,
        created_at: r.get(9)?,
    })
}

/// A snapshot of a volume, kept on the volume's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub id: String,
    pub volume_id: String,
    pub size: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One entry of the machine index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineRecord {
    pub id: String,
    pub app: String,
    pub host_id: String,
    pub name: String,
    pub destroyed: bool,
}

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
        let conn = Connection::open(path).map_err(open_err)?;
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
        match found {
            None => {
                conn.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(open_err)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(ControlPlaneError::SchemaTooNew {
                    path: PathBuf::from(path),
                    found: v,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
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
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|source| ControlPlaneError::StoreTask { op, source })?
        .map_err(|source| ControlPlaneError::Store { op, source })
    }

    /// Creates the org if it does not exist (with the next network id) and returns it.
    pub async fn ensure_org(&self, slug: &str, now: i64) -> Result<OrgRecord, ControlPlaneError> {
        let slug = slug.to_string();
        self.call("ensure org", move |c| {
            let tx = c.transaction()?;
            if let Some(org) = org_by_slug(&tx, &slug)? {
                return Ok(org);
            }
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(network_id), 0) + 1 FROM orgs",
                [],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO orgs (slug, network_id, created_at) VALUES (?1, ?2, ?3)",
                params![slug, next, now],
            )?;
            tx.commit()?;
            Ok(OrgRecord {
                slug,
                network_id: to_u32(next),
            })
        })
        .await
    }

    pub async fn org(&self, slug: &str) -> Result<Option<OrgRecord>, ControlPlaneError> {
        let slug = slug.to_string();
        self.call("read org", move |c| org_by_slug(c, &slug)).await
    }

    /// Stores a token hash for an existing org.
    pub async fn insert_token(
        &self,
        hash: String,
        org: &str,
        name: &str,
        now: i64,
    ) -> Result<(), ControlPlaneError> {
        let (org, name) = (org.to_string(), name.to_string());
        self.call("store token", move |c| {
            c.execute(
                "INSERT INTO api_tokens (token_hash, org_slug, name, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![hash, org, name, now],
            )
            .map(drop)
        })
        .await
    }

    /// The caller a token hash belongs to.
    /// The caller `token` (whose hash is `hash`) speaks for, if it is a valid token.
    pub async fn caller(
        &self,
        hash: String,
        token: ApiToken,
    ) -> Result<Option<Caller>, ControlPlaneError> {
        self.call("read token", move |c| {
            c.query_row(
                "SELECT o.slug, o.network_id, t.name FROM api_tokens t
                 JOIN orgs o ON o.slug = t.org_slug WHERE t.token_hash = ?1",
                [hash],
                |r| {
                    Ok(Caller {
                        org: OrgRecord {
                            slug: r.get(0)?,
                            network_id: to_u32(r.get(1)?),
                        },
                        token_name: r.get(2)?,
                        token: token.clone(),
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Inserts an app; `false` when the name is taken (app names are global).
    pub async fn insert_app(&self, app: AppRecord) -> Result<bool, ControlPlaneError> {
        self.call("create app", move |c| {
            let n = c.execute(
                "INSERT INTO apps (name, id, org_slug, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
                params![app.name, app.id, app.org_slug, app.created_at],
            )?;
            Ok(n == 1)
        })
        .await
    }

    pub async fn app(&self, name: &str) -> Result<Option<AppRecord>, ControlPlaneError> {
        let name = name.to_string();
        self.call("read app", move |c| {
            c.query_row(&format!("{APP_SELECT} WHERE a.name = ?1"), [name], app_row)
                .optional()
        })
        .await
    }

    pub async fn apps_of_org(&self, org: &str) -> Result<Vec<AppRecord>, ControlPlaneError> {
        let org = org.to_string();
        self.call("list apps", move |c| {
            let mut stmt = c.prepare(&format!(
                "{APP_SELECT} WHERE a.org_slug = ?1 ORDER BY a.name"
            ))?;
            let rows = stmt.query_map([org], app_row)?;
            rows.collect()
        })
        .await
    }

    /// Deletes an app and its entries in the machine index.
    pub async fn delete_app(&self, name: &str) -> Result<(), ControlPlaneError> {
        let name = name.to_string();
        self.call("delete app", move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM machines WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM certificates WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM releases WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM secrets WHERE app_name = ?1", [&name])?;
            tx.execute(
                "DELETE FROM volume_snapshots WHERE volume_id IN
                     (SELECT id FROM volumes WHERE app_name = ?1)",
                [&name],
            )?;
            tx.execute("DELETE FROM volumes WHERE app_name = ?1", [&name])?;
            tx.execute("DELETE FROM apps WHERE name = ?1", [&name])?;
            tx.commit()
        })
        .await
    }

    /// Sets (adds or replaces) the app's secrets, all or none; `Err` with the count the app
    /// would have when it would exceed `max`.
    pub async fn set_secrets(
        &self,
        app: &str,
        secrets: Vec<SecretRecord>,
        max: usize,
    ) -> Result<Result<(), usize>, ControlPlaneError> {
        let app = app.to_string();
        self.call("set secrets", move |c| {
            let tx = c.transaction()?;
            for s in &secrets {
                tx.execute(
                    "INSERT INTO secrets (app_name, name, nonce, ciphertext, digest, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (app_name, name) DO UPDATE SET nonce = ?3, ciphertext = ?4,
                         digest = ?5, created_at = ?6",
                    params![
                        app,
                        s.name,
                        s.sealed.nonce,
                        s.sealed.ciphertext,
                        s.digest,
                        s.created_at
                    ],
                )?;
            }
            let count: usize = tx.query_row(
                "SELECT COUNT(*) FROM secrets WHERE app_name = ?1",
                [&app],
                |r| r.get(0),
            )?;
            if count > max {
                return Ok(Err(count));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// The app's secrets, by name.
    pub async fn secrets(&self, app: &str) -> Result<Vec<SecretRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list secrets", move |c| {
            let mut stmt = c.prepare(
                "SELECT name, nonce, ciphertext, digest, created_at FROM secrets
                 WHERE app_name = ?1 ORDER BY name",
            )?;
            let rows = stmt.query_map([app], |r| {
                Ok(SecretRecord {
                    name: r.get(0)?,
                    sealed: crate::secrets::Sealed {
                        nonce: r.get(1)?,
                        ciphertext: r.get(2)?,
                    },
                    digest: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Removes the app's secrets `names`, all or none; `Err` with those it does not have.
    pub async fn unset_secrets(
        &self,
        app: &str,
        names: Vec<String>,
    ) -> Result<Result<(), Vec<String>>, ControlPlaneError> {
        let app = app.to_string();
        self.call("unset secrets", move |c| {
            let tx = c.transaction()?;
            let mut missing = Vec::new();
            for name in &names {
                let n = tx.execute(
                    "DELETE FROM secrets WHERE app_name = ?1 AND name = ?2",
                    params![app, name],
                )?;
                if n == 0 {
                    missing.push(name.clone());
                }
            }
            if !missing.is_empty() {
                return Ok(Err(missing));
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// Records a new release of `r.app`, numbered one past its last; returns it.
    pub async fn insert_release(
        &self,
        mut r: ReleaseRecord,
    ) -> Result<ReleaseRecord, ControlPlaneError> {
        self.call("add release", move |c| {
            let tx = c.transaction()?;
            let last: Option<u32> = tx.query_row(
                "SELECT MAX(version) FROM releases WHERE app_name = ?1",
                [&r.app],
                |row| row.get(0),
            )?;
            r.version = last.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO releases (app_name, version, image, strategy, status, description,
                                       reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    r.app,
                    r.version,
                    r.image,
                    r.strategy,
                    r.status,
                    r.description,
                    r.reason,
                    r.created_at,
                    r.updated_at
                ],
            )?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    /// The app's releases, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list releases", move |c| {
            let mut stmt = c.prepare(&format!(
                "{RELEASE_SELECT} WHERE app_name = ?1 ORDER BY version DESC"
            ))?;
            let rows = stmt.query_map([app], release_row)?;
            rows.collect()
        })
        .await
    }

    /// Sets a release's status and reason if its status is still `from`; the release as it is
    /// afterwards (`None`: no such release).
    pub async fn finish_release(
        &self,
        app: &str,
        version: u32,
        from: &str,
        status: &str,
        reason: Option<String>,
        now: i64,
    ) -> Result<Option<ReleaseRecord>, ControlPlaneError> {
        let (app, from, status) = (app.to_string(), from.to_string(), status.to_string());
        self.call("update release", move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE releases SET status = ?4, reason = ?5, updated_at = ?6
                 WHERE app_name = ?1 AND version = ?2 AND status = ?3",
                params![app, version, from, status, reason, now],
            )?;
            let r = tx
                .query_row(
                    &format!("{RELEASE_SELECT} WHERE app_name = ?1 AND version = ?2"),
                    params![app, version],
                    release_row,
                )
                .optional()?;
            tx.commit()?;
            Ok(r)
        })
        .await
    }

    /// Adds a hostname for an app; `Err` with the app holding it when the hostname is taken.
    pub async fn insert_certificate(
        &self,
        cert: CertRecord,
    ) -> Result<Result<(), String>, ControlPlaneError> {
        self.call("add certificate", move |c| {
            let tx = c.transaction()?;
            let holder: Option<String> = tx
                .query_row(
                    "SELECT app_name FROM certificates WHERE hostname = ?1",
                    [&cert.hostname],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(app) = holder.filter(|a| *a != cert.app) {
                return Ok(Err(app));
            }
            tx.execute(
                "INSERT INTO certificates (hostname, app_name, certificate, private_key, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (hostname) DO UPDATE SET certificate = ?3, private_key = ?4,
                     created_at = ?5",
                params![
                    cert.hostname,
                    cert.app,
                    cert.certificate,
                    cert.private_key,
                    cert.created_at
                ],
            )?;
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    /// The app's hostnames (`Some(app)`), or every one (`None`), by hostname.
    pub async fn certificates(
        &self,
        app: Option<&str>,
    ) -> Result<Vec<CertRecord>, ControlPlaneError> {
        let app = app.map(str::to_string);
        self.call("list certificates", move |c| {
            let mut stmt = c.prepare(
                "SELECT hostname, app_name, certificate, private_key, created_at FROM certificates
                 WHERE ?1 IS NULL OR app_name = ?1 ORDER BY hostname",
            )?;
            let rows = stmt.query_map([app], |r| {
                Ok(CertRecord {
                    hostname: r.get(0)?,
                    app: r.get(1)?,
                    certificate: r.get(2)?,
                    private_key: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Removes an app's hostname; whether it was there.
    pub async fn delete_certificate(
        &self,
        app: &str,
        hostname: &str,
    ) -> Result<bool, ControlPlaneError> {
        let (app, hostname) = (app.to_string(), hostname.to_string());
        self.call("remove certificate", move |c| {
            let n = c.execute(
                "DELETE FROM certificates WHERE app_name = ?1 AND hostname = ?2",
                params![app, hostname],
            )?;
            Ok(n == 1)
        })
        .await
    }

    /// Records a host's heartbeat (insert or replace everything it reported).
    pub async fn upsert_host(&self, info: HostInfo, now: i64) -> Result<(), ControlPlaneError> {
        self.call("register host", move |c| {
            c.execute(
                "INSERT INTO hosts (id, region, address, runtime, cpus, memory_mb, allocated_cpus,
                                    allocated_memory_mb, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET region = excluded.region, address = excluded.address,
                     runtime = excluded.runtime, cpus = excluded.cpus, memory_mb = excluded.memory_mb,
                     allocated_cpus = excluded.allocated_cpus,
                     allocated_memory_mb = excluded.allocated_memory_mb, last_seen = excluded.last_seen",
                params![
                    info.id,
                    info.region,
                    info.address,
                    info.runtime,
                    info.cpus,
                    to_i64(info.memory_mb),
                    info.allocated_cpus,
                    to_i64(info.allocated_memory_mb),
                    now
                ],
            )
            .map(drop)
        })
        .await
    }

    /// The host part of 6PN addresses for `host_id`: given on first ask (the next free one),
    /// the same ever after, never another host's.
    pub async fn host_number(&self, host_id: &str) -> Result<u32, ControlPlaneError> {
        let host_id = host_id.to_string();
        self.call("number host", move |c| {
            let tx = c.transaction()?;
            let known: Option<i64> = tx
                .query_row(
                    "SELECT number FROM host_numbers WHERE host_id = ?1",
                    [&host_id],
                    |r| r.get(0),
                )
                .optional()?;
            let number = match known {
                Some(n) => n,
                None => {
                    let next: i64 = tx.query_row(
                        "SELECT COALESCE(MAX(number), 0) + 1 FROM host_numbers",
                        [],
                        |r| r.get(0),
                    )?;
                    tx.execute(
                        "INSERT INTO host_numbers (host_id, number) VALUES (?1, ?2)",
                        params![host_id, next],
                    )?;
                    next
                }
            };
            tx.commit()?;
            Ok(to_u32(number))
        })
        .await
    }

    /// Records how the mesh reaches a host (which must have its number): `false` if it has none.
    pub async fn join_mesh(
        &self,
        host_id: &str,
        join: MeshJoin,
    ) -> Result<bool, ControlPlaneError> {
        let host_id = host_id.to_string();
        self.call("join mesh", move |c| {
            let numbered: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM host_numbers WHERE host_id = ?1)",
                [&host_id],
                |r| r.get(0),
            )?;
            if numbered {
                c.execute(
                    "INSERT INTO mesh_members (host_id, region, public_key, endpoint) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (host_id) DO UPDATE SET region = ?2, public_key = ?3, endpoint = ?4",
                    params![host_id, join.region, join.public_key, join.endpoint],
                )?;
            }
            Ok(numbered)
        })
        .await
    }

    /// The hosts in the mesh, by number.
    pub async fn mesh_members(&self) -> Result<Vec<MeshPeer>, ControlPlaneError> {
        self.call("list mesh", |c| {
            let mut stmt = c.prepare(
                "SELECT m.host_id, n.number, m.region, m.public_key, m.endpoint
                 FROM mesh_members m JOIN host_numbers n ON n.host_id = m.host_id ORDER BY n.number",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(MeshPeer {
                    host: r.get(0)?,
                    number: to_u32(r.get(1)?),
                    region: r.get(2)?,
                    public_key: r.get(3)?,
                    endpoint: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Every registered host, by id.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>, ControlPlaneError> {
        self.call("list hosts", |c| {
            let mut stmt = c.prepare(&format!("{HOST_SELECT} ORDER BY id"))?;
            let rows = stmt.query_map([], host_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn host(&self, id: &str) -> Result<Option<HostRecord>, ControlPlaneError> {
        let id = id.to_string();
        self.call("read host", move |c| {
            c.query_row(&format!("{HOST_SELECT} WHERE id = ?1"), [id], host_row)
                .optional()
        })
        .await
    }

    /// Counts a just-placed machine against a host until its next heartbeat reports the truth,
    /// so that creates in quick succession spread by what is really free.
    pub async fn add_allocation(
        &self,
        host_id: &str,
        cpus: u32,
        memory_mb: u64,
    ) -> Result<(), ControlPlaneError> {
        let host_id = host_id.to_string();
        self.call("record allocation", move |c| {
            c.execute(
                "UPDATE hosts SET allocated_cpus = allocated_cpus + ?2,
                                  allocated_memory_mb = allocated_memory_mb + ?3
                 WHERE id = ?1",
                params![host_id, cpus, to_i64(memory_mb)],
            )
            .map(drop)
        })
        .await
    }

    pub async fn insert_machine(
        &self,
        m: MachineRecord,
        now: i64,
    ) -> Result<(), ControlPlaneError> {
        self.call("index machine", move |c| {
            c.execute(
                "INSERT INTO machines (id, app_name, host_id, name, destroyed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![m.id, m.app, m.host_id, m.name, m.destroyed, now],
            )
            .map(drop)
        })
        .await
    }

    pub async fn machine(&self, id: &str) -> Result<Option<MachineRecord>, ControlPlaneError> {
        let id = id.to_string();
        self.call("read machine index", move |c| {
            c.query_row(
                &format!("{MACHINE_SELECT} WHERE id = ?1"),
                [id],
                machine_row,
            )
            .optional()
        })
        .await
    }

    /// Every indexed machine of an app, destroyed ones included.
    pub async fn machines_of_app(
        &self,
        app: &str,
    ) -> Result<Vec<MachineRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list machine index", move |c| {
            let mut stmt = c.prepare(&format!(
                "{MACHINE_SELECT} WHERE app_name = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([app], machine_row)?;
            rows.collect()
        })
        .await
    }

    /// A machine of the app that is not destroyed and has this name.
    pub async fn live_machine_named(
        &self,
        app: &str,
        name: &str,
    ) -> Result<Option<MachineRecord>, ControlPlaneError> {
        let (app, name) = (app.to_string(), name.to_string());
        self.call("find machine by name", move |c| {
            c.query_row(
                &format!("{MACHINE_SELECT} WHERE app_name = ?1 AND name = ?2 AND NOT destroyed"),
                [app, name],
                machine_row,
            )
            .optional()
        })
        .await
    }

    /// Marks a machine destroyed; the volume it mounted is free again.
    pub async fn mark_destroyed(&self, id: &str) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("mark machine destroyed", move |c| {
            let tx = c.transaction()?;
            tx.execute("UPDATE machines SET destroyed = TRUE WHERE id = ?1", [&id])?;
            tx.execute(
                "UPDATE volumes SET attached_machine_id = NULL WHERE attached_machine_id = ?1",
                [&id],
            )?;
            tx.commit()
        })
        .await
    }

    pub async fn insert_volume(&self, v: VolumeRecord) -> Result<(), ControlPlaneError> {
        self.call("create volume", move |c| {
            c.execute(
                "INSERT INTO volumes (id, app_name, name, region, host_id, size_gb, key_nonce,
                     key_ciphertext, attached_machine_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    v.id,
                    v.app,
                    v.name,
                    v.region,
                    v.host_id,
                    v.size_gb,
                    v.key.nonce,
                    v.key.ciphertext,
                    v.attached_machine_id,
                    v.created_at
                ],
            )
            .map(drop)
        })
        .await
    }

    pub async fn volume(&self, id: &str) -> Result<Option<VolumeRecord>, ControlPlaneError> {
        let id = id.to_string();
        self.call("find volume", move |c| {
            c.query_row(&format!("{VOLUME_SELECT} WHERE id = ?1"), [id], volume_row)
                .optional()
        })
        .await
    }

    /// The app's volumes, oldest first.
    pub async fn volumes_of_app(&self, app: &str) -> Result<Vec<VolumeRecord>, ControlPlaneError> {
        let app = app.to_string();
        self.call("list volumes", move |c| {
            let mut stmt = c.prepare(&format!(
                "{VOLUME_SELECT} WHERE app_name = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([app], volume_row)?;
            rows.collect()
        })
        .await
    }

    /// Records which volume `machine` mounts (`None`: none): any other it held is free again.
    /// `Err` with the live machine that mounts `volume` already, changing nothing.
    pub async fn set_machine_volume(
        &self,
        machine: &str,
        volume: Option<&str>,
    ) -> Result<Result<(), String>, ControlPlaneError> {
        let (machine, volume) = (machine.to_string(), volume.map(str::to_string));
        self.call("attach volume", move |c| {
            let tx = c.transaction()?;
            if let Some(volume) = &volume {
                let holder: Option<String> = tx
                    .query_row(
                        "SELECT v.attached_machine_id FROM volumes v JOIN machines m
                         ON m.id = v.attached_machine_id WHERE v.id = ?1 AND NOT m.destroyed",
                        [volume],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(holder) = holder.filter(|h| *h != machine) {
                    return Ok(Err(holder));
                }
            }
            tx.execute(
                "UPDATE volumes SET attached_machine_id = NULL WHERE attached_machine_id = ?1",
                [&machine],
            )?;
            if let Some(volume) = &volume {
                tx.execute(
                    "UPDATE volumes SET attached_machine_id = ?2 WHERE id = ?1",
                    params![volume, machine],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
        })
        .await
    }

    pub async fn set_volume_size(&self, id: &str, size_gb: u32) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("extend volume", move |c| {
            c.execute(
                "UPDATE volumes SET size_gb = ?2 WHERE id = ?1",
                params![id, size_gb],
            )
            .map(drop)
        })
        .await
    }

    /// Removes a volume and its snapshots' records.
    pub async fn delete_volume(&self, id: &str) -> Result<(), ControlPlaneError> {
        let id = id.to_string();
        self.call("destroy volume", move |c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM volume_snapshots WHERE volume_id = ?1", [&id])?;
            tx.execute("DELETE FROM volumes WHERE id = ?1", [&id])?;
            tx.commit()
        })
        .await
    }

    pub async fn insert_snapshot(&self, s: SnapshotRecord) -> Result<(), ControlPlaneError> {
        self.call("record snapshot", move |c| {
            c.execute(
                "INSERT INTO volume_snapshots (id, volume_id, size, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![s.id, s.volume_id, to_i64(s.size), s.created_at],
            )
            .map(drop)
        })
        .await
    }

    /// The volume's snapshots, oldest first.
    pub async fn snapshots(&self, volume: &str) -> Result<Vec<SnapshotRecord>, ControlPlaneError> {
        let volume = volume.to_string();
        self.call("list snapshots", move |c| {
            let mut stmt = c.prepare(
                "SELECT id, volume_id, size, created_at FROM volume_snapshots
                 WHERE volume_id = ?1 ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([volume], |r| {
                Ok(SnapshotRecord {
                    id: r.get(0)?,
                    volume_id: r.get(1)?,
                    size: to_u64(r.get(2)?),
                    created_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn rename_machine(&self, id: &str, name: &str) -> Result<(), ControlPlaneError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.call("rename machine", move |c| {
            c.execute("UPDATE machines SET name = ?2 WHERE id = ?1", [id, name])
                .map(drop)
        })
        .await
    }
}

const APP_SELECT: &str = "SELECT a.id, a.name, a.org_slug, a.created_at,
    (SELECT COUNT(*) FROM machines m WHERE m.app_name = a.name AND NOT m.destroyed)
    FROM apps a";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        org_slug: r.get(2)?,
        created_at: r.get(3)?,
        machine_count: to_u32(r.get(4)?),
    })
}

const HOST_SELECT: &str = "SELECT id, region, address, runtime, cpus, memory_mb, allocated_cpus,
    allocated_memory_mb, last_seen FROM hosts";

fn host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRecord> {
    Ok(HostRecord {
        info: HostInfo {
            id: r.get(0)?,
            region: r.get(1)?,
            address: r.get(2)?,
            runtime: r.get(3)?,
            cpus: r.get(4)?,
            memory_mb: to_u64(r.get(5)?),
            allocated_cpus: r.get(6)?,
            allocated_memory_mb: to_u64(r.get(7)?),
        },
        last_seen: r.get(8)?,
    })
}

const MACHINE_SELECT: &str = "SELECT id, app_name, host_id, name, destroyed FROM machines";

fn machine_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MachineRecord> {
    Ok(MachineRecord {
        id: r.get(0)?,
        app: r.get(1)?,
        host_id: r.get(2)?,
        name: r.get(3)?,
        destroyed: r.get(4)?,
    })
}

fn org_by_slug(c: &Connection, slug: &str) -> rusqlite::Result<Option<OrgRecord>> {
    c.query_row(
        "SELECT slug, network_id FROM orgs WHERE slug = ?1",
        [slug],
        |r| {
            Ok(OrgRecord {
                slug: r.get(0)?,
                network_id: to_u32(r.get(1)?),
            })
        },
    )
    .optional()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("control.db")).unwrap();
        (dir, store)
    }

    fn host(id: &str, region: &str) -> HostInfo {
        HostInfo {
            id: id.into(),
            region: region.into(),
            address: format!("http://{id}:1"),
            runtime: "sim".into(),
            cpus: 4,
            memory_mb: 4096,
            allocated_cpus: 1,
            allocated_memory_mb: 1024,
        }
    }

    fn app(name: &str, org: &str) -> AppRecord {
        AppRecord {
            id: format!("id-{name}"),
            name: name.into(),
            org_slug: org.into(),
            created_at: 1,
            machine_count: 0,
        }
    }

    #[tokio::test]
    async fn releases_are_numbered_per_app_and_end_once() {
        let (_d, s) = open();
        s.ensure_org("a", 1).await.unwrap();
        for name in ["one", "two"] {
            assert!(s.insert_app(app(name, "a")).await.unwrap());
        }
        let release = |app: &str| ReleaseRecord {
            app: app.into(),
            version: 0,
            image: "hello:v1".into(),
            strategy: "rolling".into(),
            status: "running".into(),
            description: None,
            reason: None,
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(s.insert_release(release("one")).await.unwrap().version, 1);
        assert_eq!(s.insert_release(release("one")).await.unwrap().version, 2);
        assert_eq!(s.insert_release(release("two")).await.unwrap().version, 1);
        let versions: Vec<u32> = s
            .releases("one")
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, [2, 1]);
        let done = s
            .finish_release("one", 2, "running", "complete", None, 5)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((done.status.as_str(), done.updated_at), ("complete", 5));
        // A second ending leaves the first in place.
        let again = s
            .finish_release("one", 2, "running", "failed", Some("x".into()), 6)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((again.status.as_str(), again.reason), ("complete", None));
        assert!(
            s.finish_release("one", 9, "running", "failed", None, 6)
                .await
                .unwrap()
                .is_none()
        );
        s.delete_app("one").await.unwrap();
        assert!(s.releases("one").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn orgs_get_sequential_network_ids_and_are_idempotent() {
        let (_d, s) = open();
        assert_eq!(s.ensure_org("personal", 1).await.unwrap().network_id, 1);
        assert_eq!(s.ensure_org("acme", 1).await.unwrap().network_id, 2);
        assert_eq!(s.ensure_org("personal", 2).await.unwrap().network_id, 1);
        assert_eq!(s.org("acme").await.unwrap().unwrap().network_id, 2);
        assert_eq!(s.org("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn tokens_resolve_to_their_org() {
        let (_d, s) = open();
        s.ensure_org("personal", 1).await.unwrap();
        s.insert_token("h1".into(), "personal", "ci", 1)
            .await
            .unwrap();
        let c = s
            .caller("h1".into(), ApiToken::new("t1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.org.slug.as_str(), c.token_name.as_str()),
            ("personal", "ci")
        );
        assert_eq!(
            s.caller("h2".into(), ApiToken::new("t2")).await.unwrap(),
            None
        );
        assert!(
            s.insert_token("h3".into(), "ghost", "x", 1).await.is_err(),
            "a token needs an existing org"
        );
    }

    #[tokio::test]
    async fn apps_are_global_and_count_live_machines() {
        let (_d, s) = open();
        s.ensure_org("a", 1).await.unwrap();
        s.ensure_org("b", 1).await.unwrap();
        assert!(s.insert_app(app("hello", "a")).await.unwrap());
        assert!(!s.insert_app(app("hello", "b")).await.unwrap());
        s.upsert_host(host("h1", "local"), 5).await.unwrap();
        for (id, name) in [("m1", "one"), ("m2", "two")] {
            s.insert_machine(
                MachineRecord {
                    id: id.into(),
                    app: "hello".into(),
                    host_id: "h1".into(),
                    name: name.into(),
                    destroyed: false,
                },
                1,
            )
            .await
            .unwrap();
        }
        assert_eq!(s.app("hello").await.unwrap().unwrap().machine_count, 2);
        s.mark_destroyed("m1").await.unwrap();
        assert_eq!(s.app("hello").await.unwrap().unwrap().machine_count, 1);
        assert_eq!(s.live_machine_named("hello", "one").await.unwrap(), None);
        s.rename_machine("m2", "deux").await.unwrap();
        assert_eq!(
            s.live_machine_named("hello", "deux")
                .await
                .unwrap()
                .map(|m| m.id),
            Some("m2".to_string())
        );
        assert_eq!(s.machines_of_app("hello").await.unwrap().len(), 2);
        assert_eq!(s.apps_of_org("a").await.unwrap().len(), 1);
        assert!(s.apps_of_org("b").await.unwrap().is_empty());

        s.delete_app("hello").await.unwrap();
        assert_eq!(s.app("hello").await.unwrap(), None);
        assert_eq!(s.machine("m2").await.unwrap(), None);
    }

    #[tokio::test]
    async fn host_numbers_are_given_once_and_kept() {
        let (_d, s) = open();
        assert_eq!(s.host_number("ord-1").await.unwrap(), 1);
        assert_eq!(s.host_number("syd-1").await.unwrap(), 2);
        assert_eq!(s.host_number("ord-1").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn hosts_upsert_and_track_allocations() {
        let (_d, s) = open();
        s.upsert_host(host("h1", "local"), 5).await.unwrap();
        s.add_allocation("h1", 1, 256).await.unwrap();
        let h = s.host("h1").await.unwrap().unwrap();
        assert_eq!((h.free_cpus(), h.free_memory_mb()), (2, 4096 - 1280));
        // The next heartbeat replaces the estimate with the truth.
        let mut info = host("h1", "ord");
        info.address = "http://elsewhere:2".into();
        s.upsert_host(info.clone(), 9).await.unwrap();
        let hosts = s.hosts().await.unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].info, info);
        assert_eq!(hosts[0].last_seen, 9);
    }

    #[tokio::test]
    async fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        {
            let s = Store::open(&path).unwrap();
            s.ensure_org("personal", 1).await.unwrap();
            s.insert_app(app("hello", "personal")).await.unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert!(s.app("hello").await.unwrap().is_some());
        assert_eq!(s.ensure_org("next", 1).await.unwrap().network_id, 2);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.db");
        drop(Store::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(c);
        let err = Store::open(&path).err().unwrap();
        assert!(
            matches!(err, ControlPlaneError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }
}
