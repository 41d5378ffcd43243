//! Cache mode against a second in-process registry as upstream: pull-through (once, even for
//! concurrent clients), tag revalidation, write-through pushes, tenancy, and an upstream that
//! goes away.

mod common;

use aloft_registry::Upstream;
use common::client::header;
use common::*;
use reqwest::{Method, StatusCode};
use std::time::Duration;

fn upstream_config(url: &str) -> Upstream {
    let mut upstream = Upstream::new(url);
    upstream.backoff = Duration::from_millis(50);
    upstream
}

async fn cache_of(url: &str) -> TestRegistry {
    let upstream = upstream_config(url);
    TestRegistry::start_with(move |c| c.upstream = Some(upstream)).await
}

#[tokio::test]
async fn pulls_come_through_once_then_from_the_local_store() {
    let upstream = TestRegistry::start().await;
    let cache = cache_of(&upstream.url).await;
    let image = TestImage::oci(30, &[50_000, 80_000]);
    let digest = upstream
        .client(ACME_TOKEN)
        .push_image("acme/app", "v1", &image)
        .await;

    let client = cache.client(ACME_TOKEN);
    let pulled = client.pull_image("acme/app", "v1").await;
    assert_eq!(pulled.manifest, image.manifest);
    assert_eq!(pulled.layers, image.layers);
    for blob in image.blobs() {
        assert_eq!(upstream.log.count("GET", &digest_of(blob)), 1);
        assert!(cache.blob_file(&digest_of(blob)).exists(), "stored locally");
    }
    assert_eq!(upstream.log.count("GET", &format!("manifests/{digest}")), 1);

    // Again: blobs and the manifest come from the local store; only the tag is revalidated.
    let heads_before = upstream.log.count("HEAD", "manifests/v1");
    client.pull_image("acme/app", "v1").await;
    client
        .get_manifest("acme/app", &digest)
        .await
        .expect("by digest");
    for blob in image.blobs() {
        assert_eq!(
            upstream.log.count("GET", &digest_of(blob)),
            1,
            "no second fetch"
        );
    }
    assert_eq!(upstream.log.count("GET", "/manifests/"), 1);
    assert_eq!(upstream.log.count("HEAD", "manifests/v1"), heads_before + 1);

    // HEAD of a blob the cache lacks asks the upstream without downloading it.
    let other = random_bytes(31, 1000);
    let other_digest = upstream
        .client(ACME_TOKEN)
        .push_blob("acme/app", &other)
        .await;
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::HEAD, &format!("/v2/acme/app/blobs/{other_digest}"))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), "1000");
    assert_eq!(upstream.log.count("GET", &other_digest), 0);
    assert!(!cache.blob_file(&other_digest).exists());

    // Tags list comes from the upstream.
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::GET, "/v2/acme/app/tags/list")
        .send()
        .await
        .expect("tags");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["tags"], serde_json::json!(["v1"]));
}

#[tokio::test]
async fn ten_concurrent_pulls_of_a_blob_make_one_upstream_fetch() {
    let upstream = TestRegistry::start().await;
    let cache = cache_of(&upstream.url).await;
    let layer = random_bytes(32, 2 * 1024 * 1024);
    let digest = upstream
        .client(ACME_TOKEN)
        .push_blob("acme/big", &layer)
        .await;
    // Slow the upstream down so that all ten requests are in flight together.
    upstream.log.set_blob_delay(Duration::from_millis(300));

    let mut pulls = Vec::new();
    for _ in 0..10 {
        let (url, digest) = (cache.url.clone(), digest.clone());
        pulls.push(tokio::spawn(async move {
            let client = common::client::Client::new(&url, ACME_TOKEN);
            client.get_blob("acme/big", &digest).await.expect("blob")
        }));
    }
    for pull in pulls {
        assert_eq!(pull.await.expect("pull").len(), layer.len());
    }
    assert_eq!(
        upstream.log.count("GET", &digest),
        1,
        "exactly one upstream fetch"
    );
}

#[tokio::test]
async fn tags_are_revalidated_against_the_upstream() {
    let upstream = TestRegistry::start().await;
    let cache = cache_of(&upstream.url).await;
    let first = TestImage::oci(33, &[100]);
    let second = TestImage::oci(34, &[100]);
    let publisher = upstream.client(ACME_TOKEN);
    publisher.push_image("acme/app", "latest", &first).await;
    let client = cache.client(ACME_TOKEN);
    assert_eq!(
        client
            .get_manifest("acme/app", "latest")
            .await
            .expect("first")
            .2,
        first.digest()
    );
    publisher.push_image("acme/app", "latest", &second).await;
    assert_eq!(
        client
            .get_manifest("acme/app", "latest")
            .await
            .expect("second")
            .2,
        second.digest()
    );
    // A tag the upstream does not have.
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::GET, "/v2/acme/app/manifests/nope")
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn pushes_write_through_to_the_upstream_and_stay_local() {
    let upstream = TestRegistry::start().await;
    let cache = cache_of(&upstream.url).await;
    let client = cache.client(ACME_TOKEN);
    let image = TestImage::docker(35, &[40_000, 70_000]);
    // One blob chunked, one monolithic, then the rest through the usual flow.
    client
        .push_blob_chunked("acme/app", &image.layers[1], 25_000)
        .await;
    let response = cache
        .raw(ACME_TOKEN)
        .req(
            Method::POST,
            &format!(
                "/v2/acme/app/blobs/uploads/?digest={}",
                digest_of(&image.layers[0])
            ),
        )
        .body(image.layers[0].clone())
        .send()
        .await
        .expect("monolithic");
    assert_eq!(response.status(), StatusCode::CREATED);
    let digest = client.push_image("acme/app", "v1", &image).await;

    // The upstream has everything.
    let direct = upstream
        .client(ACME_TOKEN)
        .pull_image("acme/app", "v1")
        .await;
    assert_eq!(direct.manifest, image.manifest);
    assert_eq!(direct.layers, image.layers);
    assert_eq!(direct.config, image.config);
    for blob in image.blobs() {
        assert!(
            cache.blob_file(&digest_of(blob)).exists(),
            "kept locally too"
        );
    }

    // With the upstream gone, the cache still serves the image (tag from its local copy).
    upstream.stop();
    let local = client.pull_image("acme/app", "v1").await;
    assert_eq!(local.layers, image.layers);
    assert_eq!(
        client
            .get_manifest("acme/app", &digest)
            .await
            .expect("by digest")
            .2,
        digest
    );
}

#[tokio::test]
async fn a_push_the_upstream_refuses_fails() {
    let upstream = TestRegistry::start_with(|c| c.max_manifest_bytes = 400).await;
    let cache = cache_of(&upstream.url).await;
    let client = cache.client(ACME_TOKEN);
    let image = TestImage::oci(36, &[100, 100, 100]);
    assert!(image.manifest.len() > 400);
    for blob in image.blobs() {
        client.push_blob("acme/app", blob).await;
    }
    let response = client
        .push_manifest("acme/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "MANIFEST_INVALID"));
    assert!(
        message.contains(&upstream.url) && message.contains("at most 400 bytes"),
        "{message}"
    );
    // Nothing was stored locally either.
    let response = cache
        .raw(ACME_TOKEN)
        .req(
            Method::GET,
            &format!("/v2/acme/app/manifests/{}", image.digest()),
        )
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn tenancy_holds_through_the_cache() {
    let upstream = TestRegistry::start().await;
    let cache = cache_of(&upstream.url).await;
    let image = TestImage::oci(37, &[3000]);
    upstream
        .client(ACME_TOKEN)
        .push_image("acme/app", "v1", &image)
        .await;
    cache.client(ACME_TOKEN).pull_image("acme/app", "v1").await;
    let layer = digest_of(&image.layers[0]);

    let other = cache.raw(OTHER_TOKEN);
    let requests_before = upstream.log.count("GET", "/v2/") + upstream.log.count("HEAD", "/v2/");
    let response = other
        .req(Method::GET, "/v2/acme/app/manifests/v1")
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "DENIED");
    let response = other
        .req(Method::GET, &format!("/v2/acme/app/blobs/{layer}"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "DENIED");
    assert_eq!(
        upstream.log.count("GET", "/v2/") + upstream.log.count("HEAD", "/v2/"),
        requests_before,
        "refused locally, the upstream was not asked"
    );
    // The blob is in the cache's store, but another org's repository cannot read it: the
    // upstream (asked with the caller's own token) says it has no such blob there.
    let response = other
        .req(Method::GET, &format!("/v2/other/app/blobs/{layer}"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "BLOB_UNKNOWN");
    // Once the other org has the blob upstream too, the cache links its local copy without
    // downloading it again.
    let other_upstream = upstream.client(OTHER_TOKEN);
    other_upstream
        .push_blob("other/app", &image.layers[0])
        .await;
    let got = cache
        .client(OTHER_TOKEN)
        .get_blob("other/app", &layer)
        .await
        .expect("blob");
    assert_eq!(got, image.layers[0]);
    assert_eq!(upstream.log.count("GET", &layer), 1, "still one download");
}

#[tokio::test]
async fn a_configured_upstream_token_replaces_the_callers() {
    let upstream = TestRegistry::start().await;
    upstream
        .client(ACME_TOKEN)
        .push_image("acme/app", "v1", &TestImage::oci(38, &[10]))
        .await;
    let mut config = upstream_config(&upstream.url);
    config.token = Some(OTHER_TOKEN.into());
    let cache = TestRegistry::start_with(move |c| c.upstream = Some(config)).await;
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::GET, "/v2/acme/app/manifests/v1")
        .send()
        .await
        .expect("get");
    let (status, code, message) = error_code(response).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "DENIED"),
        "the upstream saw the other org's token"
    );
    assert!(message.contains(&upstream.url), "{message}");
}

#[tokio::test]
async fn an_upstream_that_goes_away_mid_pull_is_retried_then_named() {
    let upstream = TestRegistry::start().await;
    let proxy = FlakyProxy::start(upstream.addr).await;
    let cache = cache_of(&proxy.url).await;
    let image = TestImage::oci(39, &[200_000, 200_000]);
    upstream
        .client(ACME_TOKEN)
        .push_image("acme/app", "v1", &image)
        .await;
    let client = cache.client(ACME_TOKEN);
    let (first, second) = (digest_of(&image.layers[0]), digest_of(&image.layers[1]));

    client
        .get_manifest("acme/app", "v1")
        .await
        .expect("manifest");
    client
        .get_blob("acme/app", &digest_of(&image.config))
        .await
        .expect("config");
    client
        .get_blob("acme/app", &first)
        .await
        .expect("first layer");

    // The upstream now dies in the middle of every answer.
    proxy.truncate_after(2000);
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::GET, &format!("/v2/acme/app/blobs/{second}"))
        .send()
        .await
        .expect("get");
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert!(
        message.contains(&proxy.url) && message.contains("3 attempts"),
        "{message}"
    );
    assert_eq!(upstream.log.count("GET", &second), 3, "three attempts");
    assert!(!cache.blob_file(&second).exists(), "no partial blob");
    assert_eq!(
        std::fs::read_dir(cache.dir.join("tmp"))
            .expect("tmp")
            .count(),
        0
    );

    // Gone entirely: what the cache has is still served, the rest is a clear error.
    proxy.go_down();
    let (_, _, digest) = client
        .get_manifest("acme/app", "v1")
        .await
        .expect("cached tag");
    assert_eq!(digest, image.digest());
    assert_eq!(
        client.get_blob("acme/app", &first).await.expect("cached"),
        image.layers[0]
    );
    let response = cache
        .raw(ACME_TOKEN)
        .req(Method::GET, &format!("/v2/acme/app/blobs/{second}"))
        .send()
        .await
        .expect("get");
    let (status, _, message) = error_code(response).await;
    assert_eq!(status, 503);
    assert!(
        message.contains("unavailable after 3 attempts") && message.contains("retry later"),
        "{message}"
    );

    // Back: the pull completes.
    proxy.heal();
    assert_eq!(
        client.get_blob("acme/app", &second).await.expect("healed"),
        image.layers[1]
    );
}
