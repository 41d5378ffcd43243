//! Hosts: the registry of host agents as of their last heartbeat, their 6PN host numbers, their
//! places in the mesh, and the capacity placement has handed out on them.

use super::{Store, to_i64, to_u32, to_u64};
use crate::error::ControlPlaneError;
use aloft_types::api::{HostInfo, MeshJoin, MeshPeer};
use rusqlite::{OptionalExtension, params};

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

impl Store {
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
}
