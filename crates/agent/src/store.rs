//! The agent's SQLite store (`<data_dir>/agent.db`, WAL): machines, their versions, events and
//! leases. It is the source of truth for the machines on this host.
//!
//! Every method is synchronous and short; callers never hold the store across an `.await`. A
//! state change and the events it produces are written in one transaction, so a crash never
//! leaves one without the other. Once [`Store::close`] has run (shutdown, or a simulated crash),
//! every method fails with [`AgentError::Closed`] and nothing more is written.
//!
//! What it keeps, and for how long, is in `retention`.
//!
//! State: one SQLite connection behind a `parking_lot` mutex (`None` once closed), and a change counter
//! (a `watch` channel) that moves on after every committed change to a machine record, with a
//! bounded log of which machine each change was about (so the catalog reloads only those).

use crate::error::AgentError;
use aloft_types::api::{Lease, MachineVersion};
use aloft_types::machine::{EventRequest, EventSource, EventType, ImageRef};
use aloft_types::{InstanceId, MachineConfig, MachineEvent, MachineId, MachineState};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

mod retention;

/// How many changes the change log remembers; a reader further behind reloads everything.
const CHANGE_LOG: usize = 4096;

/// The schema version this agent writes (`PRAGMA user_version`). Version 2 added
/// `machines.image_ref`.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS machines (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    app            TEXT NOT NULL,
    org            TEXT NOT NULL,
    network_id     INTEGER NOT NULL,
    name           TEXT NOT NULL,
    region         TEXT NOT NULL,
    state          TEXT NOT NULL,
    target_state   TEXT,
    instance_id    TEXT NOT NULL,
    private_ip     TEXT NOT NULL,
    config         TEXT NOT NULL,
    cordoned       INTEGER NOT NULL,
    launch_pending INTEGER NOT NULL,
    restarts       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    image_ref      TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    version    TEXT NOT NULL,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (machine_id, version)
);
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    machine_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    status     TEXT NOT NULL,
    source     TEXT NOT NULL,
    timestamp  INTEGER NOT NULL,
    request    TEXT
);
CREATE INDEX IF NOT EXISTS events_by_machine ON events (machine_id, seq);
CREATE TABLE IF NOT EXISTS leases (
    machine_id  TEXT PRIMARY KEY,
    nonce       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    owner       TEXT NOT NULL,
    description TEXT NOT NULL,
    version     TEXT NOT NULL
);
";

/// The meta key of the per-host machine counter (the machine part of 6PN addresses).
const MACHINE_COUNTER: &str = "machine_counter";

/// A machine as the agent keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub id: MachineId,
    pub app: String,
    pub org: String,
    pub network_id: u32,
    pub name: String,
    pub region: String,
    pub state: MachineState,
    /// While `updating`: the state the update leads to (so a restarted agent can finish it).
    pub target_state: Option<MachineState>,
    pub instance_id: InstanceId,
    pub private_ip: String,
    pub config: MachineConfig,
    pub cordoned: bool,
    /// Created without `skip_launch` and not launched yet.
    pub launch_pending: bool,
    /// Restarts done by the restart policy since a user last started the machine.
    pub restarts: u32,
    /// The image the current version runs, once pulled: its digest pins the version to that
    /// image (later starts use it, from the host's cache when it is there). `None` before the
    /// first pull of the version, and when the agent pulls no images.
    pub image_ref: Option<ImageRef>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// The agent's database.
pub(crate) struct Store {
    conn: Mutex<Option<Connection>>,
    /// Moves on after every committed change to a machine record.
    changes: tokio::sync::watch::Sender<u64>,
    /// The newest changes: (counter value, the machine it was about).
    log: Mutex<VecDeque<(u64, MachineId)>>,
}

impl Store {
    /// Opens (or creates) `<data_dir>/agent.db`. A directory or file that cannot be written is
    /// reported before SQLite writes anything.
    pub fn open(data_dir: &Path) -> Result<Store, AgentError> {
        std::fs::create_dir_all(data_dir).map_err(|source| AgentError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("agent.db");
        // Opening the file for writing fails on a read-only directory or file, before any byte
        // is written (an empty new file is what SQLite would create anyway).
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| AgentError::DataDir {
                path: path.clone(),
                source,
            })?;
        let open_err = |source| AgentError::OpenStore {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if found > SCHEMA_VERSION {
            return Err(AgentError::SchemaTooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(open_err)?;
        // WAL with synchronous=NORMAL survives a crash of the agent process (not of the host's
        // power), which is what "written before acting" needs here.
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        if found == 1 {
            conn.execute_batch("ALTER TABLE machines ADD COLUMN image_ref TEXT;")
                .map_err(open_err)?;
        }
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
            .map_err(open_err)?;
        let mut conn = conn;
        let tx = conn.transaction().map_err(open_err)?;
        retention::forget_destroyed(&tx, retention::destroyed_cutoff())?;
        tx.commit().map_err(open_err)?;
        Ok(Store {
            conn: Mutex::new(Some(conn)),
            changes: tokio::sync::watch::Sender::new(0),
            log: Mutex::new(VecDeque::new()),
        })
    }

    /// Writes nothing more, ever: every later call fails with [`AgentError::Closed`].
    pub fn close(&self) {
        let mut conn = self.conn.lock();
        *conn = None;
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, AgentError>,
    ) -> Result<T, AgentError> {
        let mut guard = self.conn.lock();
        match guard.as_mut() {
            Some(conn) => f(conn),
            None => Err(AgentError::Closed),
        }
    }

    /// Inserts a new machine: `build` receives the next value of the host's machine counter
    /// (for its 6PN address). Its first version and `events` are written with it.
    pub fn create_machine(
        &self,
        build: impl FnOnce(u32) -> Record,
        events: &[MachineEvent],
    ) -> Result<Record, AgentError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(q("began a transaction"))?;
            let n: i64 = tx
                .query_row(
                    "INSERT INTO meta (key, value) VALUES (?1, 1)
                     ON CONFLICT (key) DO UPDATE SET value = value + 1
                     RETURNING value",
                    params![MACHINE_COUNTER],
                    |r| r.get(0),
                )
                .map_err(q("advanced the machine counter"))?;
            let n = u32::try_from(n).map_err(|_| AgentError::Corrupt {
                what: "machine counter",
                detail: format!("{n} does not fit in 32 bits"),
            })?;
            let rec = build(n);
            tx.execute(
                "INSERT INTO machines (id, app, org, network_id, name, region, state, target_state,
                     instance_id, private_ip, config, cordoned, launch_pending, restarts,
                     created_at, updated_at, image_ref)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17)",
                params![
                    rec.id.as_str(),
                    rec.app,
                    rec.org,
                    rec.network_id,
                    rec.name,
                    rec.region,
                    rec.state.as_str(),
                    rec.target_state.map(MachineState::as_str),
                    rec.instance_id.as_str(),
                    rec.private_ip,
                    to_json(&rec.config)?,
                    rec.cordoned,
                    rec.launch_pending,
                    rec.restarts,
                    rec.created_at,
                    rec.updated_at,
                    rec.image_ref.as_ref().map(to_json).transpose()?,
                ],
            )
            .map_err(q("inserted a machine"))?;
            write_version(&tx, &rec)?;
            write_events(&tx, &rec.id, events)?;
            retention::trim(&tx, &rec.id)?;
            retention::forget_destroyed(&tx, retention::destroyed_cutoff())?;
            tx.commit().map_err(q("committed a new machine"))?;
            self.changed(&rec.id);
            Ok(rec)
        })
    }

    /// Follows changes to machine records (the value moves on after each).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Moves the change counter on without a write (the machine's health check results changed).
    pub fn touch(&self, id: &MachineId) {
        self.changed(id);
    }

    fn changed(&self, id: &MachineId) {
        let mut log = self.log.lock();
        let n = *self.changes.borrow() + 1;
        if log.len() == CHANGE_LOG {
            log.pop_front();
        }
        log.push_back((n, id.clone()));
        self.changes.send_replace(n);
    }

    /// The machines that changed after change `seen` (a value of [`Store::changes`]), with the
    /// counter they bring it to; `None` when the log no longer reaches back to `seen` (the
    /// caller reloads everything).
    pub fn changed_since(&self, seen: u64) -> Option<(u64, BTreeSet<MachineId>)> {
        let log = self.log.lock();
        let now = *self.changes.borrow();
        let oldest = log.front().map_or(now + 1, |(n, _)| *n);
        if seen > now || oldest > seen + 1 {
            return None;
        }
        let ids = log
            .iter()
            .filter(|(n, _)| *n > seen)
            .map(|(_, id)| id.clone())
            .collect();
        Some((now, ids))
    }

    /// Writes the record's mutable fields and `events` in one transaction; with `version`, also
    /// (re)writes the config of its current version.
    pub fn save(
        &self,
        rec: &Record,
        events: &[MachineEvent],
        version: bool,
    ) -> Result<(), AgentError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(q("began a transaction"))?;
            tx.execute(
                "UPDATE machines SET name = ?2, state = ?3, target_state = ?4, instance_id = ?5,
                     config = ?6, cordoned = ?7, launch_pending = ?8, restarts = ?9,
                     updated_at = ?10, image_ref = ?11
                 WHERE id = ?1",
                params![
                    rec.id.as_str(),
                    rec.name,
                    rec.state.as_str(),
                    rec.target_state.map(MachineState::as_str),
                    rec.instance_id.as_str(),
                    to_json(&rec.config)?,
                    rec.cordoned,
                    rec.launch_pending,
                    rec.restarts,
                    rec.updated_at,
                    rec.image_ref.as_ref().map(to_json).transpose()?,
                ],
            )
            .map_err(q("saved a machine"))?;
            if version {
                write_version(&tx, rec)?;
            }
            write_events(&tx, &rec.id, events)?;
            retention::trim(&tx, &rec.id)?;
            tx.commit().map_err(q("committed a machine change"))?;
            self.changed(&rec.id);
            Ok(())
        })
    }

    pub fn get(&self, id: &MachineId) -> Result<Option<Record>, AgentError> {
        self.with(|conn| {
            let raw = conn
                .query_row(
                    &format!("SELECT {RECORD_COLUMNS} FROM machines WHERE id = ?1"),
                    params![id.as_str()],
                    RawRecord::from_row,
                )
                .optional()
                .map_err(q("read a machine"))?;
            raw.map(RawRecord::into_record).transpose()
        })
    }

    /// Every machine, oldest first.
    pub fn list(&self) -> Result<Vec<Record>, AgentError> {
        self.select("")
    }

    /// Every machine that is not destroyed, oldest first.
    pub fn list_live(&self) -> Result<Vec<Record>, AgentError> {
        self.select("WHERE state != 'destroyed'")
    }

    fn select(&self, filter: &str) -> Result<Vec<Record>, AgentError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {RECORD_COLUMNS} FROM machines {filter} ORDER BY seq"
                ))
                .map_err(q("listed machines"))?;
            let rows = stmt
                .query_map([], RawRecord::from_row)
                .map_err(q("listed machines"))?;
            rows.map(|r| r.map_err(q("listed machines"))?.into_record())
                .collect()
        })
    }

    /// A machine's events, newest first; at most `limit` of them.
    pub fn events(
        &self,
        id: &MachineId,
        limit: Option<u32>,
    ) -> Result<Vec<MachineEvent>, AgentError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT id, kind, status, source, timestamp, request FROM events
                     WHERE machine_id = ?1 ORDER BY seq DESC LIMIT ?2",
                )
                .map_err(q("read events"))?;
            let limit = limit.map_or(-1, i64::from);
            let rows = stmt
                .query_map(params![id.as_str(), limit], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .map_err(q("read events"))?;
            let mut events = Vec::new();
            for row in rows {
                let (id, kind, status, source, timestamp, request) =
                    row.map_err(q("read events"))?;
                events.push(MachineEvent {
                    id,
                    kind: from_str_value::<EventType>("event type", &kind)?,
                    status,
                    source: from_str_value::<EventSource>("event source", &source)?,
                    timestamp,
                    request: request
                        .map(|r| from_json::<EventRequest>("event request", &r))
                        .transpose()?,
                });
            }
            Ok(events)
        })
    }

    /// A machine's versions, newest first.
    pub fn versions(&self, id: &MachineId) -> Result<Vec<MachineVersion>, AgentError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT version, config, created_at FROM versions
                     WHERE machine_id = ?1 ORDER BY seq DESC",
                )
                .map_err(q("read versions"))?;
            let rows = stmt
                .query_map(params![id.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(q("read versions"))?;
            let mut versions = Vec::new();
            for row in rows {
                let (version, config, created_at) = row.map_err(q("read versions"))?;
                versions.push(MachineVersion {
                    version,
                    user_config: from_json("version config", &config)?,
                    created_at: aloft_types::time::rfc3339(created_at),
                });
            }
            Ok(versions)
        })
    }

    /// The machine's lease, expired or not.
    pub fn lease(&self, id: &MachineId) -> Result<Option<Lease>, AgentError> {
        self.with(|conn| {
            conn.query_row(
                "SELECT nonce, expires_at, owner, description, version FROM leases
                 WHERE machine_id = ?1",
                params![id.as_str()],
                |r| {
                    Ok(Lease {
                        nonce: r.get(0)?,
                        expires_at: r.get(1)?,
                        owner: r.get(2)?,
                        description: r.get(3)?,
                        version: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(q("read a lease"))
        })
    }

    pub fn put_lease(&self, id: &MachineId, lease: &Lease) -> Result<(), AgentError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO leases (machine_id, nonce, expires_at, owner, description, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (machine_id) DO UPDATE SET nonce = excluded.nonce,
                     expires_at = excluded.expires_at, owner = excluded.owner,
                     description = excluded.description, version = excluded.version",
                params![
                    id.as_str(),
                    lease.nonce,
                    lease.expires_at,
                    lease.owner,
                    lease.description,
                    lease.version
                ],
            )
            .map_err(q("wrote a lease"))?;
            Ok(())
        })
    }

    pub fn delete_lease(&self, id: &MachineId) -> Result<(), AgentError> {
        self.with(|conn| {
            conn.execute(
                "DELETE FROM leases WHERE machine_id = ?1",
                params![id.as_str()],
            )
            .map_err(q("deleted a lease"))?;
            Ok(())
        })
    }
}

const RECORD_COLUMNS: &str = "id, app, org, network_id, name, region, state, target_state, \
     instance_id, private_ip, config, cordoned, launch_pending, restarts, created_at, updated_at, \
     image_ref";

/// A machines row as SQLite returns it, before its values are checked.
struct RawRecord {
    id: String,
    app: String,
    org: String,
    network_id: u32,
    name: String,
    region: String,
    state: String,
    target_state: Option<String>,
    instance_id: String,
    private_ip: String,
    config: String,
    cordoned: bool,
    launch_pending: bool,
    restarts: u32,
    created_at: i64,
    updated_at: i64,
    image_ref: Option<String>,
}

impl RawRecord {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            app: r.get(1)?,
            org: r.get(2)?,
            network_id: r.get(3)?,
            name: r.get(4)?,
            region: r.get(5)?,
            state: r.get(6)?,
            target_state: r.get(7)?,
            instance_id: r.get(8)?,
            private_ip: r.get(9)?,
            config: r.get(10)?,
            cordoned: r.get(11)?,
            launch_pending: r.get(12)?,
            restarts: r.get(13)?,
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
            image_ref: r.get(16)?,
        })
    }

    fn into_record(self) -> Result<Record, AgentError> {
        let state = |s: &str| {
            MachineState::parse(s).ok_or_else(|| AgentError::Corrupt {
                what: "machine state",
                detail: format!("`{s}` is not a state"),
            })
        };
        Ok(Record {
            id: MachineId::parse(&self.id).ok_or_else(|| AgentError::Corrupt {
                what: "machine id",
                detail: format!("`{}` is not 14 hex characters", self.id),
            })?,
            app: self.app,
            org: self.org,
            network_id: self.network_id,
            name: self.name,
            region: self.region,
            state: state(&self.state)?,
            target_state: self.target_state.as_deref().map(state).transpose()?,
            instance_id: from_str_value("instance id", &self.instance_id)?,
            private_ip: self.private_ip,
            config: from_json("machine config", &self.config)?,
            cordoned: self.cordoned,
            launch_pending: self.launch_pending,
            restarts: self.restarts,
            created_at: self.created_at,
            updated_at: self.updated_at,
            image_ref: self
                .image_ref
                .map(|r| from_json("image ref", &r))
                .transpose()?,
        })
    }
}

fn write_version(tx: &rusqlite::Transaction<'_>, rec: &Record) -> Result<(), AgentError> {
    tx.execute(
        "INSERT INTO versions (machine_id, version, config, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (machine_id, version) DO UPDATE SET config = excluded.config",
        params![
            rec.id.as_str(),
            rec.instance_id.as_str(),
            to_json(&rec.config)?,
            rec.updated_at
        ],
    )
    .map_err(q("wrote a version"))?;
    Ok(())
}

fn write_events(
    tx: &rusqlite::Transaction<'_>,
    id: &MachineId,
    events: &[MachineEvent],
) -> Result<(), AgentError> {
    for e in events {
        tx.execute(
            "INSERT INTO events (machine_id, id, kind, status, source, timestamp, request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id.as_str(),
                e.id,
                to_str_value(&e.kind)?,
                e.status,
                to_str_value(&e.source)?,
                e.timestamp,
                e.request.as_ref().map(to_json).transpose()?,
            ],
        )
        .map_err(q("wrote an event"))?;
    }
    Ok(())
}

fn q(op: &'static str) -> impl Fn(rusqlite::Error) -> AgentError {
    move |source| AgentError::Query { op, source }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, AgentError> {
    serde_json::to_string(v).map_err(|e| AgentError::Corrupt {
        what: "value to store",
        detail: e.to_string(),
    })
}

fn from_json<T: serde::de::DeserializeOwned>(what: &'static str, s: &str) -> Result<T, AgentError> {
    serde_json::from_str(s).map_err(|e| AgentError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

/// A unit enum (or a transparent string id) as the bare string serde writes for it.
fn to_str_value<T: serde::Serialize>(v: &T) -> Result<String, AgentError> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(AgentError::Corrupt {
            what: "value to store",
            detail: format!("expected a string, got {other:?}"),
        }),
    }
}

fn from_str_value<T: serde::de::DeserializeOwned>(
    what: &'static str,
    s: &str,
) -> Result<T, AgentError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        AgentError::Corrupt {
            what,
            detail: format!("`{s}`: {e}"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aloft_types::machine::ExitEvent;

    pub(super) fn record(n: u32) -> Record {
        Record {
            id: MachineId::random(),
            app: "hello".into(),
            org: "personal".into(),
            network_id: 1,
            name: "m".into(),
            region: "local".into(),
            state: MachineState::Created,
            target_state: None,
            instance_id: InstanceId::new(),
            private_ip: aloft_types::sixpn::machine_address(1, 1, n).to_string(),
            config: MachineConfig::for_image("nginx"),
            cordoned: false,
            launch_pending: true,
            restarts: 0,
            created_at: 1,
            updated_at: 1,
            image_ref: None,
        }
    }

    pub(super) fn event(kind: EventType, status: &str) -> MachineEvent {
        MachineEvent {
            id: ulid::Ulid::new().to_string(),
            kind,
            status: status.into(),
            source: EventSource::User,
            timestamp: 5,
            request: Some(EventRequest {
                exit_event: Some(ExitEvent::default()),
                restart_count: None,
                message: None,
            }),
        }
    }

    #[test]
    fn round_trips_machines_events_versions_and_leases() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store
            .create_machine(record, &[event(EventType::Launch, "created")])
            .unwrap();
        let b = store.create_machine(record, &[]).unwrap();
        assert!(a.private_ip.ends_with(":1:2"), "{}", a.private_ip);
        assert!(b.private_ip.ends_with(":2:2"), "{}", b.private_ip);
        assert_eq!(store.get(&a.id).unwrap().as_ref(), Some(&a));

        let mut a2 = a.clone();
        a2.state = MachineState::Updating;
        a2.target_state = Some(MachineState::Started);
        a2.instance_id = InstanceId::new();
        a2.config.env.insert("A".into(), "1".into());
        a2.image_ref = Some(ImageRef {
            registry: "127.0.0.1:5000".into(),
            repository: "personal/hello".into(),
            tag: "v1".into(),
            digest: "sha256:0123".into(),
        });
        store
            .save(&a2, &[event(EventType::Update, "updating")], true)
            .unwrap();
        assert_eq!(store.get(&a.id).unwrap(), Some(a2.clone()));
        let events = store.events(&a.id, None).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventType::Update);
        assert_eq!(store.events(&a.id, Some(1)).unwrap().len(), 1);
        let versions = store.versions(&a.id).unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[0].version, a2.instance_id.as_str());
        assert_eq!(versions[0].user_config, a2.config);

        assert_eq!(store.lease(&a.id).unwrap(), None);
        let lease = Lease {
            nonce: "n".into(),
            expires_at: 9,
            owner: "o".into(),
            description: String::new(),
            version: "v".into(),
        };
        store.put_lease(&a.id, &lease).unwrap();
        assert_eq!(store.lease(&a.id).unwrap(), Some(lease));
        store.delete_lease(&a.id).unwrap();
        assert_eq!(store.lease(&a.id).unwrap(), None);
        assert_eq!(store.list().unwrap().len(), 2);

        store.close();
        assert!(matches!(store.get(&a.id), Err(AgentError::Closed)));
        drop(store);
        // The counter survives a reopen.
        let store = Store::open(dir.path()).unwrap();
        let c = store.create_machine(record, &[]).unwrap();
        assert!(c.private_ip.ends_with(":3:2"), "{}", c.private_ip);
    }

    #[test]
    fn a_version_1_store_gains_image_ref() {
        let dir = tempfile::tempdir().unwrap();
        let rec = record(1);
        {
            let conn = Connection::open(dir.path().join("agent.db")).unwrap();
            conn.execute_batch(&SCHEMA.replace(",\n    image_ref      TEXT", ""))
                .unwrap();
            conn.execute_batch("PRAGMA user_version = 1;").unwrap();
            conn.execute(
                "INSERT INTO machines (id, app, org, network_id, name, region, state,
                     instance_id, private_ip, config, cordoned, launch_pending, restarts,
                     created_at, updated_at)
                 VALUES (?1, 'hello', 'personal', 1, 'm', 'local', 'stopped', ?2, 'fdaa::2',
                     ?3, 0, 0, 0, 1, 1)",
                params![
                    rec.id.as_str(),
                    rec.instance_id.as_str(),
                    to_json(&rec.config).unwrap()
                ],
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mut old = store.get(&rec.id).unwrap().unwrap();
        assert_eq!(
            (old.state, old.image_ref.clone()),
            (MachineState::Stopped, None)
        );
        old.image_ref = Some(ImageRef {
            digest: "sha256:ab".into(),
            ..ImageRef::default()
        });
        store.save(&old, &[], false).unwrap();
        assert_eq!(store.get(&rec.id).unwrap(), Some(old));
    }
}
