//! The pipeline end to end against a test registry serving OCI layouts built in the test.

mod common;

use aloft_image::oci_layout::{LayerEntry, LayoutBuilder};
use aloft_image::{Compression, Credentials, ImageError, ImageProcess, PullPhase, PullProgress};
use common::server::{Auth, TestRegistry};
use common::*;
use parking_lot::Mutex;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

fn no_progress(_: PullProgress) {}

fn recorder() -> (
    Arc<Mutex<Vec<PullProgress>>>,
    impl Fn(PullProgress) + Send + Sync,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    (events, move |p| e.lock().push(p))
}

#[tokio::test]
async fn pulls_an_image_into_a_rootfs() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let (events, progress) = recorder();
    let image = store
        .pull(&reference(&reg.host(), "v1"), &Credentials::None, progress)
        .await
        .unwrap();

    assert_eq!(image.manifest_digest, built.manifest_digest);
    assert_eq!(image.layers, built.layers);
    assert_eq!(image.config.entrypoint, ["/bin/tool"]);
    assert_eq!(image.config.cmd, ["--serve"]);
    assert_eq!(image.config.env, ["MODE=test"]);
    assert_eq!(image.config.working_dir, "/app");
    assert_eq!(image.config.exposed_ports, ["8080/tcp"]);
    let r = image.image_ref();
    assert_eq!(
        (r.repository.as_str(), r.tag.as_str(), r.digest.as_str()),
        (REPO, "v1", built.manifest_digest.as_str())
    );
    let root = &image.rootfs;
    assert_eq!(
        tree(root),
        [
            "app",
            "app/version",
            "bin",
            "bin/sh",
            "bin/tool",
            "etc",
            "etc/os-release",
            "usr",
            "usr/data"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("app/version")).unwrap(),
        "v1"
    );
    assert_eq!(
        std::fs::metadata(root.join("bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("tool")
    );

    let events = events.lock().clone();
    let last = events.last().unwrap();
    assert_eq!(last.phase, PullPhase::Done);
    assert_eq!(
        (last.layers_total, last.layers_done, last.layers_cached),
        (3, 3, 0)
    );
    let layer_bytes: u64 = built
        .layers
        .iter()
        .map(|d| {
            std::fs::metadata(layout.join("blobs/sha256").join(&d[7..]))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(
        (last.bytes_total, last.bytes_fetched),
        (layer_bytes, layer_bytes)
    );
    // intermediate states may be coalesced, but they only move forward
    assert!(
        events
            .windows(2)
            .all(|w| w[0].phase as u8 <= w[1].phase as u8
                && w[0].bytes_fetched <= w[1].bytes_fetched
                && w[0].layers_done <= w[1].layers_done)
    );
    assert!(events.iter().any(|p| p.phase == PullPhase::Assembling));

    // a second pull only asks for the manifest
    let blobs_before = reg.all_blob_gets();
    let again = store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    assert_eq!(again, image);
    assert_eq!(reg.all_blob_gets(), blobs_before);

    // by digest, with the registry gone: served from the host
    reg.stop();
    let by_digest = aloft_image::Reference::parse(
        &format!("{}/{REPO}@{}", reg.host(), built.manifest_digest),
        "x:1",
        "personal",
    )
    .unwrap();
    let offline = store
        .pull(&by_digest, &Credentials::None, no_progress)
        .await
        .unwrap();
    assert_eq!(offline.rootfs, image.rootfs);

    let list = store.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].manifest_digest, built.manifest_digest);
    assert_eq!(
        list[0].references,
        [
            format!("{}/{REPO}:v1", reg.host()),
            format!("{}/{REPO}@{}", reg.host(), built.manifest_digest)
        ]
    );
    assert_eq!(list[0].ext4, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_fetch_each_blob_once() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let r = reference(&reg.host(), "v1");
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move { store.pull(&r, &Credentials::None, no_progress).await })
        })
        .collect();
    let mut rootfs = Vec::new();
    for p in pulls {
        rootfs.push(p.await.unwrap().unwrap().rootfs);
    }
    assert!(rootfs.iter().all(|r| *r == rootfs[0]));
    for digest in built.layers.iter().chain([&built.config_digest]) {
        assert_eq!(
            reg.blob_gets(digest),
            1,
            "blob {digest} fetched more than once"
        );
    }
    assert_eq!(reg.all_blob_gets(), 4);
    assert_eq!(names(&t.path().join("data/images")).len(), 1);
}

#[tokio::test]
async fn a_second_image_fetches_only_its_new_layer() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let v1 = three_layers("v1").write(&layout, "v1").unwrap();
    let v2 = three_layers("v2").write(&layout, "v2").unwrap();
    assert_eq!(v1.layers[..2], v2.layers[..2]);
    assert_ne!(v1.layers[2], v2.layers[2]);
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let first = store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    let (events, progress) = recorder();
    let image = store
        .pull(&reference(&reg.host(), "v2"), &Credentials::None, progress)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(image.rootfs.join("app/version")).unwrap(),
        "v2"
    );
    for shared in &v1.layers[..2] {
        assert_eq!(reg.blob_gets(shared), 1);
    }
    assert_eq!(reg.blob_gets(&v2.layers[2]), 1);
    assert_eq!(
        reg.all_blob_gets(),
        4 + 2,
        "v1: 3 layers + config; v2: 1 layer + config"
    );
    let last = events.lock().last().unwrap().clone();
    let new_layer = std::fs::metadata(layout.join("blobs/sha256").join(&v2.layers[2][7..]))
        .unwrap()
        .len();
    assert_eq!((last.layers_cached, last.layers_total), (2, 3));
    assert_eq!(
        (last.bytes_total, last.bytes_fetched),
        (new_layer, new_layer)
    );
    // both root filesystems share the cached layer's files (hard links, no copy)
    let ino = |root: &std::path::Path| std::fs::metadata(root.join("usr/data")).unwrap().ino();
    assert_eq!(ino(&first.rootfs), ino(&image.rootfs));
}

#[tokio::test]
async fn gzip_zstd_and_plain_layers() {
    for (tag, compression) in [
        ("plain", Compression::None),
        ("zstd", Compression::Zstd),
        ("gzip", Compression::Gzip),
    ] {
        let t = tempfile::tempdir().unwrap();
        let layout = t.path().join("layout");
        three_layers(tag)
            .compression(compression)
            .write(&layout, tag)
            .unwrap();
        let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
        let image = store(&t.path().join("data"))
            .pull(
                &reference(&reg.host(), tag),
                &Credentials::None,
                no_progress,
            )
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(image.rootfs.join("app/version")).unwrap(),
            tag
        );
        assert_eq!(
            std::fs::metadata(image.rootfs.join("usr/data"))
                .unwrap()
                .len(),
            64 << 10
        );
    }
}

#[tokio::test]
async fn whiteouts_across_layers() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    LayoutBuilder::new()
        .layer(vec![
            LayerEntry::dir("etc", 0o755),
            LayerEntry::file("etc/keep", "k", 0o644),
            LayerEntry::file("etc/remove-me", "r", 0o644),
            LayerEntry::dir("cache", 0o755),
            LayerEntry::file("cache/old", "o", 0o644),
            LayerEntry::file("data", "1", 0o644),
            LayerEntry::hardlink("data-link", "data"),
        ])
        .layer(vec![
            LayerEntry::file("etc/.wh.remove-me", "", 0o644),
            LayerEntry::dir("cache", 0o755),
            LayerEntry::file("cache/.wh..wh..opq", "", 0o644),
            LayerEntry::file("cache/new", "n", 0o644),
        ])
        .write(&layout, "wh")
        .unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let image = store(&t.path().join("data"))
        .pull(
            &reference(&reg.host(), "wh"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    assert_eq!(
        tree(&image.rootfs),
        ["cache", "cache/new", "data", "data-link", "etc", "etc/keep"]
    );
    let ino = |p: &str| std::fs::metadata(image.rootfs.join(p)).unwrap().ino();
    assert_eq!(ino("data"), ino("data-link"));
}

#[tokio::test]
async fn basic_auth() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg =
        TestRegistry::start(&layout, REPO, Auth::Basic("alice".into(), "s3cret".into())).await;
    let store = store(&t.path().join("data"));
    let r = reference(&reg.host(), "v1");
    let e = store
        .pull(&r, &Credentials::None, no_progress)
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::Unauthorized { .. }), "{e}");
    assert!(e.to_string().contains("none were given"), "{e}");
    let wrong = Credentials::Basic {
        username: "alice".into(),
        password: "nope".into(),
    };
    let e = store.pull(&r, &wrong, no_progress).await.unwrap_err();
    assert!(e.to_string().contains("refused access"), "{e}");
    let right = Credentials::Basic {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    store.pull(&r, &right, no_progress).await.unwrap();
}

#[tokio::test]
async fn bearer_token_flow() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::Bearer("bob".into(), "tok3n".into())).await;
    let store = store(&t.path().join("data"));
    let r = reference(&reg.host(), "v1");
    let e = store
        .pull(&r, &Credentials::None, no_progress)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("token endpoint"), "{e}");
    let creds = Credentials::Basic {
        username: "bob".into(),
        password: "tok3n".into(),
    };
    let image = store.pull(&r, &creds, no_progress).await.unwrap();
    assert!(image.rootfs.join("app/version").exists());
    assert!(reg.requests("/token") >= 2);
}

#[tokio::test]
async fn an_index_yields_its_linux_amd64_image() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    let manifest = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(&built.manifest_digest[7..]),
    )
    .unwrap();
    let entry = |digest: &str, size: usize, arch: &str, variant: Option<&str>| {
        let mut platform = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size, "platform": platform})
    };
    let fake = format!("sha256:{}", "0".repeat(64));
    let write_index = |tag: &str, manifests: Vec<serde_json::Value>| {
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap();
        use sha2::Digest;
        let hex = hex::encode(sha2::Sha256::digest(&index));
        std::fs::write(layout.join("blobs/sha256").join(&hex), &index).unwrap();
        tag_in_index(
            &layout,
            tag,
            serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": format!("sha256:{hex}"), "size": index.len()}),
        );
    };
    write_index(
        "multi",
        vec![
            entry(&fake, 10, "arm64", Some("v8")),
            entry(&built.manifest_digest, manifest.len(), "amd64", None),
        ],
    );
    write_index(
        "arm-only",
        vec![
            entry(&fake, 10, "arm64", Some("v8")),
            entry(&fake, 10, "arm", Some("v7")),
        ],
    );
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let image = store
        .pull(
            &reference(&reg.host(), "multi"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    assert_eq!(image.manifest_digest, built.manifest_digest);
    let e = store
        .pull(
            &reference(&reg.host(), "arm-only"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no linux/amd64 variant"), "{e}");
    assert!(e.contains("linux/arm64/v8, linux/arm/v7"), "{e}");
}

#[tokio::test]
async fn an_image_for_another_platform_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let mut config = plain_config();
    config["architecture"] = "arm64".into();
    write_raw_image(&layout, "arm", &[], config);
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let e = store(&t.path().join("data"))
        .pull(
            &reference(&reg.host(), "arm"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("linux/arm64"), "{e}");
}

#[tokio::test]
async fn unknown_tags_and_repositories() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let e = store
        .pull(
            &reference(&reg.host(), "nope"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("was not found"), "{e}");
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = three_layers("v1").write(&layout, "v1").unwrap();
    // corrupt the top layer in place (same size)
    let blob = layout.join("blobs/sha256").join(&built.layers[2][7..]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let data = t.path().join("data");
    let store = store(&data);
    let e = store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains(&built.layers[2]), "{e}");
    assert!(
        !data
            .join("layers/sha256")
            .join(&built.layers[2][7..])
            .exists()
    );
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs")), Vec::<String>::new());

    // a manifest asked for by digest must have that digest
    let m = layout
        .join("blobs/sha256")
        .join(&built.manifest_digest[7..]);
    let mut manifest = std::fs::read(&m).unwrap();
    manifest.push(b' ');
    std::fs::write(&m, &manifest).unwrap();
    let by_digest = aloft_image::Reference::parse(
        &format!("{}/{REPO}@{}", reg.host(), built.manifest_digest),
        "x:1",
        "personal",
    )
    .unwrap();
    let e = store
        .pull(&by_digest, &Credentials::None, no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(e, ImageError::DigestMismatch { .. }) && e.to_string().contains("manifest"),
        "{e}"
    );
}

#[tokio::test]
async fn broken_transfers_are_retried() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    reg.fail_next_blobs(2);
    let (events, progress) = recorder();
    let image = store(&t.path().join("data"))
        .pull(&reference(&reg.host(), "v1"), &Credentials::None, progress)
        .await
        .unwrap();
    assert!(image.rootfs.join("app/version").exists());
    assert_eq!(
        reg.all_blob_gets(),
        4 + 2,
        "two broken transfers were retried"
    );
    let last = events.lock().last().unwrap().clone();
    assert!(last.bytes_fetched >= last.bytes_total);
}

#[tokio::test]
async fn a_registry_that_goes_away_mid_pull() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    reg.die_on_next_blob();
    let data = t.path().join("data");
    let e = store(&data)
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::RegistryUnavailable { .. }), "{msg}");
    assert!(msg.contains(&reg.host()), "{msg}");
    assert!(msg.contains("after 3 attempts"), "{msg}");
    assert!(msg.contains("check that it is running"), "{msg}");
    assert_cache_empty(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_share_a_failure() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    reg.fail_next_blobs(1000);
    let store = store(&t.path().join("data"));
    let r = reference(&reg.host(), "v1");
    let pulls: Vec<_> = (0..4)
        .map(|_| {
            let (store, r) = (store.clone(), r.clone());
            tokio::spawn(async move { store.pull(&r, &Credentials::None, no_progress).await })
        })
        .collect();
    for p in pulls {
        let e = p.await.unwrap().unwrap_err();
        assert!(matches!(e, ImageError::RegistryUnavailable { .. }), "{e}");
    }
    // one pull tried (3 attempts at the config blob); the others took its error instead of
    // retrying in turn (which would be 12 attempts)
    assert!(
        reg.all_blob_gets() < 12,
        "{} blob requests",
        reg.all_blob_gets()
    );
    assert_cache_empty(&t.path().join("data"));
}

#[tokio::test]
async fn a_registry_that_is_not_there() {
    let t = tempfile::tempdir().unwrap();
    // a port nothing listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let e = store(&t.path().join("data"))
        .pull(&reference(&host, "v1"), &Credentials::None, no_progress)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("registry {host} did not answer")),
        "{e}"
    );
}

/// Pulls an image whose second layer is `hostile` (a raw tar, gzip-compressed) and checks the
/// refusal, and that nothing was written outside the store or kept of the layer.
async fn assert_pull_refused(hostile: Vec<u8>, needle: &str) {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let base = raw_tar(&[("base", tar::EntryType::Regular, b"ok", "")]);
    let gz = "application/vnd.oci.image.layer.v1.tar+gzip";
    write_raw_image(
        &layout,
        "bad",
        &[(gzip(&base), gz), (gzip(&hostile), gz)],
        plain_config(),
    );
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let data = t.path().join("data");
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let e = store(&data)
        .pull(
            &reference(&reg.host(), "bad"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            ImageError::UnsafeEntry { .. } | ImageError::LimitExceeded { .. }
        ),
        "{msg}"
    );
    assert!(msg.contains(needle), "`{needle}` not in: {msg}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert_eq!(
        names(t.path()),
        ["data", "layout"],
        "written beside the store"
    );
    // only the good base layer is cached; no image, no temporary
    assert_eq!(
        names(&data.join("layers/sha256")).len(),
        2,
        "base layer dir + record"
    );
    assert_eq!(names(&data.join("layers")), ["sha256"]);
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs")), Vec::<String>::new());
}

#[tokio::test]
async fn hostile_layers_are_refused() {
    use tar::EntryType::{Block, Char, Directory, Link, Regular, Symlink};
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (raw_tar(&[("../x", Regular, b"x", "")]), "contains `..`"),
        (
            raw_tar(&[("/etc/passwd", Regular, b"pwned", "")]),
            "absolute",
        ),
        (
            raw_tar(&[
                ("evil", Symlink, b"", "/"),
                ("evil/etc/passwd", Regular, b"pwned", ""),
            ]),
            "parent `evil` is a symlink",
        ),
        (
            raw_tar(&[
                ("up", Symlink, b"", ".."),
                ("up/../../escape", Regular, b"x", ""),
            ]),
            "contains `..`",
        ),
        (
            raw_tar(&[("up", Symlink, b"", ".."), ("up/escape", Regular, b"x", "")]),
            "parent `up` is a symlink",
        ),
        (
            raw_tar(&[
                ("d", Directory, b"", ""),
                ("d/up", Symlink, b"", "../.."),
                ("d/up/escape", Directory, b"", ""),
            ]),
            "parent `d/up` is a symlink",
        ),
        (
            raw_tar(&[("shadow", Link, b"", "/etc/shadow")]),
            "hard link target `/etc/shadow`",
        ),
        (raw_tar(&[("x", Link, b"", "../../x")]), "contains `..`"),
        (raw_tar(&[("dev/null", Char, b"", "")]), "character device"),
        (raw_tar(&[("dev/sda", Block, b"", "")]), "block device"),
    ];
    for (hostile, needle) in cases {
        assert_pull_refused(hostile, needle).await;
    }
}

#[tokio::test]
async fn bombs_are_refused() {
    // ratio: 48 MiB of zeros as many gzip members of 1 MiB each (built in milliseconds)
    let size: u64 = 48 << 20;
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    let mut bomb = gzip(h.as_bytes());
    let chunk = {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        enc.finish().unwrap()
    };
    for _ in 0..(size >> 20) {
        bomb.extend_from_slice(&chunk);
    }
    bomb.extend(gzip(&[0u8; 1024]));
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    write_raw_image(
        &layout,
        "bomb",
        &[(bomb, "application/vnd.oci.image.layer.v1.tar+gzip")],
        plain_config(),
    );
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let data = t.path().join("data");
    let e = store(&data)
        .pull(
            &reference(&reg.host(), "bomb"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("compression ratio limit") && e.contains("limits.max_ratio"),
        "{e}"
    );
    assert_cache_empty(&data);

    // total bytes, file count and image size, with small limits
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let many: Vec<LayerEntry> = (0..50)
        .map(|i| LayerEntry::file(&format!("f{i}"), vec![1u8; 4096], 0o644))
        .collect();
    LayoutBuilder::new()
        .layer(many)
        .write(&layout, "many")
        .unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    for (limit, needle) in [
        ("files", "limits.max_files"),
        ("bytes", "limits.max_layer_bytes"),
        ("image", "limits.max_image_bytes"),
    ] {
        let data = t.path().join(format!("data-{limit}"));
        let mut c = config(&data);
        match limit {
            "files" => c.limits.max_files = 10,
            "bytes" => c.limits.max_layer_bytes = 100 << 10,
            _ => c.limits.max_image_bytes = 100 << 10,
        }
        let e = aloft_image::ImageStore::open(c)
            .unwrap()
            .pull(
                &reference(&reg.host(), "many"),
                &Credentials::None,
                no_progress,
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{limit}: {e}");
        if limit != "image" {
            assert_cache_empty(&data);
        }
        assert_eq!(names(&data.join("images")), Vec::<String>::new());
    }
}

/// Unmounts a tmpfs on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_disk_leaves_no_partial_layer() {
    if !is_root() {
        println!("SKIPPED: a_full_disk_leaves_no_partial_layer needs root to mount a small tmpfs");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // 3 MiB that compress to almost nothing, into a 2 MiB filesystem
    let text: Vec<u8> = b"aloft ".iter().copied().cycle().take(3 << 20).collect();
    LayoutBuilder::new()
        .layer(vec![LayerEntry::file("small", "fits", 0o644)])
        .layer(vec![LayerEntry::file("big", text, 0o644)])
        .write(&layout, "big")
        .unwrap();
    let data = t.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    if !status.success() {
        println!("SKIPPED: a_full_disk_leaves_no_partial_layer: mount -t tmpfs failed");
        return;
    }
    let _unmount = Mounted(data.clone());
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let mut c = config(&data);
    c.download_concurrency = 1;
    let e = aloft_image::ImageStore::open(c)
        .unwrap()
        .pull(
            &reference(&reg.host(), "big"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ImageError::DiskFull { .. }), "{msg}");
    assert!(msg.contains("no space left"), "{msg}");
    // the small layer may be cached (complete); the big one left nothing
    let layers = names(&data.join("layers/sha256"));
    assert!(layers.len() <= 2, "{layers:?}");
    assert_eq!(names(&data.join("layers")), ["sha256"]);
    assert_eq!(names(&data.join("images")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs")), Vec::<String>::new());
}

#[tokio::test]
async fn ext4_images_are_valid_and_cached() {
    if !have("mkfs.ext4", "e2fsprogs") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    three_layers("v1").write(&layout, "v1").unwrap();
    let reg = TestRegistry::start(&layout, REPO, Auth::None).await;
    let store = store(&t.path().join("data"));
    let image = store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    let (a, b) = tokio::join!(store.ext4(&image), store.ext4(&image));
    let ext4 = a.unwrap();
    assert_eq!(b.unwrap(), ext4);
    let meta = std::fs::metadata(&ext4).unwrap();
    assert_eq!(
        meta.len(),
        65 << 20,
        "64 MiB headroom + content x 1.3, rounded to MiB"
    );
    let again = store.ext4(&image).await.unwrap();
    assert_eq!(again, ext4);
    assert_eq!(
        std::fs::metadata(&again).unwrap().mtime_nsec(),
        meta.mtime_nsec()
    );
    if have("e2fsck", "e2fsprogs") {
        let out = std::process::Command::new("e2fsck")
            .args(["-fn"])
            .arg(&ext4)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if have("debugfs", "e2fsprogs") {
        let out = std::process::Command::new("debugfs")
            .args(["-R", "cat /app/version"])
            .arg(&ext4)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "v1");
        let out = std::process::Command::new("debugfs")
            .args(["-R", "stat /bin/tool"])
            .arg(&ext4)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&out.stdout);
        assert!(stat.contains("Mode:  0755"), "{stat}");
    }
    let list = store.list().await.unwrap();
    assert_eq!(list[0].ext4.as_deref(), Some(ext4.as_path()));
    let leftovers: Vec<_> = names(ext4.parent().unwrap())
        .into_iter()
        .filter(|n| n.starts_with("tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn prune_removes_what_is_not_kept() {
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
    let i2 = store
        .pull(
            &reference(&reg.host(), "v2"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    let with_ext4 = have("mkfs.ext4", "e2fsprogs");
    if with_ext4 {
        store.ext4(&i1).await.unwrap();
    }
    assert_eq!(store.list().await.unwrap().len(), 2);

    let report = store
        .prune(std::slice::from_ref(&i2.manifest_digest))
        .await
        .unwrap();
    assert_eq!(
        report.images_removed,
        std::slice::from_ref(&v1.manifest_digest)
    );
    assert_eq!(report.layers_removed, 1, "only v1's own top layer");
    assert_eq!(report.ext4_removed, usize::from(with_ext4));
    assert!(report.bytes_freed > 0);
    assert!(!i1.rootfs.exists());
    assert_eq!(
        std::fs::read_to_string(i2.rootfs.join("app/version")).unwrap(),
        "v2"
    );
    assert!(!data.join("layers/sha256").join(&v1.layers[2][7..]).exists());
    for shared in &v2.layers {
        assert!(data.join("layers/sha256").join(&shared[7..]).exists());
    }
    let list = store.list().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].manifest_digest, v2.manifest_digest);

    // pulling v1 again fetches only its own layer
    let before = reg.blob_gets(&v1.layers[0]);
    store
        .pull(
            &reference(&reg.host(), "v1"),
            &Credentials::None,
            no_progress,
        )
        .await
        .unwrap();
    assert_eq!(reg.blob_gets(&v1.layers[0]), before);

    let report = store.prune(&[]).await.unwrap();
    assert_eq!(report.images_removed.len(), 2);
    assert_eq!(report.layers_removed, 4);
    assert_cache_empty(&data);
    assert!(
        store.prune(&["latest".into()]).await.is_err(),
        "keep takes digests"
    );
}

#[tokio::test]
async fn the_busybox_image_runs() {
    if !have("busybox", "busybox-static") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let built = aloft_image::oci_layout::build_busybox_layout(&layout, "latest").unwrap();
    // reproducible
    let again =
        aloft_image::oci_layout::build_busybox_layout(&t.path().join("l2"), "latest").unwrap();
    assert_eq!(built, again);
    let reg = TestRegistry::start(&layout, "personal/busybox", Auth::None).await;
    let r = aloft_image::Reference::parse("busybox", &reg.host(), "personal").unwrap();
    let image = store(&t.path().join("data"))
        .pull(&r, &Credentials::None, no_progress)
        .await
        .unwrap();
    assert_eq!(image.config.entrypoint, ["/bin/sh"]);
    let process = image
        .config
        .process(&aloft_types::MachineConfig {
            image: "busybox".into(),
            init: Some(aloft_types::config::InitConfig {
                cmd: vec!["-c".into(), "echo hello from $0".into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(process.argv, ["/bin/sh", "-c", "echo hello from $0"]);
    let root = &image.rootfs;
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    if is_root() && have("chroot", "coreutils") {
        let out = std::process::Command::new("chroot")
            .arg(root)
            .args(&process.argv)
            .env_clear()
            .envs(&process.env)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from /bin/sh\n");
    } else {
        println!("SKIPPED: running busybox in a chroot needs root");
    }
}

#[test]
fn open_removes_leftovers_and_keeps_the_data_dir_private() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    drop(store(&data));
    std::fs::create_dir_all(data.join("layers/tmp-1/usr")).unwrap();
    std::fs::write(data.join("layers/sha256/tmp-2"), "{").unwrap();
    std::fs::write(data.join("blobs/tmp-3"), "partial").unwrap();
    std::fs::create_dir_all(data.join("images/tmp-4/rootfs")).unwrap();
    std::fs::create_dir_all(data.join("images/abc")).unwrap();
    std::fs::write(data.join("images/abc/tmp-5.ext4"), "").unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    drop(store(&data));
    assert_eq!(names(&data.join("layers")), ["sha256"]);
    assert_eq!(names(&data.join("layers/sha256")), Vec::<String>::new());
    assert_eq!(names(&data.join("blobs")), Vec::<String>::new());
    assert_eq!(names(&data.join("images")), ["abc"]);
    assert_eq!(names(&data.join("images/abc")), Vec::<String>::new());
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
}
