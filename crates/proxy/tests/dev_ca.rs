//! The development CA's name constraints, checked by `openssl verify`: it can sign names under
//! the reserved domains only, never a real site; a CA made before it had them is replaced.

use aloft_proxy::tls::DevCa;
use std::path::Path;
use std::process::Command;

/// Runs `openssl` with `args` in `dir`: its status and output.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A leaf for `name` signed with the CA's own key (as a leaked key would be used), then
/// `openssl verify` of it against the CA: whether it verifies, and what openssl said.
fn sign_and_verify(dir: &Path, name: &str) -> (bool, String) {
    let san = format!("subjectAltName=DNS:{name}");
    let subject = format!("/CN={name}");
    let (ok, out) = openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            &subject,
            "-addext",
            &san,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-copy_extensions",
            "copy",
            "-days",
            "30",
            "-out",
            "leaf.pem",
        ],
    );
    assert!(ok, "{out}");
    openssl(dir, &["verify", "-CAfile", "ca.pem", "leaf.pem"])
}

#[test]
fn the_dev_ca_cannot_sign_for_a_real_site() {
    let dir = tempfile::tempdir().unwrap();
    DevCa::load_or_create(dir.path()).unwrap();
    for name in ["www.google.com", "localhost.com", "test.example.org"] {
        let (ok, out) = sign_and_verify(dir.path(), name);
        assert!(!ok, "{name} verified: {out}");
        assert!(out.contains("subtree violation"), "{name}: {out}");
    }
    for name in [
        "x.localhost",
        "www.web.test",
        "a.b.internal",
        "printer.home.arpa",
    ] {
        let (ok, out) = sign_and_verify(dir.path(), name);
        assert!(ok, "{name}: {out}");
    }
}

/// A CA made before name constraints (the same subject, none) is replaced when loaded: a new
/// key and a `ca.pem` that constrains.
#[test]
fn a_dev_ca_without_name_constraints_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aloft development CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let old = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("ca.pem"), old.pem()).unwrap();
    std::fs::write(dir.path().join("ca.key"), key.serialize_pem()).unwrap();
    let (ok, out) = sign_and_verify(dir.path(), "www.google.com");
    assert!(ok, "the old CA signs anything: {out}");

    DevCa::load_or_create(dir.path()).unwrap();
    let new_key = std::fs::read_to_string(dir.path().join("ca.key")).unwrap();
    assert_ne!(new_key, key.serialize_pem(), "the old key is kept");
    let (ok, out) = sign_and_verify(dir.path(), "www.google.com");
    assert!(!ok && out.contains("subtree violation"), "{out}");
    assert!(sign_and_verify(dir.path(), "x.localhost").0);
    // Loaded again, the new CA is kept.
    DevCa::load_or_create(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca.key")).unwrap(),
        new_key
    );
}
