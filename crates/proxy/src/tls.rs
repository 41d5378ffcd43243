//! HTTPS: TLS termination with ALPN (`h2`, `http/1.1`). Certificates come from a development
//! CA of the proxy's own: the first handshake for `<app>.localhost` (or `<app>.<app domain>`)
//! of an app that has machines in the catalog, or for a hostname the control plane lists
//! ([`Domains`]), gets a certificate for that name, signed by the CA, and later ones reuse it.
//! A made-up name gets none (the handshake fails) and costs no key or signature. The CA is made
//! once and kept in the state dir (`ca.pem`, `ca.key`), so a client can trust it:
//!
//! State: the certificates issued, in a cache of at most [`ISSUED_CAP`] names (least recently
//! used first out) behind a `parking_lot` mutex that is never held while a key is made, so
//! handshakes never wait for each other's key generation; and a count of those minted.
//!
//! ```text
//! curl --cacert <data-dir>/proxy/ca.pem https://hello.localhost:8443/
//! ```
//!
//! A client hello for any other name (or none) gets no certificate: the handshake fails.

use lru::LruCache;
use parking_lot::Mutex;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, GeneralSubtree, IsCa, KeyPair,
    KeyUsagePurpose, NameConstraints, SerialNumber,
};
use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::num::NonZeroUsize;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an app (the `<app>` of `<app>.localhost`) is served: has machines in the catalog.
pub type Served = Arc<dyn Fn(&str) -> bool + Send + Sync>;

const CA_NAME: &str = "aloft development CA";

/// The most certificates the development CA keeps issued; beyond this, the least recently used
/// is dropped (and issued again if asked for again).
pub const ISSUED_CAP: usize = 1024;

/// The development CA: its certificate as clients trust it, and what signs with it.
pub struct DevCa {
    /// `ca.pem`: what clients trust.
    pub cert_path: PathBuf,
    issuer: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "aloft");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    // Fixed, so the issuer rebuilt from the saved key matches the saved certificate.
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    params.serial_number = Some(SerialNumber::from(1u64));
    // It can never sign for a real site, even if its key leaks or a client trusts it.
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: aloft_http::tls::DEV_CA_DOMAINS
            .iter()
            .map(|d| GeneralSubtree::DnsName((*d).to_string()))
            .collect(),
        excluded_subtrees: Vec::new(),
    });
    Ok(params)
}

fn tls_err(what: &str) -> impl FnOnce(rcgen::Error) -> io::Error + '_ {
    move |e| io::Error::other(format!("{what}: {e}"))
}

fn ignore_not_found(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Whether a CA certificate (PEM) has the X.509 name constraints extension (OID 2.5.29.30,
/// DER `06 03 55 1d 1e`). A certificate that does not parse counts as without.
fn has_name_constraints(pem: &[u8]) -> bool {
    use rustls::pki_types::pem::PemObject;
    const OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x1e];
    CertificateDer::from_pem_slice(pem).is_ok_and(|der| der.windows(OID.len()).any(|w| w == OID))
}

impl DevCa {
    /// The CA kept in `dir`, made there the first time. A CA made before CAs had name
    /// constraints (its `ca.pem` without them) is replaced, with a warning: clients must trust
    /// the new `ca.pem` (and should drop the old one, which could sign for any site).
    pub fn load_or_create(dir: &Path) -> io::Result<DevCa> {
        fs::create_dir_all(dir)?;
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if fs::read(&cert_path).is_ok_and(|pem| !has_name_constraints(&pem)) {
            tracing::warn!(
                ca = %cert_path.display(),
                "the development CA had no name constraints (it could sign for any site): made \
                 a new one that signs only .localhost, .test, .example, .invalid, .internal and \
                 .home.arpa names; trust the new ca.pem and remove the old one from trust stores"
            );
            fs::remove_file(&key_path).or_else(ignore_not_found)?;
            fs::remove_file(&cert_path)?;
        }
        let key = match fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(tls_err("reading the CA key"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(tls_err("making the CA key"))?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&key_path)?;
                io::Write::write_all(&mut f, key.serialize_pem().as_bytes())?;
                fs::remove_file(&cert_path).or_else(ignore_not_found)?;
                key
            }
            Err(e) => return Err(e),
        };
        let issuer = ca_params()
            .and_then(|p| p.self_signed(&key))
            .map_err(tls_err("making the CA certificate"))?;
        if !cert_path.exists() {
            fs::write(&cert_path, issuer.pem())?;
        }
        Ok(DevCa {
            cert_path,
            issuer,
            key,
        })
    }

    /// A certificate for `name`, signed by the CA.
    fn issue(&self, name: &str) -> Result<CertifiedKey, String> {
        let mut params =
            CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signer = any_supported_type(&der).map_err(|e| e.to_string())?;
        Ok(CertifiedKey::new(
            vec![
                cert.der().clone(),
                CertificateDer::from(self.issuer.der().to_vec()),
            ],
            signer,
        ))
    }
}

/// Picks a certificate by SNI: a user's for their hostnames ([`Domains`]), else one issued by
/// the [`DevCa`] for the names apps are served as.
pub struct Certificates {
    ca: DevCa,
    app_domain: Option<String>,
    domains: Arc<Domains>,
    issued: Mutex<LruCache<String, Arc<CertifiedKey>>>,
    /// Certificates minted (a key made and signed) since start.
    minted: AtomicU64,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("ca", &self.ca.cert_path)
            .field("issued", &self.issued.lock().len())
            .finish()
    }
}

impl Certificates {
    pub fn new(ca: DevCa, app_domain: Option<String>, domains: Arc<Domains>) -> Self {
        Self {
            ca,
            app_domain,
            domains,
            issued: Mutex::new(LruCache::new(
                NonZeroUsize::new(ISSUED_CAP).expect("not zero"),
            )),
            minted: AtomicU64::new(0),
        }
    }

    /// How many issued certificates are kept.
    pub fn issued_count(&self) -> usize {
        self.issued.lock().len()
    }

    /// How many certificates the CA has minted (a key made and signed) since start.
    pub fn minted_count(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// The certificate for `name`, if an app is served as it: a hostname the control plane
    /// lists, or `<app>.localhost` (`<app>.<app domain>`) of an app that is `served`.
    fn for_name(&self, name: &str, served: &Served) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self.domains.get(&name) {
            Some(Domain {
                certified: Some(c), ..
            }) => return Some(c),
            Some(_) => {}
            None => {
                let app = crate::names::app_of_name(&name, self.app_domain.as_deref())?;
                if !served(app) {
                    return None;
                }
            }
        }
        if let Some(c) = self.issued.lock().get(&name) {
            return Some(c.clone());
        }
        // Made without the lock: two handshakes for one new name may both make one, and the
        // later replaces the earlier.
        match self.ca.issue(&name) {
            Ok(c) => {
                self.minted.fetch_add(1, Ordering::Relaxed);
                let c = Arc::new(c);
                self.issued.lock().put(name, c.clone());
                Some(c)
            }
            Err(e) => {
                tracing::warn!(name, "issuing a certificate: {e}");
                None
            }
        }
    }
}

/// [`Certificates`] for one listener: by SNI, and for clients that send none, the listener's
/// own name (a TCP port's app) if it has one; apps' names only while they are `served`.
struct Resolver {
    certificates: Arc<Certificates>,
    served: Served,
    default_name: Option<String>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("certificates", &self.certificates)
            .field("default_name", &self.default_name)
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name().or(self.default_name.as_deref())?;
        self.certificates.for_name(name, &self.served)
    }
}

/// The TLS side of a listener: `certificates` by SNI (apps' names only while `served`), else
/// as `default_name`; ALPN `h2` then `http/1.1` when it serves HTTP, none otherwise.
pub fn server_config(
    certificates: Arc<Certificates>,
    served: Served,
    default_name: Option<String>,
    http: bool,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::other(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            certificates,
            served,
            default_name,
        }));
    if http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// A user's certificate and key, checked as the control plane checked them before storing them.
pub use aloft_http::tls::certified_key_from_pem;

/// A hostname an app is served at besides `<app>.localhost`, and its certificate (the user's,
/// or `None` for one from the development CA).
#[derive(Clone)]
pub struct Domain {
    pub app: String,
    pub certified: Option<Arc<CertifiedKey>>,
}

/// The hostnames apps are served at, as the control plane lists them; replaced whole when they
/// change.
#[derive(Default)]
pub struct Domains {
    map: parking_lot::RwLock<HashMap<String, Domain>>,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.map.read().len();
        write!(f, "Domains({n})")
    }
}

/// One row of [`Domains::replace`]: a hostname, its app, and the user's certificate chain and
/// private key (PEM), if they gave one.
pub struct DomainEntry {
    pub hostname: String,
    pub app: String,
    pub pem: Option<(String, String)>,
}

impl From<aloft_types::api::ProxyCertificate> for DomainEntry {
    fn from(c: aloft_types::api::ProxyCertificate) -> Self {
        Self {
            pem: c.certificate.zip(c.private_key),
            hostname: c.hostname,
            app: c.app,
        }
    }
}

impl Domains {
    /// Replaces the table; an entry whose certificate does not load is left out (and logged).
    pub fn replace(&self, entries: Vec<DomainEntry>) {
        let mut map = HashMap::new();
        for DomainEntry { hostname, app, pem } in entries {
            let certified = match pem {
                None => None,
                Some((chain, key)) => match certified_key_from_pem(&chain, &key) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!(hostname, "left out: {e}");
                        continue;
                    }
                },
            };
            map.insert(hostname.to_ascii_lowercase(), Domain { app, certified });
        }
        *self.map.write() = map;
    }

    pub fn get(&self, hostname: &str) -> Option<Domain> {
        self.map.read().get(hostname).cloned()
    }
}
