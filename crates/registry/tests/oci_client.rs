//! A second real client: the `oci-client` crate (the ORAS project's Rust client) pushes an image
//! through the Docker token flow and pulls it back with identical digests; another org's token is
//! refused.

mod common;

use common::*;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

#[tokio::test]
async fn oci_client_pushes_and_pulls_with_identical_digests() {
    let reg = TestRegistry::start().await;
    let reference: Reference = format!("{}/acme/oci-client-app:v1", reg.addr)
        .parse()
        .expect("reference");
    let auth = RegistryAuth::Basic("x".into(), ACME_TOKEN.into());
    let layers = vec![
        ImageLayer::new(random_bytes(1, 40_000), LAYER.into(), None),
        ImageLayer::new(random_bytes(2, 70_000), LAYER.into(), None),
    ];
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    let pushed = client()
        .push(&reference, &layers, config.clone(), &auth, None)
        .await
        .expect("oci-client push");
    assert!(
        pushed
            .manifest_url
            .contains("/v2/acme/oci-client-app/manifests/")
    );

    let pulled = client()
        .pull(&reference, &auth, vec![LAYER])
        .await
        .expect("oci-client pull");
    // oci-client fetches layers concurrently and returns them in completion order: compare as sets.
    let mut sent: Vec<_> = layers
        .iter()
        .map(|l| (l.sha256_digest(), &l.data))
        .collect();
    let mut got: Vec<_> = pulled
        .layers
        .iter()
        .map(|l| (l.sha256_digest(), &l.data))
        .collect();
    sent.sort();
    got.sort();
    assert_eq!(sent, got);
    assert_eq!(pulled.config.data, config.data);
    let digest = client()
        .fetch_manifest_digest(&reference, &auth)
        .await
        .expect("manifest digest");
    assert_eq!(pulled.digest.as_deref(), Some(digest.as_str()));

    // Another org's token cannot read acme's repository.
    let other = RegistryAuth::Basic("x".into(), OTHER_TOKEN.into());
    assert!(
        client()
            .pull(&reference, &other, vec![LAYER])
            .await
            .is_err()
    );
}
