//! The checked-in OpenAPI document (`openapi/machines-api.json`) is generated from the code; these
//! tests fail when the two drift. `UPDATE_OPENAPI=1 cargo test -p aloft-control openapi` rewrites it.

use aloft_control::{ControlPlane, ControlPlaneConfig, openapi_document};
use std::path::PathBuf;

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi/machines-api.json")
}

fn generated() -> String {
    let mut json = openapi_document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

#[test]
fn openapi_is_current() {
    let path = checked_in_path();
    let generated = generated();
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).expect("cannot write openapi/machines-api.json");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; generate it with `UPDATE_OPENAPI=1 cargo test -p aloft-control openapi`",
            path.display()
        )
    });
    if checked_in != generated {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map_or_else(
                || "one is a prefix of the other".to_string(),
                |(i, (a, b))| format!("line {}: checked in `{a}`, generated `{b}`", i + 1),
            );
        panic!(
            "openapi/machines-api.json is out of date with the code ({first_difference}); review the \
             API change and run `UPDATE_OPENAPI=1 cargo test -p aloft-control openapi`"
        );
    }
}

#[test]
fn the_document_covers_the_api() {
    let doc: serde_json::Value = serde_json::from_str(&generated()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/v1/apps",
        "/v1/apps/{app}",
        "/v1/apps/{app}/machines",
        "/v1/platform/regions",
        "/v1/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} is not documented");
    }
    assert!(
        paths
            .keys()
            .any(|p| p.starts_with("/v1/apps/{app}/machines/")),
        "the agent's machine paths are merged in"
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(
        !paths.keys().any(|p| p.starts_with("/internal")),
        "internal endpoints are not part of the public document"
    );
}

#[tokio::test]
async fn the_served_document_is_the_checked_in_file() {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::open(ControlPlaneConfig {
        data_dir: dir.path().to_path_buf(),
        internal_token: "t".into(),
        default_region: "local".into(),
        hostnames: Default::default(),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, cp.router()).await.unwrap() });

    // No token needed.
    let resp = reqwest::get(format!("http://{addr}/v1/openapi.json"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let served: serde_json::Value = resp.json().await.unwrap();
    let checked_in: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checked_in_path()).unwrap()).unwrap();
    assert_eq!(served, checked_in);
}
