//! `aloft tokens` against `aloft dev up`: a deploy token is printed once, alone on stdout; with it
//! the CLI sees and changes its app only; the list never shows a token; a revoked token is
//! refused on the next command.

mod common;

use common::*;

/// Runs `aloft ARGS` against `dev` with `token` instead of the data dir's org token.
fn with_token(dev: &DevUp, token: &str, args: &[&str]) -> Out {
    aloft_with(
        &[("ALOFT_API_URL", &dev.api_url), ("ALOFT_API_TOKEN", token)],
        args,
    )
}

#[test]
fn deploy_tokens_are_created_used_listed_and_revoked() {
    let (_tmp, data) = temp_data_dir();
    let dev = DevUp::start_no_pull(&data, "tokens");
    for app in ["web", "api"] {
        dev.aloft(&["apps", "create", app]).ok();
    }
    let out = dev.aloft(&[
        "tokens", "create", "deploy", "-a", "web", "-x", "720h", "--name", "ci",
    ]);
    let token = out.ok().trim().to_string();
    assert!(token.starts_with("aloft_") && !token.contains(' '), "{out}");
    assert!(out.stderr.contains("deploy token for app `web`"), "{out}");

    // The deploy token sees its app only.
    let apps = with_token(&dev, &token, &["apps", "list", "--json"]).json();
    assert_eq!(apps.as_array().unwrap().len(), 1, "{apps}");
    assert_eq!(apps[0]["name"], "web");
    with_token(
        &dev,
        &token,
        &["secrets", "set", "A=1", "--stage", "-a", "web"],
    )
    .ok();
    let out = with_token(&dev, &token, &["secrets", "list", "-a", "api"]);
    assert!(out.fails().contains("api"), "{out}");
    let out = with_token(&dev, &token, &["tokens", "list"]);
    assert!(out.fails().contains("org token"), "{out}");
    let out = with_token(&dev, &token, &["apps", "create", "sneaky"]);
    assert!(out.fails().contains("deploy token"), "{out}");

    // The org's list names it, never shows it.
    let out = dev.aloft(&["tokens", "list", "--json"]);
    assert!(!out.stdout.contains(&token), "{out}");
    let list = out.json();
    let ci = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    assert_eq!(
        (ci["scope"].as_str(), ci["app"].as_str()),
        (Some("deploy"), Some("web"))
    );
    assert!(ci["expires_at"].is_string(), "{ci}");
    let id = ci["id"].as_str().unwrap();
    let out = dev.aloft(&["tokens", "list", "-a", "web"]);
    assert!(out.ok().lines().any(|l| l.starts_with(id)), "{out}");

    let out = dev.aloft(&["tokens", "revoke", id]);
    assert!(out.ok().contains(&format!("Revoked token {id}")), "{out}");
    let out = with_token(&dev, &token, &["apps", "list"]);
    assert!(out.fails().contains("revoked"), "{out}");
    let out = dev.aloft(&["tokens", "revoke", id]);
    assert!(out.fails().contains("aloft tokens list"), "{out}");
}
