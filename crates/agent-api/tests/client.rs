//! The client against a small stand-in agent: the token, the internal headers and the reply as it
//! came; and the OpenAPI document's paths are the agent's routes.

use aloft_agent_api::{AgentClient, AgentRequest, CallerHeaders, MachinesApiDoc, headers, paths};
use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, post};
use utoipa::OpenApi;

/// Answers with the headers it was sent, as JSON.
async fn echo(method: Method, headers: HeaderMap) -> Json<serde_json::Value> {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Json(serde_json::json!({
        "method": method.as_str(),
        "authorization": h("authorization"),
        "org": h(headers::ORG_HEADER),
        "network": h(headers::NETWORK_HEADER),
        "actor": h(headers::ACTOR_HEADER),
        "registry": h(headers::REGISTRY_TOKEN_HEADER),
        "nonce": h(headers::LEASE_NONCE_HEADER),
    }))
}

async fn stand_in() -> String {
    let app = Router::new()
        .route(paths::MACHINE, any(echo))
        .route(paths::IMAGES, any(echo))
        .route(
            paths::IMAGES_PRUNE,
            post(|| async { (StatusCode::CONFLICT, "busy") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/")
}

#[tokio::test]
async fn a_forwarded_request_carries_the_token_and_the_callers_headers() {
    let base = stand_in().await;
    let client = AgentClient::new(AgentClient::pool().unwrap(), &base, "secret");
    let caller = CallerHeaders {
        org: "acme".into(),
        network_id: "7".into(),
        actor: "ci".into(),
        registry_token: "aloft_x".into(),
    };
    let reply = client.get_machine(&caller, "web", "m1").await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let seen = reply.json().unwrap();
    assert_eq!(seen["authorization"], "Bearer secret");
    assert_eq!(seen["org"], "acme");
    assert_eq!(seen["network"], "7");
    assert_eq!(seen["actor"], "ci");
    assert_eq!(seen["registry"], "aloft_x");

    let mut req = AgentRequest::destroy_machine("web", "m1", true);
    req.lease_nonce = Some("n1".parse().unwrap());
    let seen = client.forward(&caller, &req).await.unwrap().json().unwrap();
    assert_eq!(
        (seen["method"].as_str(), seen["nonce"].as_str()),
        (Some("DELETE"), Some("n1"))
    );
}

#[tokio::test]
async fn internal_calls_send_no_caller_and_keep_the_reply_as_it_came() {
    let base = stand_in().await;
    let client = AgentClient::new(AgentClient::pool().unwrap(), &base, "secret");
    let seen = client.images().await.unwrap().json().unwrap();
    assert_eq!(seen["authorization"], "Bearer secret");
    assert!(seen["org"].is_null() && seen["registry"].is_null());
    let refused = client.prune_images().await.unwrap();
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(&refused.body[..], b"busy");
}

#[tokio::test]
async fn an_agent_that_is_not_there_is_a_connect_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let client = AgentClient::new(AgentClient::pool().unwrap(), &base, "t");
    let err = client.host().await.unwrap_err();
    assert!(err.is_connect());
    assert_eq!(err.url(), format!("{base}{}", paths::HOST));
}

#[test]
fn every_documented_path_is_an_agent_route() {
    let routes = [
        paths::MACHINES,
        paths::MACHINE,
        paths::MACHINE_START,
        paths::MACHINE_STOP,
        paths::MACHINE_RESTART,
        paths::MACHINE_SIGNAL,
        paths::MACHINE_SUSPEND,
        paths::MACHINE_WAIT,
        paths::MACHINE_LEASE,
        paths::MACHINE_CORDON,
        paths::MACHINE_UNCORDON,
        paths::MACHINE_METADATA,
        paths::MACHINE_METADATA_KEY,
        paths::MACHINE_EVENTS,
        paths::MACHINE_VERSIONS,
        paths::MACHINE_PS,
        paths::MACHINE_EXEC,
        paths::MACHINE_LOGS,
    ];
    let doc = MachinesApiDoc::openapi();
    let documented: Vec<&String> = doc.paths.paths.keys().collect();
    for path in &documented {
        assert!(
            routes.contains(&path.as_str()),
            "{path} is not in aloft_agent_api::paths"
        );
    }
    assert_eq!(
        documented.len(),
        routes.len(),
        "every machine route is documented"
    );
}
