//! The hostnames an app is served at, with the user's certificate and key (checked here) or one
//! from the development CA. A user's private key is sealed with the secrets key before it is
//! stored (`cert/<hostname>` as associated data) and opened only for the proxies.

use crate::ControlPlane;
use crate::auth;
use crate::secrets::{Sealed, SecretBox};
use crate::store::{Caller, CertRecord};
use aloft_types::ApiError;
use aloft_types::api::{Certificate, CreateCertificateRequest};
use aloft_types::time::{now_ms, rfc3339};

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

fn certificate_json(r: CertRecord) -> Certificate {
    Certificate {
        source: if r.certificate.is_some() {
            "uploaded"
        } else {
            "development-ca"
        }
        .into(),
        hostname: r.hostname,
        app: r.app,
        created_at: rfc3339(r.created_at),
    }
}

impl ControlPlane {
    /// `POST /v1/apps/{app}/certificates`.
    pub(crate) async fn add_certificate(
        &self,
        caller: &Caller,
        app: &str,
        body: &[u8],
    ) -> Result<Certificate, ApiError> {
        let app = self.app_of(caller, app).await?;
        let req: CreateCertificateRequest = ApiError::parse_json(body)?;
        let hostname = req
            .hostname
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let valid = hostname.split('.').count() >= 2
            && hostname.split('.').all(auth::is_dns_label)
            && !hostname.ends_with(".localhost");
        if !valid {
            return Err(ApiError::invalid(
                "hostname",
                format!(
                    "hostname `{}` is not a DNS name the app can be served at: use something like \
                     \"www.example.com\" (`<app>.localhost` is served already)",
                    req.hostname
                ),
            ));
        }
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
        let pem = match (req.certificate, req.private_key) {
            (Some(c), Some(k)) => {
                aloft_http::tls::certified_key_from_pem(&c, &k)
                    .map_err(|e| ApiError::invalid("certificate", e))?;
                Some((c, k))
            }
            (None, None) if !aloft_http::tls::dev_ca_may_sign(&hostname) => {
                return Err(ApiError::invalid(
                    "certificate",
                    format!(
                        "the development CA signs only names under .{}, and `{hostname}` is a \
                         real domain: upload its certificate and key (`aloft certs add \
                         {hostname} --cert <chain.pem> --key <key.pem>`)",
                        aloft_http::tls::DEV_CA_DOMAINS.join(", .")
                    ),
                ));
            }
            (None, None) => None,
            _ => {
                return Err(ApiError::invalid(
                    "certificate",
                    "give both certificate and private_key, or neither (for a certificate from \
                     the development CA)",
                ));
            }
        };
        let record = CertRecord {
            hostname: hostname.clone(),
            app: app.name.clone(),
            certificate: pem.as_ref().map(|(c, _)| c.clone()),
            private_key: pem.map(|(_, k)| seal_key(&self.inner.secrets, &hostname, &k)),
            created_at: now_ms(),
        };
        if self
            .inner
            .store
            .insert_certificate(record.clone())
            .await?
            .is_err()
        {
            return Err(ApiError::Conflict(format!(
                "hostname `{hostname}` is served by another app already; remove it there first"
            )));
        }
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(certificate_json(record))
    }

    /// `GET /v1/apps/{app}/certificates`.
    pub(crate) async fn list_certificates(
        &self,
        caller: &Caller,
        app: &str,
    ) -> Result<Vec<Certificate>, ApiError> {
        let app = self.app_of(caller, app).await?;
        Ok(self
            .inner
            .store
            .certificates(Some(&app.name))
            .await?
            .into_iter()
            .map(certificate_json)
            .collect())
    }

    /// `DELETE /v1/apps/{app}/certificates/{hostname}`.
    pub(crate) async fn remove_certificate(
        &self,
        caller: &Caller,
        app: &str,
        hostname: &str,
    ) -> Result<(), ApiError> {
        let app = self.app_of(caller, app).await?;
        let hostname = hostname.to_ascii_lowercase();
        if !self
            .inner
            .store
            .delete_certificate(&app.name, &hostname)
            .await?
        {
            return Err(ApiError::NotFound(format!(
                "app `{}` has no certificate for `{hostname}`; `aloft certs list -a {}` shows its hostnames",
                app.name, app.name
            )));
        }
        self.inner.certificates.send_modify(|n| *n += 1);
        Ok(())
    }
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
