//! TLS between hosts and the control plane, so that a host's join token and credential never
//! cross the network in the clear before it is inside the mesh.
//!
//! The control plane's `[tls]` listeners present either the operator's own certificate
//! (`cert_file`, `key_file`) or one issued at each start, for the configured `names` (DNS names
//! or IP addresses), by the **cluster CA**: made once in `<control data_dir>/tls` (`ca.pem`, and
//! `ca.key` at mode 0600). Hosts pin the CA they are given (`control_plane_ca`): their client
//! of the control plane trusts that CA and nothing else, so a certificate from any public CA does
//! not pass.

use anyhow::{Context, Result, anyhow, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the cluster CA's certificate is kept under `dir` (what hosts pin).
pub(crate) fn ca_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The CA's fixed parameters (fixed so the issuer rebuilt from the saved key matches the saved
/// certificate).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "aloft cluster CA");
    dn.push(DnType::OrganizationName, "aloft");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    params.serial_number = Some(SerialNumber::from(1u64));
    Ok(params)
}

/// The cluster CA kept in `dir` (made the first time), and a certificate it issues for `names`.
pub(crate) fn issued_config(dir: &Path, names: &[String]) -> Result<Arc<rustls::ServerConfig>> {
    if names.is_empty() {
        bail!(
            "[tls] needs `names`: the DNS names and addresses hosts reach the control plane at, \
             e.g. names = [\"cp.example\", \"10.0.0.1\"] (or cert_file and key_file)"
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key_path = dir.join("ca.key");
    let key = match std::fs::read_to_string(&key_path) {
        Ok(pem) => KeyPair::from_pem(&pem)
            .map_err(|e| anyhow!("{} is not a private key: {e}", key_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().map_err(|e| anyhow!("making the CA key: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&key_path)
                .with_context(|| format!("cannot create {}", key_path.display()))?;
            std::io::Write::write_all(&mut f, key.serialize_pem().as_bytes())?;
            f.sync_all()?;
            key
        }
        Err(e) => return Err(anyhow!("cannot read {}: {e}", key_path.display())),
    };
    let ca = ca_params()
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| anyhow!("making the cluster CA's certificate: {e}"))?;
    let ca_file = ca_path(dir);
    if !ca_file.exists() {
        crate::files::write_atomic(&ca_file, ca.pem().trim_end(), 0o644)?;
    }
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| anyhow!("[tls] names {names:?}: {e}"))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(|e| anyhow!("making a TLS key: {e}"))?;
    let leaf = params
        .signed_by(&leaf_key, &ca, &key)
        .map_err(|e| anyhow!("issuing the control plane's certificate: {e}"))?;
    let chain = vec![leaf.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    server_config(chain, key)
}

/// The operator's own certificate chain (PEM, leaf first) and private key.
pub(crate) fn files_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| anyhow!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("{} is not a PEM private key: {e}", key.display()))?;
    server_config(chain, key)
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
    .map_err(|e| anyhow!("the control plane's TLS certificate cannot be used: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client of the control plane at `url`: over `https://` it trusts only the CA in `ca` (the
/// cluster CA, pinned); over `http://` it needs none.
pub(crate) fn client(url: &str, ca: Option<&Path>) -> Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(5))
        .use_rustls_tls()
        .tls_built_in_root_certs(false);
    let builder = match ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read control_plane_ca {}", path.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                anyhow!(
                    "control_plane_ca {} is not a PEM certificate: {e}",
                    path.display()
                )
            })?;
            builder.add_root_certificate(cert)
        }
        None if url.starts_with("https://") => bail!(
            "control_plane is https:// but control_plane_ca is not set: copy the control \
             plane's <data_dir>/tls/ca.pem to this host and name it as control_plane_ca"
        ),
        None => builder,
    };
    builder
        .build()
        .context("cannot set up the control plane's HTTP client")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(config: Arc<rustls::ServerConfig>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(aloft_http::serve::serve_tls(
            listener,
            router,
            aloft_http::serve::Limits::default(),
            config,
            std::future::pending(),
        ));
        format!("https://127.0.0.1:{port}/")
    }

    /// A host pinning the cluster CA reaches the control plane; a client pinning another CA,
    /// or speaking plain HTTP to the TLS port, gets nothing. The CA is kept across starts.
    #[tokio::test]
    async fn hosts_reach_the_control_plane_only_through_the_pinned_ca() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["127.0.0.1".to_string(), "cp.example".to_string()];
        let url = serve(issued_config(dir.path(), &names).unwrap()).await;
        let ca = ca_path(dir.path());
        let body = client(&url, Some(&ca))
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok");

        let other = tempfile::tempdir().unwrap();
        issued_config(other.path(), &names).unwrap();
        let err = client(&url, Some(&ca_path(other.path())))
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "another CA is not trusted: {err:?}");
        let plain = url.replace("https://", "http://");
        let answered = reqwest::get(&plain)
            .await
            .is_ok_and(|r| r.status().is_success());
        assert!(!answered, "plain HTTP gets nothing from the TLS port");
        assert!(
            client(&url, None).is_err(),
            "https:// without a pinned CA is refused"
        );

        let before = std::fs::read(&ca).unwrap();
        let again = serve(issued_config(dir.path(), &names).unwrap()).await;
        assert_eq!(std::fs::read(&ca).unwrap(), before, "the CA is kept");
        let resp = client(&again, Some(&ca))
            .unwrap()
            .get(&again)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    /// A certificate for other names does not pass, even from the pinned CA.
    #[tokio::test]
    async fn a_certificate_for_other_names_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(issued_config(dir.path(), &["cp.example".to_string()]).unwrap()).await;
        let err = client(&url, Some(&ca_path(dir.path())))
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert!(issued_config(dir.path(), &[]).is_err());
    }
}
