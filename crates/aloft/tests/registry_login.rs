//! `aloft registry login|list|logout` against `aloft dev up`: the password is read from stdin
//! only, never listed or printed, and stored sealed in the control plane's database.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PASSWORD: &str = "ghp_cli-test-pull-password";

/// `aloft ARGS` against `dev`, with `stdin` piped in.
fn with_stdin(dev: &DevUp, args: &[&str], stdin: &str) -> Out {
    let mut child = Command::new(BIN)
        .env_remove("ALOFT_API_TOKEN")
        .env_remove("ALOFT_APP")
        .env("ALOFT_API_URL", &dev.api_url)
        .env("ALOFT_DATA_DIR", &dev.data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run aloft");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        args: args.join(" "),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            found.push(path.display().to_string());
        }
    }
    found
}

#[test]
fn registry_logins_are_stored_listed_and_removed_without_showing_the_password() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "reglogin");

    // The password never as an argument: without --password-stdin the CLI says how.
    let out = dev.aloft(&["registry", "login", "ghcr.io", "-u", "me"]);
    assert!(out.fails().contains("--password-stdin"), "{out}");

    let out = with_stdin(
        &dev,
        &[
            "registry",
            "login",
            "ghcr.io",
            "-u",
            "me",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.ok().contains("ghcr.io"), "{out}");
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));

    let list = dev.aloft(&["registry", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["host"], "ghcr.io");
    assert_eq!(list[0]["username"], "me");
    assert!(!list.to_string().contains(PASSWORD), "{list}");
    let table = dev.aloft(&["registry", "list"]);
    assert!(
        table.ok().contains("ghcr.io") && !table.stdout.contains(PASSWORD),
        "{table}"
    );

    // Sealed at rest: no file of the data dir holds the password.
    let leaks = files_containing(&data, PASSWORD.as_bytes());
    assert!(leaks.is_empty(), "the password is in {leaks:?}");

    dev.aloft(&["registry", "logout", "ghcr.io"]).ok();
    let list = dev.aloft(&["registry", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");
    let out = dev.aloft(&["registry", "logout", "ghcr.io"]);
    assert!(out.fails().contains("aloft registry list"), "{out}");
}
