//! The hostnames an app is served at and their certificates, in the reference's model (the
//! Machines API's `/certificates/acme`, `/custom`, `/{hostname}`, `/check`).
//!
//! A hostname is one row (one app per hostname, across orgs: 409) holding an optional custom
//! certificate, uploaded and checked here (the chain loads, the key is the leaf's, the leaf names
//! the hostname and is within its validity), and a flag "managed certificate requested". Managed
//! certificates come from an issuer behind [`issuer::ManagedIssuer`]: today the proxies'
//! development CA, which serves reserved names at once and refuses real domains (422: upload the
//! certificate instead) until an ACME issuer is plugged in. The proxies get every hostname that
//! has a custom certificate or a managed one, the custom one winning when both exist.
//!
//! A user's private key is sealed with the secrets key before it is stored (`cert/<hostname>`
//! as associated data) and opened only for the proxies and for checks.

mod detail;
pub(crate) mod issuer;

use crate::ControlPlane;
use crate::auth;
use crate::error::ControlPlaneError;
use crate::secrets::{Sealed, SecretBox};
use crate::store::{Caller, CertChange, CertPart, CertRecord};
use aloft_types::ApiError;
use aloft_types::api::ProxyCertificate;
use aloft_types::certificates::{
    CertificateDetailResponse, CreateAcmeCertificateRequest, ImportCertificateRequest,
    ListCertificatesQuery, ListCertificatesResponse,
};
use aloft_types::time::now_ms;

/// How a sealed private key is stored: `sealed:v1:<nonce hex>:<ciphertext hex>`.
const SEALED_KEY: &str = "sealed:v1:";

/// A user's private key as the database keeps it.
pub(crate) fn seal_key(secrets: &SecretBox, hostname: &str, pem: &str) -> String {
    let sealed = secrets.seal("cert", hostname, pem);
    format!("{SEALED_KEY}{}:{}", sealed.nonce, sealed.ciphertext)
}

/// The private key of `hostname` as stored: opened, or as it is when it was stored before keys
/// were sealed. `None` when it does not open (another key, another hostname's row).
pub(crate) fn open_key(secrets: &SecretBox, hostname: &str, stored: &str) -> Option<String> {
    let Some(sealed) = stored.strip_prefix(SEALED_KEY) else {
        return Some(stored.to_string());
    };
    let (nonce, ciphertext) = sealed.split_once(':')?;
    let sealed = Sealed {
        nonce: nonce.to_string(),
        ciphertext: ciphertext.to_string(),
    };
    secrets.open("cert", hostname, &sealed)
}

/// The longest hostname DNS allows.
const MAX_HOSTNAME: usize = 253;
/// The largest certificate chain accepted (a chain of a few certificates is a few KiB).
const MAX_CHAIN_BYTES: usize = 64 * 1024;
/// The largest private key accepted (an 8192-bit RSA key is about 6.5 KiB of PEM).
const MAX_KEY_BYTES: usize = 16 * 1024;
/// Hostnames a page lists when `limit` is not given, and at most.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// A hostname as a user gave it in a body, checked: lowercase, no trailing dot, a DNS name of
/// two labels or more and not under `.localhost` (`<app>.localhost` is served already).
fn hostname_of(given: &str) -> Result<String, ApiError> {
    if given.len() > MAX_HOSTNAME + 1 {
        return Err(ApiError::invalid(
            "hostname",
            format!("the hostname is longer than {MAX_HOSTNAME} characters; DNS allows no longer"),
        ));
    }
    let hostname = path_hostname(given.trim());
    let valid = hostname.split('.').count() >= 2
        && hostname.split('.').all(auth::is_dns_label)
        && !hostname.ends_with(".localhost");
    if !valid {
        return Err(ApiError::invalid(
            "hostname",
            format!(
                "hostname `{given}` is not a DNS name the app can be served at: use something like \
                 \"www.example.com\" (`<app>.localhost` is served already)"
            ),
        ));
    }
    Ok(hostname)
}

/// A hostname as a path names it: lowercase, no trailing dot (a name never added is a 404).
fn path_hostname(given: &str) -> String {
    given.trim_end_matches('.').to_ascii_lowercase()
}

fn at_most(field: &str, pem: &str, max: usize) -> Result<(), ApiError> {
    if pem.len() > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "`{field}` is {} bytes, more than the {max} accepted: send the PEM of one \
                 certificate chain (leaf first) and its one key",
                pem.len()
            ),
        ));
    }
    Ok(())
}

impl ControlPlane {
    /// The org's hostname, checked against the operator's grants.
    fn granted(&self, caller: &Caller, given: &str) -> Result<String, ApiError> {
        let hostname = hostname_of(given)?;
        if !self
            .inner
            .config
            .hostnames
            .allows(&caller.org.slug, &hostname)
        {
            return Err(ApiError::invalid(
                "hostname",
                format!(
                    "hostname `{hostname}` is not approved for org `{}`: ask the cloud's operator \
                     to grant it (`[[hostnames.grants]]` in the control plane's config)",
                    caller.org.slug
                ),
            ));
        }
        Ok(hostname)
    }

    /// Applies a change to the app's hostname; 409 when another app has it.
    async fn change(
        &self,
        app: &str,
        hostname: &str,
        change: CertChange,
    ) -> Result<CertificateDetailResponse, ApiError> {
        let changed = self
            .inner
            .store
            .change_certificate(app, hostname, change, now_ms())
            .await?;
        let Ok(record) = changed else {
            return Err(ApiError::Conflict(format!(
                "hostname `{hostname}` is served by another app already; remove it there first"
            )));
        };
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(self.assessed_detail(&record))
    }

    /// `POST /v1/apps/{app}/certificates/acme`: serve the hostname with a managed certificate.
    pub(crate) async fn request_managed_certificate(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<CertificateDetailResponse, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: CreateAcmeCertificateRequest = ApiError::parse_json(body)?;
        let hostname = self.granted(caller, &req.hostname)?;
        if let Err(why) = self.inner.issuer.can_issue(&hostname) {
            return Err(ApiError::invalid(
                "hostname",
                format!("{}: {}", why.message, why.remediation),
            ));
        }
        self.change(&app.name, &hostname, CertChange::RequestManaged)
            .await
    }

    /// `POST /v1/apps/{app}/certificates/custom`: serve the hostname with the user's own
    /// certificate (checked: it loads, the key is the leaf's, the leaf names the hostname and is
    /// within its validity).
    pub(crate) async fn import_certificate(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<CertificateDetailResponse, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: ImportCertificateRequest = ApiError::parse_json(body)?;
        let hostname = self.granted(caller, &req.hostname)?;
        at_most("fullchain", &req.fullchain, MAX_CHAIN_BYTES)?;
        at_most("private_key", &req.private_key, MAX_KEY_BYTES)?;
        aloft_http::tls::certified_key_from_pem(&req.fullchain, &req.private_key).map_err(|e| {
            ApiError::invalid(
                "fullchain",
                format!("{e}: send the PEM chain (leaf first) and the key it was issued for"),
            )
        })?;
        let record = CertRecord {
            hostname: hostname.clone(),
            app: app.name.clone(),
            certificate: Some(req.fullchain.clone()),
            private_key: None,
            acme_requested: false,
            created_at: 0,
            updated_at: 0,
        };
        let checked = detail::assess(&*self.inner.issuer, &record, Some(Ok(())), now_ms());
        if let Some(e) = checked.errors.first() {
            return Err(ApiError::invalid(
                "fullchain",
                format!("{}: {}", e.message, e.remediation),
            ));
        }
        let key = seal_key(&self.inner.secrets, &hostname, &req.private_key);
        let change = CertChange::Custom {
            certificate: req.fullchain,
            key,
        };
        self.change(&app.name, &hostname, change).await
    }

    /// `GET /v1/apps/{app}/certificates`: a page of the app's hostnames, by hostname.
    pub(crate) async fn list_certificates(
        &self,
        caller: &Caller,
        app: &str,
        q: ListCertificatesQuery,
    ) -> Result<ListCertificatesResponse, ApiError> {
        let app = self.app_of(caller, app).await?;
        let limit = match q.limit {
            None | Some(0) => DEFAULT_PAGE,
            Some(n) if n <= MAX_PAGE => n,
            Some(n) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit {n} is more than {MAX_PAGE}; page with `cursor` instead"),
                ));
            }
        };
        for (field, value) in [("cursor", &q.cursor), ("filter", &q.filter)] {
            if value
                .as_ref()
                .is_some_and(|v| v.chars().count() > MAX_HOSTNAME)
            {
                return Err(ApiError::invalid(
                    field,
                    format!("`{field}` is longer than a hostname ({MAX_HOSTNAME} characters)"),
                ));
            }
        }
        let filter = q.filter.map(|f| f.to_ascii_lowercase());
        let cursor = q.cursor.filter(|c| !c.is_empty());
        let page = self
            .inner
            .store
            .certificate_page(&app.name, cursor, filter, limit)
            .await?;
        let now = now_ms();
        let certificates: Vec<_> = page
            .rows
            .iter()
            .map(|r| detail::summary(r, &detail::assess(&*self.inner.issuer, r, None, now)))
            .collect();
        Ok(ListCertificatesResponse {
            next_cursor: page
                .more
                .then(|| certificates.last().map(|c| c.hostname.clone()))
                .flatten(),
            certificates,
            total_count: page.total,
        })
    }

    /// `GET /v1/apps/{app}/certificates/{hostname}` and `POST .../{hostname}/check`: the
    /// hostname's certificates, checked now.
    pub(crate) async fn certificate_detail(
        &self,
        caller: &Caller,
        app: &str,
        hostname: &str,
    ) -> Result<CertificateDetailResponse, ApiError> {
        let app = self.app_of(caller, app).await?;
        let hostname = path_hostname(hostname);
        match self.inner.store.certificate(&app.name, &hostname).await? {
            Some(record) => Ok(self.assessed_detail(&record)),
            None => Err(no_hostname(&app.name, &hostname)),
        }
    }

    /// The detail of a row, its custom key opened and loaded with its certificate.
    fn assessed_detail(&self, r: &CertRecord) -> CertificateDetailResponse {
        let key_loads = r.certificate.as_ref().map(|chain| {
            let key = r
                .private_key
                .as_deref()
                .and_then(|k| open_key(&self.inner.secrets, &r.hostname, k))
                .ok_or(
                    "the stored private key does not open with this control plane's secrets key",
                )?;
            aloft_http::tls::certified_key_from_pem(chain, &key).map(drop)
        });
        let a = detail::assess(&*self.inner.issuer, r, key_loads, now_ms());
        detail::detail(r, a)
    }

    /// `DELETE /v1/apps/{app}/certificates/{hostname}` (`All`), `.../acme` (`Managed`: the
    /// custom certificate stays) and `.../custom` (`Custom`: the managed one stays). The
    /// hostname stays on the app after a partial removal, even with no certificate left.
    pub(crate) async fn remove_certificate(
        &self,
        caller: &Caller,
        app: &str,
        hostname: &str,
        part: CertPart,
    ) -> Result<(), ApiError> {
        let app = self.app_of(caller, app).await?;
        let hostname = path_hostname(hostname);
        let before = self
            .inner
            .store
            .remove_certificate(&app.name, &hostname, part, now_ms())
            .await?
            .ok_or_else(|| no_hostname(&app.name, &hostname))?;
        let missing = match part {
            CertPart::Managed if !before.acme_requested => Some("no managed certificate requested"),
            CertPart::Custom if before.certificate.is_none() => Some("no custom certificate"),
            _ => None,
        };
        if let Some(what) = missing {
            return Err(ApiError::NotFound(format!(
                "`{hostname}` has {what}; `aloft certs show {hostname} -a {}` shows its certificates",
                app.name
            )));
        }
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Every hostname the proxies serve: with its custom certificate and opened key, or none
    /// for a managed one the issuer can give (the custom one wins when both exist). Hostnames
    /// with neither are left out.
    pub async fn certificates(&self) -> Result<Vec<ProxyCertificate>, ControlPlaneError> {
        let rows = self.inner.store.all_certificates().await?;
        let mut served = Vec::with_capacity(rows.len());
        for r in rows {
            let key = r
                .private_key
                .as_deref()
                .and_then(|k| open_key(&self.inner.secrets, &r.hostname, k));
            if r.certificate.is_some() && key.is_none() {
                tracing::error!(hostname = %r.hostname, "the stored private key does not open with this control plane's secrets key; its custom certificate is not served");
            }
            let custom = r.certificate.zip(key);
            if custom.is_none()
                && !(r.acme_requested && self.inner.issuer.can_issue(&r.hostname).is_ok())
            {
                continue;
            }
            let (certificate, private_key) = custom.unzip();
            served.push(ProxyCertificate {
                hostname: r.hostname,
                app: r.app,
                certificate,
                private_key,
            });
        }
        Ok(served)
    }
}

fn no_hostname(app: &str, hostname: &str) -> ApiError {
    ApiError::NotFound(format!(
        "app `{app}` has no hostname `{hostname}`; `aloft certs list -a {app}` shows its hostnames"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored key shows nothing of the PEM, opens only for its own hostname, and a key stored
    /// before keys were sealed still reads.
    #[test]
    fn private_keys_are_stored_sealed_per_hostname() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = SecretBox::load_or_create(&dir.path().join("secrets.key"), 0).unwrap();
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGH\n-----END PRIVATE KEY-----\n";
        let stored = seal_key(&secrets, "www.example.com", pem);
        assert!(stored.starts_with(SEALED_KEY), "{stored}");
        assert!(
            !stored.contains("PRIVATE KEY") && !stored.contains("MIGH"),
            "{stored}"
        );
        assert_eq!(
            open_key(&secrets, "www.example.com", &stored).as_deref(),
            Some(pem)
        );
        assert_eq!(open_key(&secrets, "api.example.com", &stored), None);
        assert_eq!(
            open_key(&secrets, "www.example.com", pem).as_deref(),
            Some(pem)
        );
    }
}
