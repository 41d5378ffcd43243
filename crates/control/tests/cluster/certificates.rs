use aloft_testkit::Cluster;
use serde_json::json;

/// A self-signed certificate and key (PEM) for `name`.
fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn hostnames_are_added_listed_and_removed_without_their_keys() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (cert, key) = self_signed("www.example.com");
    let (status, body) = api
        .send(api.post("/v1/apps/hello/certificates").json(&json!({
            "hostname": "WWW.Example.com", "certificate": cert, "private_key": key,
        })))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["hostname"], "www.example.com");
    assert_eq!(body["source"], "uploaded");
    let (status, body) = api
        .send(
            api.post("/v1/apps/hello/certificates")
                .json(&json!({"hostname": "dev.web.test"})),
        )
        .await;
    assert_eq!(
        (status, body["source"].as_str()),
        (201, Some("development-ca"))
    );

    let (status, list) = api.send(api.get("/v1/apps/hello/certificates")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dev.web.test", "www.example.com"]);
    assert!(!list.to_string().contains("PRIVATE KEY"), "{list}");
    // Hosts' proxies get them with their keys, with the internal token only.
    let (status, _) = api.send(api.get("/internal/v1/certificates")).await;
    assert_eq!(status, 401);
    let internal = api.with_token(cluster.internal_token.clone());
    let (status, all) = internal
        .send(internal.get("/internal/v1/certificates"))
        .await;
    assert_eq!(status, 200, "{all}");
    let www = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hostname"] == "www.example.com")
        .expect("listed");
    assert_eq!(
        (&www["app"], &www["certificate"]),
        (&json!("hello"), &json!(cert))
    );
    assert_eq!(www["private_key"], json!(key));

    // One app per hostname, across orgs.
    let other = api.with_token(cluster.new_org("acme").await);
    other.create_app("rival").await;
    let (cert, key) = self_signed("www.example.com");
    let (status, body) = other
        .send(other.post("/v1/apps/rival/certificates").json(&json!({
            "hostname": "www.example.com", "certificate": cert, "private_key": key,
        })))
        .await;
    assert_eq!(status, 409, "{body}");

    let (status, _) = api
        .send(api.delete("/v1/apps/hello/certificates/www.example.com"))
        .await;
    assert_eq!(status, 200);
    let (status, body) = api
        .send(api.delete("/v1/apps/hello/certificates/www.example.com"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("aloft certs list"));
}

#[tokio::test]
async fn bad_hostnames_and_certificates_are_422_saying_why() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (cert, _) = self_signed("a.example.com");
    let (_, other_key) = self_signed("b.example.com");
    for (body, field, why) in [
        (
            json!({"hostname": "localhost"}),
            "hostname",
            "not a DNS name",
        ),
        (
            json!({"hostname": "web.localhost"}),
            "hostname",
            "served already",
        ),
        (
            json!({"hostname": "under_score.example.com"}),
            "hostname",
            "not a DNS name",
        ),
        // The development CA signs only reserved names (its name constraints): a real
        // domain needs its own certificate.
        (
            json!({"hostname": "www.google.com"}),
            "certificate",
            "upload its certificate and key (`aloft certs add www.google.com --cert",
        ),
        (
            json!({"hostname": "a.example.com", "certificate": cert}),
            "certificate",
            "both",
        ),
        (
            json!({"hostname": "a.example.com", "certificate": cert, "private_key": other_key}),
            "certificate",
            "does not belong",
        ),
        (
            json!({"hostname": "a.example.com", "certificate": "junk", "private_key": other_key}),
            "certificate",
            "no certificate",
        ),
    ] {
        let (status, resp) = api
            .send(api.post("/v1/apps/hello/certificates").json(&body))
            .await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert_eq!(resp["field"], field, "{resp}");
        assert!(resp["error"].as_str().unwrap().contains(why), "{resp}");
    }
    let (status, _) = api
        .send(
            api.post("/v1/apps/nope/certificates")
                .json(&json!({"hostname": "a.example.com"})),
        )
        .await;
    assert_eq!(status, 404);
}
