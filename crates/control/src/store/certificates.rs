//! Certificates: the hostnames apps are served at. A row holds a hostname's custom certificate
//! and sealed key (PEM) when the user uploaded one, and whether a managed certificate was
//! requested (`acme_requested`); either, both or (after a partial removal) neither.

use super::Store;
use crate::error::ControlPlaneError;
use rusqlite::{OptionalExtension, Row, params};

/// A hostname an app is served at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRecord {
    pub hostname: String,
    pub app: String,
    /// The custom certificate chain (PEM).
    pub certificate: Option<String>,
    /// Its private key as stored (sealed, see `apps::certificates::seal_key`).
    pub private_key: Option<String>,
    /// A managed certificate was requested and not stopped since.
    pub acme_requested: bool,
    /// Milliseconds since the Unix epoch: when the hostname was added to the app.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch: when a certificate of it last changed.
    pub updated_at: i64,
}

/// What a write does to a hostname's row (made when missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertChange {
    /// Ask for a managed certificate.
    RequestManaged,
    /// Set the custom certificate and its sealed key.
    Custom { certificate: String, key: String },
}

/// Which part of a hostname a removal takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertPart {
    /// The hostname and every certificate.
    All,
    /// The managed certificate (the custom one stays).
    Managed,
    /// The custom certificate (the managed one stays).
    Custom,
}

/// One page of an app's hostnames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPage {
    pub rows: Vec<CertRecord>,
    /// Whether rows follow the page.
    pub more: bool,
    /// How many rows match the filter (on every page).
    pub total: u64,
}

const COLUMNS: &str =
    "hostname, app_name, certificate, private_key, acme_requested, created_at, updated_at";

fn record(r: &Row<'_>) -> rusqlite::Result<CertRecord> {
    Ok(CertRecord {
        hostname: r.get(0)?,
        app: r.get(1)?,
        certificate: r.get(2)?,
        private_key: r.get(3)?,
        acme_requested: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get::<_, Option<i64>>(6)?.unwrap_or(r.get(5)?),
    })
}

fn row(
    c: &rusqlite::Connection,
    app: &str,
    hostname: &str,
) -> rusqlite::Result<Option<CertRecord>> {
    c.query_row(
        &format!("SELECT {COLUMNS} FROM certificates WHERE app_name = ?1 AND hostname = ?2"),
        [app, hostname],
        record,
    )
    .optional()
}

impl Store {
    /// Applies `change` to the app's `hostname` (added when missing); the row after it, or
    /// `Err` with the app holding the hostname when another app does.
    pub async fn change_certificate(
        &self,
        app: &str,
        hostname: &str,
        change: CertChange,
        now: i64,
    ) -> Result<Result<CertRecord, String>, ControlPlaneError> {
        let (app, hostname) = (app.to_string(), hostname.to_string());
        self.call("change certificate", move |c| {
            let tx = c.transaction()?;
            let holder: Option<String> = tx
                .query_row(
                    "SELECT app_name FROM certificates WHERE hostname = ?1",
                    [&hostname],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = holder.filter(|a| *a != app) {
                return Ok(Err(other));
            }
            tx.execute(
                "INSERT INTO certificates (hostname, app_name, acme_requested, created_at, updated_at)
                 VALUES (?1, ?2, FALSE, ?3, ?3) ON CONFLICT (hostname) DO NOTHING",
                params![hostname, app, now],
            )?;
            match change {
                CertChange::RequestManaged => tx.execute(
                    "UPDATE certificates SET acme_requested = TRUE, updated_at = ?2
                     WHERE hostname = ?1",
                    params![hostname, now],
                )?,
                CertChange::Custom { certificate, key } => tx.execute(
                    "UPDATE certificates SET certificate = ?2, private_key = ?3, updated_at = ?4
                     WHERE hostname = ?1",
                    params![hostname, certificate, key, now],
                )?,
            };
            let after = row(&tx, &app, &hostname)?.expect("written in this transaction");
            tx.commit()?;
            Ok(Ok(after))
        })
        .await
    }

    /// The app's `hostname`.
    pub async fn certificate(
        &self,
        app: &str,
        hostname: &str,
    ) -> Result<Option<CertRecord>, ControlPlaneError> {
        let (app, hostname) = (app.to_string(), hostname.to_string());
        self.call("read certificate", move |c| row(c, &app, &hostname))
            .await
    }

    /// Up to `limit` of the app's hostnames after `after`, containing `filter`, by hostname.
    pub async fn certificate_page(
        &self,
        app: &str,
        after: Option<String>,
        filter: Option<String>,
        limit: u32,
    ) -> Result<CertPage, ControlPlaneError> {
        let app = app.to_string();
        let filter = filter.unwrap_or_default();
        self.call("list certificates", move |c| {
            let total: u64 = c.query_row(
                "SELECT COUNT(*) FROM certificates WHERE app_name = ?1 AND instr(hostname, ?2) > 0",
                params![app, filter],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM certificates
                 WHERE app_name = ?1 AND instr(hostname, ?2) > 0 AND (?3 IS NULL OR hostname > ?3)
                 ORDER BY hostname LIMIT ?4"
            ))?;
            let mut rows = stmt
                .query_map(params![app, filter, after, i64::from(limit) + 1], record)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            Ok(CertPage { rows, more, total })
        })
        .await
    }

    /// Every hostname of every app, by hostname (for the proxies).
    pub async fn all_certificates(&self) -> Result<Vec<CertRecord>, ControlPlaneError> {
        self.call("list certificates", move |c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM certificates ORDER BY hostname"
            ))?;
            let rows = stmt.query_map([], record)?;
            rows.collect()
        })
        .await
    }

    /// Removes `part` of the app's `hostname`: the row as it was before (`None` when the app
    /// has no such hostname). A part that is not there changes nothing.
    pub async fn remove_certificate(
        &self,
        app: &str,
        hostname: &str,
        part: CertPart,
        now: i64,
    ) -> Result<Option<CertRecord>, ControlPlaneError> {
        let (app, hostname) = (app.to_string(), hostname.to_string());
        self.call("remove certificate", move |c| {
            let tx = c.transaction()?;
            let Some(before) = row(&tx, &app, &hostname)? else {
                return Ok(None);
            };
            let sql = match part {
                CertPart::All => "DELETE FROM certificates WHERE hostname = ?1",
                CertPart::Managed => {
                    "UPDATE certificates SET acme_requested = FALSE, updated_at = ?2
                     WHERE hostname = ?1 AND acme_requested"
                }
                CertPart::Custom => {
                    "UPDATE certificates SET certificate = NULL, private_key = NULL, updated_at = ?2
                     WHERE hostname = ?1 AND certificate IS NOT NULL"
                }
            };
            if part == CertPart::All {
                tx.execute(sql, [&hostname])?;
            } else {
                tx.execute(sql, params![hostname, now])?;
            }
            tx.commit()?;
            Ok(Some(before))
        })
        .await
    }
}
