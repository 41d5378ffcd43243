//! Certificates: the hostnames apps are served at, with the user's certificate and key (PEM)
//! when they uploaded one.

use super::Store;
use crate::error::ControlPlaneError;
use aloft_types::api::ProxyCertificate;
use rusqlite::{OptionalExtension, params};

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

impl Store {
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
}
