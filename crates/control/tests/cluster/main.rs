//! The control plane through real HTTP against an in-process cluster (control plane + sim-runtime
//! agents from `aloft-testkit`): auth and org isolation, apps, every machine operation through the
//! gateway, placement, volumes and restarts.

mod apps;
mod auth;
mod certificates;
mod ip_assignments;
mod machines;
mod placement;
mod releases;
mod restart;
mod volume_settings;
mod volumes;

use aloft_testkit::Client;
use serde_json::{Value, json};

/// A create body for a small machine of `image`.
fn machine_body(image: &str) -> Value {
    json!({ "config": { "image": image } })
}

/// The path of a machine (or of one of its operations, with `suffix` like `/stop`).
fn machine_path(app: &str, id: &str, suffix: &str) -> String {
    format!("/v1/apps/{app}/machines/{id}{suffix}")
}

/// Creates a machine and returns its id.
async fn create_machine(api: &Client, app: &str, body: Value) -> String {
    let m = api.create_machine(app, body).await;
    m["id"].as_str().expect("the machine has an id").to_string()
}

/// Waits (through the gateway) until the machine is in `state`.
async fn wait_for(api: &Client, app: &str, id: &str, state: &str) {
    let (status, body) = api
        .send(api.get(&machine_path(
            app,
            id,
            &format!("/wait?state={state}&timeout=10"),
        )))
        .await;
    assert_eq!(status, 200, "waiting for {id} to be {state}: {body}");
}

/// The machine as the gateway returns it.
async fn get_machine(api: &Client, app: &str, id: &str) -> Value {
    let (status, body) = api.send(api.get(&machine_path(app, id, ""))).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The ids of `GET /v1/apps/{app}/machines{query}`, in order.
async fn list_ids(api: &Client, app: &str, query: &str) -> Vec<String> {
    let (status, body) = api
        .send(api.get(&format!("/v1/apps/{app}/machines{query}")))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .expect("a list")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}
