//! `aloft hosts` against `aloft dev up`, as an operator (the data dir's internal token): the
//! dev host is listed; a join token is printed once, alone on stdout, and joins the host it
//! names exactly once; `revoke` stops that host's credential at once and says how to let it back
//! in; an org token is not an operator's.

mod common;

use common::*;

#[test]
fn join_tokens_join_once_and_revoked_hosts_are_cut_off() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "hosts");
    let hosts = dev.aloft(&["hosts", "list", "--json"]).json();
    assert_eq!(hosts[0]["id"], "local-1", "{hosts}");
    let table = dev.aloft(&["hosts", "list"]);
    assert!(table.ok().contains("local-1"), "{table}");

    let out = dev.aloft(&[
        "hosts",
        "join-token",
        "--host",
        "extra-1",
        "--expires-in",
        "10m",
    ]);
    let token = out.ok().trim().to_string();
    assert!(
        token.starts_with("aloft_join_") && !token.contains(' '),
        "{out}"
    );
    assert!(out.stderr.contains("join_token_file"), "{out}");

    let path = "/internal/v1/hosts/extra-1/join";
    let (status, body) = http(&dev.api_url, "POST", path, &token, "");
    assert_eq!(status, 201, "{body}");
    let joined: serde_json::Value = serde_json::from_str(&body).unwrap();
    let credential = joined["credential"].as_str().unwrap().to_string();
    let (status, _) = http(&dev.api_url, "POST", path, &token, "");
    assert_eq!(status, 401, "a join token works once");
    let (status, body) = http(&dev.api_url, "GET", "/internal/v1/mesh", &credential, "");
    assert_eq!(status, 200, "{body}");

    let out = dev.aloft(&["hosts", "revoke", "extra-1"]);
    assert!(out.ok().contains("join-token --host extra-1"), "{out}");
    let (status, _) = http(&dev.api_url, "GET", "/internal/v1/mesh", &credential, "");
    assert_eq!(status, 401, "a revoked credential is refused at once");
    let out = dev.aloft(&["hosts", "revoke", "extra-1"]);
    assert!(out.fails().contains("no credential to revoke"), "{out}");
    let out = dev.aloft(&["hosts", "join-token", "--expires-in", "30d"]);
    assert!(out.fails().contains("7d"), "{out}");

    // An org token is not the cluster's internal token.
    let org = std::fs::read_to_string(data.join("token")).unwrap();
    let (status, _) = http(
        &dev.api_url,
        "POST",
        "/internal/v1/join-tokens",
        org.trim(),
        "{}",
    );
    assert_eq!(status, 401);
}
