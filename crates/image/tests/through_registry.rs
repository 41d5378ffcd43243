//! Pulling through aloft's own registry (crates/registry): the Docker bearer-token flow with
//! an org token, tenancy, and the `name:tag` shorthand for the org's repository.

mod common;

use aloft_image::{Credentials, ImageError, Reference};
use aloft_registry::{Registry, RegistryConfig, StaticTokens};
use common::*;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pushes every blob of the layout, then the manifest tagged `tag`, with Basic auth (the
/// registry takes an org token as the password on every request).
async fn push(base: &str, repo: &str, token: &str, layout: &Path, tag: &str, manifest: &str) {
    let http = reqwest::Client::new();
    let manifest_bytes = std::fs::read(layout.join("blobs/sha256").join(&manifest[7..])).unwrap();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if digest == manifest {
            continue;
        }
        let data = std::fs::read(entry.path()).unwrap();
        let started = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .basic_auth("x", Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "start upload");
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let done = http
            .put(format!("{location}{sep}digest={digest}"))
            .basic_auth("x", Some(token))
            .header("content-type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 201, "finish upload");
    }
    let put = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .basic_auth("x", Some(token))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest_bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        201,
        "{}",
        put.text().await.unwrap_or_default()
    );
}

#[tokio::test]
async fn pulls_through_the_aloft_registry() {
    let t = tempfile::tempdir().unwrap();
    let tokens = Arc::new(StaticTokens::new([
        ("acme-token", "acme"),
        ("other-token", "other"),
    ]));
    let registry = Registry::open(RegistryConfig::new(t.path().join("registry")), tokens)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, registry.router()).await;
    });
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    push(
        &format!("http://{host}"),
        "acme/app",
        "acme-token",
        &layout,
        "v1",
        &built.manifest_digest,
    )
    .await;

    let store = store(&t.path().join("data"));
    // `app:v1` is the org's own repository on the default registry
    let reference = Reference::parse("app:v1", &host, "acme").unwrap();
    assert_eq!(reference.to_string(), format!("{host}/acme/app:v1"));
    let acme = Credentials::Basic {
        username: "x".into(),
        password: "acme-token".into(),
    };
    let image = store.pull(&reference, &acme, |_| {}).await.unwrap();
    assert_eq!(image.manifest_digest, built.manifest_digest);
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("app/version")).unwrap(),
        "v1"
    );

    // another org's token, or none, is refused with a clear error
    let other = Credentials::Basic {
        username: "x".into(),
        password: "other-token".into(),
    };
    let fresh = common::store(&t.path().join("data2"));
    let e = fresh.pull(&reference, &other, |_| {}).await.unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    println!("another org: {e}");
    let e = fresh
        .pull(&reference, &Credentials::None, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    println!("no credentials: {e}");
    server.abort();
}

/// Another org's image by digest (issue 15, item 6): an image already on the host is reused
/// for a caller only once the registry lets that caller read it. The org that pulled it reuses
/// it with no request at all; another org, whose token the registry refuses for that
/// repository, gets the registry's refusal and no image.
#[tokio::test]
async fn another_org_cannot_reuse_an_image_by_digest() {
    let t = tempfile::tempdir().unwrap();
    let tokens = Arc::new(StaticTokens::new([
        ("acme-token", "acme"),
        ("other-token", "other"),
    ]));
    let registry = Registry::open(RegistryConfig::new(t.path().join("registry")), tokens)
        .await
        .unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let router = registry.router().layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            count.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    let base = format!("http://{host}");
    push(
        &base,
        "acme/app",
        "acme-token",
        &layout,
        "v1",
        &built.manifest_digest,
    )
    .await;

    let store = store(&t.path().join("data"));
    let basic = |token: &str| Credentials::Basic {
        username: "x".into(),
        password: token.into(),
    };
    let by_tag = Reference::parse("app:v1", &host, "acme").unwrap();
    store
        .pull(&by_tag, &basic("acme-token"), |_| {})
        .await
        .unwrap();

    let by_digest = Reference::parse(
        &format!("{host}/acme/app@{}", built.manifest_digest),
        &host,
        "other",
    )
    .unwrap();
    for (who, creds) in [
        ("another org", basic("other-token")),
        ("nobody", Credentials::None),
    ] {
        let e = store.pull(&by_digest, &creds, |_| {}).await.unwrap_err();
        println!("{who}: {e}");
        assert!(matches!(e, ImageError::Unauthorized { .. }), "{who}: {e}");
    }

    // the org that pulled it: reused with no request
    let before = requests.load(Ordering::SeqCst);
    let image = store
        .pull(&by_digest, &basic("acme-token"), |_| {})
        .await
        .unwrap();
    assert_eq!(image.manifest_digest, built.manifest_digest);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        before,
        "no registry request"
    );
    server.abort();
}
