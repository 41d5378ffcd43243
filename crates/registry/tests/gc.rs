//! Garbage collection: referenced blobs (including children of indexes, and blobs another org
//! references) stay, old unreferenced blobs go, young ones stay; and GC never breaks a manifest
//! that was accepted, even while pushes run concurrently.

mod common;

use aloft_registry::GcReport;
use common::client::header;
use common::*;
use reqwest::{Method, StatusCode};
use std::time::Duration;

const OLD: Duration = Duration::from_secs(2 * 3600);

#[tokio::test]
async fn gc_keeps_what_manifests_reference_and_removes_old_garbage() {
    let reg = TestRegistry::start().await;
    let acme = reg.client(ACME_TOKEN);
    let raw = reg.raw(ACME_TOKEN);

    // Referenced: a tagged image, and an index (tagged) over two untagged children.
    let image = TestImage::oci(20, &[1000, 2000]);
    acme.push_image("acme/app", "v1", &image).await;
    let child_a = TestImage::oci(21, &[300]);
    let child_b = TestImage::oci(22, &[400]);
    for child in [&child_a, &child_b] {
        acme.push_image("acme/app", &child.digest(), child).await;
    }
    let index = index_of(&[&child_a, &child_b], OCI_INDEX);
    let response = acme
        .push_manifest("acme/app", "multi", OCI_INDEX, &index)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // Garbage: a blob no manifest references, and an image whose manifest was deleted.
    let stray = random_bytes(23, 5000);
    let stray_digest = acme.push_blob("acme/app", &stray).await;
    let deleted = TestImage::oci(24, &[700]);
    let deleted_digest = acme.push_image("acme/gone", "v1", &deleted).await;
    let response = raw
        .req(
            Method::DELETE,
            &format!("/v2/acme/gone/manifests/{deleted_digest}"),
        )
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Unreferenced in acme, but referenced by another org's image: kept (storage is shared).
    let shared = TestImage::oci(25, &[600]);
    for blob in shared.blobs() {
        acme.push_blob("acme/app", blob).await;
    }
    reg.client(OTHER_TOKEN)
        .push_image("other/img", "v1", &shared)
        .await;
    // Young garbage: kept by the grace period.
    let young = random_bytes(26, 900);
    let young_digest = acme.push_blob("acme/app", &young).await;

    // Age everything except the young blob.
    for entry in walk(&reg.dir.join("blobs")) {
        if !entry.ends_with(young_digest.trim_start_matches("sha256:")) {
            age_file(&entry, OLD);
        }
    }

    let garbage_bytes =
        (stray.len() + deleted.config.len() + deleted.layers[0].len() + deleted.manifest.len())
            as u64;
    let expected = |dry_run| GcReport {
        dry_run,
        manifests: 5,
        blobs_referenced: 4 + 3 + 3 + 1 + 3,
        blobs_young: 1,
        blobs_deleted: 4,
        bytes_deleted: garbage_bytes,
        links_removed: 3,
    };
    let dry = reg.registry.gc(true).await.expect("dry run");
    assert_eq!(dry, expected(true));
    assert!(
        reg.blob_file(&stray_digest).exists(),
        "a dry run deletes nothing"
    );

    let report = reg.registry.gc(false).await.expect("gc");
    assert_eq!(report, expected(false));
    assert!(!reg.blob_file(&stray_digest).exists());
    assert!(!reg.blob_file(&deleted_digest).exists());
    assert!(reg.blob_file(&young_digest).exists());
    assert!(
        !acme.blob_exists("acme/app", &stray_digest).await,
        "its link went with it"
    );
    assert!(acme.blob_exists("acme/app", &young_digest).await);
    assert!(
        acme.blob_exists("acme/app", &digest_of(&shared.layers[0]))
            .await
    );

    // Everything referenced still pulls, index children included.
    let pulled = acme.pull_image("acme/app", "v1").await;
    assert_eq!(pulled.layers, image.layers);
    let (_, got_index, _) = acme.get_manifest("acme/app", "multi").await.expect("index");
    assert_eq!(got_index, index);
    for child in [&child_a, &child_b] {
        let pulled = acme.pull_image("acme/app", &child.digest()).await;
        assert_eq!(pulled.layers, child.layers);
    }
    reg.client(OTHER_TOKEN).pull_image("other/img", "v1").await;

    // Nothing left to collect.
    let again = reg.registry.gc(false).await.expect("gc");
    assert_eq!((again.blobs_deleted, again.links_removed), (0, 0));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn gc_never_breaks_an_accepted_manifest_during_concurrent_pushes() {
    // No grace at all: only the GC lock protects pushes here.
    let reg = TestRegistry::start_with(|c| c.gc_grace = Duration::ZERO).await;
    let registry = reg.registry.clone();
    // A fixed number of bursts of back-to-back collections, with pauses in which pushes can
    // complete; pushes retry until the collector is done, so that every one gets through
    // however slow this machine is (what is checked is that GC never breaks an accepted
    // manifest, not how many pushes it refuses).
    let collector = tokio::spawn(async move {
        let mut deleted = 0;
        for _ in 0..30 {
            for _ in 0..10 {
                deleted += registry.gc(false).await.expect("gc").blobs_deleted;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        deleted
    });
    let mut pushes = Vec::new();
    for i in 0..6u64 {
        let url = reg.url.clone();
        pushes.push(tokio::spawn(async move {
            let client = common::client::Client::new(&url, ACME_TOKEN);
            let image = TestImage::oci(100 + i, &[20_000, 5_000]);
            let (mut accepted, mut refused) = (Vec::new(), 0);
            for round in 0..3 {
                let tag = format!("i{i}-r{round}");
                for _attempt in 0..10_000 {
                    for blob in image.blobs() {
                        client.push_blob("acme/race", blob).await;
                    }
                    let response = client
                        .push_manifest("acme/race", &tag, OCI_MANIFEST, &image.manifest)
                        .await;
                    if response.status() == StatusCode::CREATED {
                        accepted.push((tag.clone(), image.clone()));
                        break;
                    }
                    // GC removed an uploaded blob before the manifest came: a clean refusal.
                    assert_eq!(error_code(response).await.1, "MANIFEST_BLOB_UNKNOWN");
                    refused += 1;
                }
            }
            (accepted, refused)
        }));
    }
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for push in pushes {
        let (a, r) = push.await.expect("push task");
        accepted.extend(a);
        refused += r;
    }
    let deleted = collector.await.expect("collector");
    println!(
        "accepted {} manifests, {refused} refused; GC deleted {deleted} blobs meanwhile",
        accepted.len()
    );
    reg.registry.gc(false).await.expect("final gc");
    assert_eq!(accepted.len(), 18, "every push got through eventually");
    let client = reg.client(ACME_TOKEN);
    for (tag, image) in accepted {
        let response = client
            .request(Method::GET, &format!("/v2/acme/race/manifests/{tag}"))
            .await;
        assert_eq!(header(&response, "docker-content-digest"), image.digest());
        let pulled = client.pull_image("acme/race", &tag).await;
        assert_eq!(pulled.layers, image.layers, "{tag}");
    }
}
