//! Volumes on a host with the real tools (qemu-img, qemu-storage-daemon, e2fsprogs, loop
//! devices): made encrypted, mounted, kept across unmounts, grown, snapshotted, refused with the
//! wrong key, removed. Needs root and qemu-utils; otherwise each test prints SKIPPED.

mod common;

use aloft_runtime::volume::{VolumeKey, VolumeStore};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

/// The filesystem's size in bytes, as `df` sees it.
fn fs_size(mnt: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=size"])
        .arg(mnt)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Whether `needle` appears anywhere in the file.
fn contains(file: &Path, needle: &[u8]) -> bool {
    let data = std::fs::read(file).unwrap();
    data.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_volume_is_encrypted_keeps_its_data_grows_and_is_snapshotted() {
    skip_unless!(&[
        ("qemu-img", "qemu-utils"),
        ("qemu-storage-daemon", "qemu-utils"),
        ("mkfs.ext4", "e2fsprogs"),
        ("resize2fs", "e2fsprogs"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let store = VolumeStore::new(tmp.path().join("volumes"));
    let id = "vol_00112233aabbccdd";
    let key = VolumeKey::new("k".repeat(64));
    let secret = b"the secret sauce is 42 percent butter";

    let disk = store.prepare(id, 1, &key).await.unwrap();
    assert!(disk.exists());
    let mnt = store.mount(id, &key, "m1").await.unwrap();
    assert!(store.is_mounted(id));
    // One machine at a time: another's mount is refused, the first keeps its volume.
    let taken = store.mount(id, &key, "m2").await.unwrap_err();
    assert!(taken.contains("mounted by machine m1"), "{taken}");
    assert!(store.is_mounted(id));
    std::fs::write(mnt.join("recipe.txt"), secret).unwrap();
    let one_gb = fs_size(&mnt);
    assert!(one_gb > 900 << 20 && one_gb <= 1 << 30, "{one_gb}");
    store.unmount(id).await;
    assert!(!store.is_mounted(id));
    assert!(
        !contains(&disk, secret),
        "the disk holds the data in plain text"
    );
    assert!(
        !tmp.path().join("volumes").join(id).join("key").exists(),
        "the key stayed on disk"
    );

    // The wrong key opens nothing, and says what may be wrong.
    let wrong = store
        .mount(id, &VolumeKey::new("x".repeat(64)), "m1")
        .await
        .unwrap_err();
    assert!(wrong.contains("wrong key"), "{wrong}");
    assert!(!store.is_mounted(id));

    // Grown to 2 GB: the filesystem too, the data kept.
    store.prepare(id, 2, &key).await.unwrap();
    let mnt = store.mount(id, &key, "m1").await.unwrap();
    assert_eq!(std::fs::read(mnt.join("recipe.txt")).unwrap(), secret);
    let two_gb = fs_size(&mnt);
    assert!(two_gb > one_gb + (900 << 20), "{one_gb} -> {two_gb}");

    // A snapshot while mounted (frozen for the copy), encrypted as well.
    let copy = store.snapshot(id, "vs_0011223344556677").await.unwrap();
    let snapshot = tmp
        .path()
        .join("volumes")
        .join(id)
        .join("snapshots/vs_0011223344556677.qcow2");
    assert_eq!(std::fs::metadata(&snapshot).unwrap().len(), copy.size);
    // The digest is of the bytes kept.
    let bytes = std::fs::read(&snapshot).unwrap();
    let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(copy.digest, want);
    assert!(!contains(&snapshot, secret));
    std::fs::write(mnt.join("after.txt"), b"still writable").unwrap();
    store.unmount(id).await;

    // An agent killed between growing the image and its filesystem: the next start finishes.
    let dir = tmp.path().join("volumes").join(id);
    std::fs::write(dir.join("growing"), b"").unwrap();
    std::fs::write(tmp.path().join("key"), "k".repeat(64)).unwrap();
    let resized = Command::new("qemu-img")
        .arg("resize")
        .arg("--object")
        .arg(format!(
            "secret,id=k,file={}",
            tmp.path().join("key").display()
        ))
        .arg("--image-opts")
        .arg(format!(
            "driver=qcow2,encrypt.key-secret=k,file.filename={}",
            disk.display()
        ))
        .arg("3G")
        .output()
        .unwrap();
    assert!(resized.status.success(), "{resized:?}");
    store.prepare(id, 3, &key).await.unwrap();
    assert!(!dir.join("growing").exists());
    let mnt = store.mount(id, &key, "m1").await.unwrap();
    let three_gb = fs_size(&mnt);
    assert!(three_gb > two_gb + (900 << 20), "{two_gb} -> {three_gb}");
    assert_eq!(
        std::fs::read(mnt.join("after.txt")).unwrap(),
        b"still writable"
    );

    assert!(store.delete(id).await.unwrap());
    assert!(!store.is_mounted(id));
    assert!(!tmp.path().join("volumes").join(id).exists());
    assert!(!store.delete(id).await.unwrap());
    assert!(store.snapshot(id, "vs_0011223344556678").await.is_err());
}
