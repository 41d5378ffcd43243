//! `aloft volumes` against `aloft dev up` (sim runtime, `--no-pull`): a volume's snapshot
//! settings at create and through `aloft volumes update` (flyctl's `--snapshot-retention` and
//! `--scheduled-snapshots`), unique hosts, and the errors that name the fix. Volumes are real
//! encrypted disks even here: needs root and qemu-utils, otherwise SKIPPED.

mod common;

use common::*;

fn can_make_volumes() -> bool {
    let tools = std::process::Command::new("qemu-storage-daemon")
        .arg("--version")
        .output()
        .is_ok();
    if !(is_root() && tools) {
        eprintln!("\n*** SKIPPED: volumes need root and qemu-utils (scripts/setup.sh) ***\n");
    }
    is_root() && tools
}

#[test]
fn volume_settings_are_set_at_create_and_by_update() {
    if !can_make_volumes() {
        return;
    }
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "volumes");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let v = dev
        .aloft(&[
            "--json",
            "volumes",
            "create",
            "data",
            "--region",
            "local",
            "--snapshot-retention",
            "9",
            "-a",
            "hello",
        ])
        .json();
    assert_eq!(v["snapshot_retention"], 9, "{v}");
    assert_eq!(v["auto_backup_enabled"], false, "{v}");
    let id = v["id"].as_str().unwrap();

    // One host: a second `data` that must be on another host is refused, naming the way out.
    let err = dev
        .aloft(&[
            "volumes",
            "create",
            "data",
            "--region",
            "local",
            "--require-unique-zone",
            "-a",
            "hello",
        ])
        .fails()
        .to_string();
    assert!(err.contains("require_unique_zone false"), "{err}");

    let update = |args: &[&str]| {
        let mut all = vec!["volumes", "update", id, "-a", "hello"];
        all.extend_from_slice(args);
        dev.aloft(&all)
    };
    let out = update(&["--snapshot-retention", "20"]);
    assert!(out.ok().contains("kept 20 days"), "{out}");
    let v = update(&["--scheduled-snapshots", "--json"]).json();
    assert_eq!(v["snapshot_retention"], 20, "{v}");
    assert_eq!(v["auto_backup_enabled"], true, "{v}");
    let v = update(&["--scheduled-snapshots=false", "--json"]).json();
    assert_eq!(v["auto_backup_enabled"], false, "{v}");
    let list = dev
        .aloft(&["--json", "volumes", "list", "-a", "hello"])
        .json();
    assert_eq!(list[0]["snapshot_retention"], 20, "{list}");

    let out = update(&["--snapshot-retention", "61"]);
    assert!(out.fails().contains("1 to 60"), "{out}");
    let out = update(&[]);
    assert!(out.fails().contains("--snapshot-retention"), "{out}");
}
