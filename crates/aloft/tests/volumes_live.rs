//! Volumes on real gVisor machines through `aloft deploy` and `aloft volumes`: `[[mounts]]` makes
//! one per machine, its data outlives updates, an agent crash, the machine itself and a grow; a
//! snapshot is taken; nothing of it is in plain text on the host's disk; `apps destroy` removes
//! it.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// This test's own bridge and subnet.
const NET: [&str; 6] = [
    "--runtime",
    "gvisor",
    "--bridge",
    "altvol0",
    "--machine-subnet",
    "172.29.10.0/24",
];

/// Words that must never be on the host's disk in plain text.
const SECRET: &str = "volume-words-only-the-machine-reads";

fn fly_toml(dir: &Path, greeting: &str) -> String {
    let path = dir.join("fly.toml");
    std::fs::write(
        &path,
        format!(
            "app = \"hello\"\nprimary_region = \"local\"\n\n[build]\n  image = \"hello:v1\"\n\n[env]\n  GREETING = \"{greeting}\"\n\n[[mounts]]\n  source = \"data\"\n  destination = \"/data\"\n  initial_size = \"1gb\"\n\n[http_service]\n  internal_port = 8080\n\n  [[http_service.checks]]\n    interval = \"1s\"\n    timeout = \"2s\"\n    path = \"/\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

fn volumes(dev: &DevUp) -> Vec<Value> {
    dev.aloft(&["--json", "volumes", "list", "-a", "hello"])
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn machine_ids(dev: &DevUp) -> Vec<String> {
    dev.aloft(&["--json", "machine", "list", "-a", "hello"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn sh(dev: &DevUp, id: &str, script: &str) -> String {
    dev.aloft(&[
        "machine", "exec", id, "-a", "hello", "--", "sh", "-c", script,
    ])
    .ok()
    .to_string()
}

/// Every regular file under `dir`, except under mount points (a mounted volume shows its
/// plain text there, as it should).
fn files_on_disk(dir: &Path) -> Vec<PathBuf> {
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if mounts.iter().any(|m| Path::new(m) == p) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_volume_keeps_its_data_through_deploys_crashes_and_new_machines() {
    if gvisor_missing("volumes on gVisor") {
        return;
    }
    let (tmp, data) = temp_data_dir();
    let Some(layout) = hello_image(tmp.path()) else {
        return;
    };
    let mut dev = DevUp::start_with(&data, "volumes-live", &NET);
    push(&dev, &layout, "v1", "hello");
    dev.aloft(&["apps", "create", "hello"]).ok();
    let (machine, vol) = the_first_deploy_makes_an_encrypted_volume(&dev, &tmp);
    let config = a_bluegreen_deploy_rolls_and_keeps_the_data(&dev, &tmp, &machine);
    dev = a_killed_agent_leaves_the_machine_running(dev, &data, &machine);
    a_snapshot_and_a_grow(&dev, &machine, &vol);
    a_new_machine_gets_the_volume_back(&dev, &config, &machine);
    scaling_out_gives_each_machine_a_volume(&dev);
    machine_run_mounts_a_volume_made_by_hand(&dev, &data);
    destroying_a_mounted_volume_is_refused(&dev, &vol);
    no_file_on_the_host_holds_the_words(&data);
    destroying_the_app_leaves_nothing_behind(&dev, &data, &vol);
}

/// The first deploy makes the machine a volume of its own, encrypted, and the machine writes the
/// secret words to it. Returns the machine's id and the volume's.
fn the_first_deploy_makes_an_encrypted_volume(
    dev: &DevUp,
    tmp: &tempfile::TempDir,
) -> (String, String) {
    let config = fly_toml(tmp.path(), "one");
    let out = dev.aloft(&["deploy", "-c", &config]).ok().to_string();
    assert!(out.contains("created volume"), "{out}");
    let [machine] = machine_ids(dev).try_into().unwrap();
    let [volume] = volumes(dev).try_into().unwrap();
    let vol = volume["id"].as_str().unwrap().to_string();
    assert_eq!(volume["attached_machine_id"], machine.as_str(), "{volume}");
    assert_eq!(volume["encrypted"], true);
    sh(
        dev,
        &machine,
        &format!("echo {SECRET} > /data/note && sync"),
    );
    (machine, vol)
}

/// A bluegreen deploy of an app with volumes is a rolling one, and says why; the machine is
/// updated in place and finds its data. Returns the v2 config.
fn a_bluegreen_deploy_rolls_and_keeps_the_data(
    dev: &DevUp,
    tmp: &tempfile::TempDir,
    machine: &str,
) -> String {
    let config = fly_toml(tmp.path(), "two");
    let out = dev
        .aloft(&["deploy", "-c", &config, "--strategy", "bluegreen"])
        .ok()
        .to_string();
    assert!(out.contains("deploying with rolling"), "{out}");
    assert!(!out.contains("created volume"), "{out}");
    assert_eq!(machine_ids(dev), std::slice::from_ref(&machine));
    assert_eq!(sh(dev, machine, "cat /data/note").trim(), SECRET);
    config
}

/// The host agent killed: the machine runs on, its volume mounted, and the restarted agent takes
/// it back. Returns the restarted `dev up`.
fn a_killed_agent_leaves_the_machine_running(mut dev: DevUp, data: &Path, machine: &str) -> DevUp {
    dev.sigkill();
    dev = DevUp::start_with(data, "volumes-live-2", &NET);
    assert_eq!(sh(&dev, machine, "cat /data/note").trim(), SECRET);
    dev
}

/// A snapshot (the filesystem frozen for the copy only); a grow the machine sees after a restart.
fn a_snapshot_and_a_grow(dev: &DevUp, machine: &str, vol: &str) {
    dev.aloft(&["volumes", "snapshots", "create", vol, "-a", "hello"])
        .ok();
    let snaps = dev
        .aloft(&["--json", "volumes", "snapshots", "list", vol, "-a", "hello"])
        .json();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    // The filesystem was frozen for the copy only: the machine writes again.
    assert_eq!(
        sh(
            dev,
            machine,
            "echo after > /data/after && sync && cat /data/after"
        )
        .trim(),
        "after"
    );
    let out = dev
        .aloft(&["volumes", "extend", vol, "--size", "2", "-a", "hello"])
        .ok()
        .to_string();
    assert!(out.contains("aloft machine restart"), "{out}");
    dev.aloft(&["machine", "restart", machine, "-a", "hello"])
        .ok();
    let kb: u64 = sh(dev, machine, "df -k /data | tail -1")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(kb > 1_800_000, "/data is {kb} KiB after growing to 2 GB");
    assert_eq!(sh(dev, machine, "cat /data/note").trim(), SECRET);
}

/// The machine destroyed, its volume stays; the next deploy's new machine gets it back.
fn a_new_machine_gets_the_volume_back(dev: &DevUp, config: &str, machine: &str) {
    dev.aloft(&["machine", "destroy", machine, "-a", "hello", "--force"])
        .ok();
    let [volume] = volumes(dev).try_into().unwrap();
    assert_eq!(volume["attached_machine_id"], Value::Null, "{volume}");
    let out = dev.aloft(&["deploy", "-c", config]).ok().to_string();
    assert!(!out.contains("created volume"), "{out}");
    let [again] = machine_ids(dev).try_into().unwrap();
    assert_ne!(again, machine);
    assert_eq!(sh(dev, &again, "cat /data/note").trim(), SECRET);
}

/// Scaling out gives the new machine a volume of its own, of the same name.
fn scaling_out_gives_each_machine_a_volume(dev: &DevUp) {
    dev.aloft(&["scale", "count", "2", "-a", "hello"]).ok();
    let list = volumes(dev);
    assert_eq!(list.len(), 2, "{list:?}");
    let mut holders: Vec<&str> = list
        .iter()
        .map(|v| v["attached_machine_id"].as_str().unwrap())
        .collect();
    holders.sort();
    let mut ids = machine_ids(dev);
    ids.sort();
    assert_eq!(holders, ids);
    assert!(list.iter().all(|v| v["name"] == "data"));
}

/// `machine run --volume` mounts a volume made by hand; a malformed one is explained.
fn machine_run_mounts_a_volume_made_by_hand(dev: &DevUp, data: &Path) {
    let extra = dev
        .aloft(&[
            "--json", "volumes", "create", "extra", "--region", "local", "-a", "hello",
        ])
        .json();
    let extra = extra["id"].as_str().unwrap();
    let err = dev
        .aloft(&[
            "machine", "run", "hello:v1", "-a", "hello", "--volume", "extra",
        ])
        .fails()
        .to_string();
    assert!(err.contains("VOLUME_ID:/path"), "{err}");
    let out = dev.aloft(&[
        "--json",
        "machine",
        "run",
        "hello:v1",
        "-a",
        "hello",
        "--volume",
        &format!("{extra}:/extra"),
        "--entrypoint",
        "/bin/sh -c",
        "--cmd",
        "\"echo by-hand > /extra/x && exec sleep 600\"",
    ]);
    let by_hand = out.json()["id"].as_str().unwrap().to_string();
    assert_eq!(sh(dev, &by_hand, "cat /extra/x").trim(), "by-hand");
    dev.aloft(&["machine", "destroy", &by_hand, "-a", "hello", "--force"])
        .ok();
    dev.aloft(&["volumes", "destroy", extra, "-a", "hello", "--yes"])
        .ok();
    assert!(!data.join("agent/volumes").join(extra).exists());
}

/// Destroying a volume asks first, and never takes one a machine mounts.
fn destroying_a_mounted_volume_is_refused(dev: &DevUp, vol: &str) {
    let err = dev
        .aloft(&["volumes", "destroy", vol, "-a", "hello"])
        .fails()
        .to_string();
    assert!(err.contains("--yes"), "{err}");
    let err = dev
        .aloft(&["volumes", "destroy", vol, "-a", "hello", "--yes"])
        .fails()
        .to_string();
    assert!(err.contains("destroy that machine first"), "{err}");
}

/// Nothing on the host's disk holds the words in plain text.
fn no_file_on_the_host_holds_the_words(data: &Path) {
    for file in files_on_disk(data) {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "{} holds the volume's data in plain text",
            file.display()
        );
    }
}

/// The app destroyed: its volume's data goes too, and no daemon or mount of any of its volumes
/// is left on the host.
fn destroying_the_app_leaves_nothing_behind(dev: &DevUp, data: &Path, vol: &str) {
    dev.aloft(&["apps", "destroy", "hello", "--yes"]).ok();
    let dir = data.join("agent/volumes").join(vol);
    assert!(!dir.exists(), "{} is still there", dir.display());
    // And no daemon or mount of any of its volumes is left on the host.
    let needle = data.to_string_lossy().into_owned();
    let daemons: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("qemu-storage-daemon") && c.contains(&needle))
        .collect();
    assert!(daemons.is_empty(), "{daemons:?}");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts
            .lines()
            .any(|l| l.contains(&format!("{needle}/agent/volumes"))),
        "{mounts}"
    );
}
