//! Pulls and prunes do not wait for each other: a prune while a pull is stuck on a slow
//! registry ends at once, keeps what the pull uses, and the pull then finishes whole.

mod common;

use aloft_image::{Credentials, PullProgress};
use common::server::{Auth, TestRegistry};
use common::*;
use std::time::Duration;

fn no_progress(_: PullProgress) {}

#[tokio::test]
async fn a_slow_pull_does_not_stall_a_prune_and_keeps_what_it_uses() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let v1 = three_layers("v1").write(&layout, "v1").unwrap();
    let v2 = three_layers("v2").write(&layout, "v2").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let data = t.path().join("data");
    let store = store(&data);
    let i1 = store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();

    // v2 shares its two lower layers with v1; its own top layer is stuck in the registry.
    let top = &v2.layers[2];
    reg.hold_blob(top);
    let slow = tokio::spawn({
        let (store, r) = (store.clone(), reference(&reg.host(), "v2"));
        async move { store.pull(&r, &Credentials::None, no_progress).await }
    });
    for _ in 0..200 {
        if reg.blob_gets(top) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reg.blob_gets(top),
        1,
        "the pull never asked for its top layer"
    );

    let report = tokio::time::timeout(Duration::from_secs(30), store.prune(&[]))
        .await
        .expect("the prune waited for the slow pull")
        .unwrap();
    assert_eq!(report.images_removed, vec![v1.manifest_digest.clone()]);
    assert_eq!(report.layers_removed, 1, "only v1's own top layer");
    assert!(!i1.rootfs.exists());
    for shared in &v2.layers[..2] {
        assert!(data.join("layers/sha256").join(&shared[7..]).exists());
    }
    assert!(!slow.is_finished());

    reg.release_blobs();
    let i2 = slow.await.unwrap().unwrap();
    assert_eq!(
        std::fs::read_to_string(i2.rootfs.join("app/version")).unwrap(),
        "v2"
    );
    assert!(i2.rootfs.join("usr/data").is_file());
    assert!(i2.rootfs.join("bin/tool").is_file());
}
