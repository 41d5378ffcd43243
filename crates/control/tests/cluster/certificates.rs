//! `/v1/apps/{app}/certificates` in the reference's shape: managed (`/acme`) and custom
//! (`/custom`) certificates, the detail and its check, the paged list, partial removals, and
//! what the proxies get (`/internal/v1/certificates`).

use aloft_testkit::{Client, Cluster};
use serde_json::{Value, json};

/// A self-signed certificate and key (PEM) for `name`.
fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An expired self-signed certificate and key for `name`.
fn expired(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2001, 1, 1);
    params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

async fn acme(api: &Client, app: &str, hostname: &str) -> (u16, Value) {
    let path = format!("/v1/apps/{app}/certificates/acme");
    api.send(api.post(&path).json(&json!({ "hostname": hostname })))
        .await
}

async fn custom(api: &Client, app: &str, hostname: &str, pem: &(String, String)) -> (u16, Value) {
    let path = format!("/v1/apps/{app}/certificates/custom");
    let body = json!({"hostname": hostname, "fullchain": pem.0, "private_key": pem.1});
    api.send(api.post(&path).json(&body)).await
}

/// The hostnames of `GET /internal/v1/certificates`, each with its certificate (or null).
async fn proxy_feed(cluster: &Cluster) -> Vec<(String, Value)> {
    let internal = cluster.client().with_token(cluster.internal_token.clone());
    let (status, all) = internal
        .send(internal.get("/internal/v1/certificates"))
        .await;
    assert_eq!(status, 200, "{all}");
    all.as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["hostname"].as_str().unwrap().to_string(),
                c["certificate"].clone(),
            )
        })
        .collect()
}

fn sources(detail: &Value) -> Vec<&str> {
    detail["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect()
}

/// A managed certificate for a name the development CA signs is active at once; a custom one
/// is stored (its key never shown) and active; the detail claims no check aloft did not run.
#[tokio::test]
async fn managed_and_custom_certificates_are_added_and_shown() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;

    let (status, d) = acme(&api, "hello", "Dev.Web.TEST.").await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["hostname"], "dev.web.test");
    assert_eq!(
        (&d["status"], &d["acme_requested"]),
        (&json!("active"), &json!(true))
    );
    assert_eq!(d["certificates"][0]["source"], "fly");
    assert_eq!(d["certificates"][0]["status"], "active");
    assert_eq!(d["certificates"][0]["issuer"], "aloft development CA");
    assert_eq!(d["configured"], false);
    assert_eq!(
        d["validation"],
        json!({"dns_configured": false, "alpn_configured": false, "http_configured": false, "ownership_txt_configured": false})
    );
    assert_eq!(d["dns_requirements"]["a"], json!([]));
    assert_eq!(d["dns_requirements"]["cname"], "");
    assert!(d.get("validation_errors").is_none(), "{d}");

    let pem = self_signed("www.example.com");
    let (status, d) = custom(&api, "hello", "WWW.Example.com", &pem).await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(
        (&d["status"], &d["acme_requested"]),
        (&json!("active"), &json!(false))
    );
    assert_eq!(sources(&d), ["custom"]);
    assert_eq!(d["certificates"][0]["status"], "active");
    assert!(
        d["certificates"][0]["expires_at"]
            .as_str()
            .unwrap()
            .starts_with("4096-"),
        "{d}"
    );
    assert!(!d.to_string().contains("PRIVATE KEY"), "{d}");

    // Show and check answer the same detail; a hostname never added is a 404 naming the fix.
    for req in [
        api.get("/v1/apps/hello/certificates/www.example.com"),
        api.post("/v1/apps/hello/certificates/www.example.com/check"),
    ] {
        let (status, shown) = api.send(req).await;
        assert_eq!((status, &shown), (200, &d));
    }
    let (status, body) = api
        .send(api.get("/v1/apps/hello/certificates/nope.example.com"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("aloft certs list -a hello")
    );
    let (status, _) = api
        .send(api.post("/v1/apps/hello/certificates/nope.example.com/check"))
        .await;
    assert_eq!(status, 404);

    // One app per hostname across orgs (409); another org's app is not found (404).
    let other = api.with_token(cluster.new_org("acme").await);
    other.create_app("rival").await;
    let (status, body) = custom(
        &other,
        "rival",
        "www.example.com",
        &self_signed("www.example.com"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("remove it there first"),
        "{body}"
    );
    let (status, _) = acme(&other, "rival", "dev.web.test").await;
    assert_eq!(status, 409);
    for req in [
        other.get("/v1/apps/hello/certificates"),
        other.get("/v1/apps/hello/certificates/www.example.com"),
        other.delete("/v1/apps/hello/certificates/www.example.com"),
    ] {
        let (status, body) = other.send(req).await;
        assert_eq!(status, 404, "{body}");
    }
}

/// Removing the custom certificate keeps the managed one and the reverse; the proxies get a
/// hostname only while one of them is there, the custom one winning; a part that is not there
/// is a 404 naming the fix.
#[tokio::test]
async fn partial_removals_keep_the_other_certificate_and_the_proxies_follow() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let pem = self_signed("both.web.test");
    assert_eq!(acme(&api, "hello", "both.web.test").await.0, 201);
    let (status, d) = custom(&api, "hello", "both.web.test", &pem).await;
    assert_eq!(status, 201, "{d}");
    assert_eq!(sources(&d), ["custom", "fly"]);
    assert_eq!(d["acme_requested"], true);
    // Hosts' proxies read the feed with the internal token only; the custom one wins.
    let (status, _) = api.send(api.get("/internal/v1/certificates")).await;
    assert_eq!(status, 401);
    assert_eq!(
        proxy_feed(&cluster).await,
        [("both.web.test".into(), json!(pem.0))]
    );

    let path = "/v1/apps/hello/certificates/both.web.test";
    let (status, _) = api.send(api.delete(&format!("{path}/custom"))).await;
    assert_eq!(status, 200);
    let (_, d) = api.send(api.get(path)).await;
    assert_eq!(sources(&d), ["fly"]);
    assert_eq!(
        proxy_feed(&cluster).await,
        [("both.web.test".into(), Value::Null)]
    );
    let (status, body) = api.send(api.delete(&format!("{path}/custom"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no custom certificate"),
        "{body}"
    );

    // Stopping the managed one leaves the hostname on the app with nothing to serve it.
    let (status, _) = api.send(api.delete(&format!("{path}/acme"))).await;
    assert_eq!(status, 200);
    let (_, d) = api.send(api.get(path)).await;
    assert_eq!(
        (&d["status"], &d["acme_requested"]),
        (&json!("inactive"), &json!(false))
    );
    assert_eq!(d["certificates"], json!([]));
    assert!(proxy_feed(&cluster).await.is_empty());
    let (status, body) = api.send(api.delete(&format!("{path}/acme"))).await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("aloft certs show both.web.test"),
        "{body}"
    );

    // A custom certificate again, then the managed part goes: the custom one stays served.
    assert_eq!(acme(&api, "hello", "both.web.test").await.0, 201);
    assert_eq!(custom(&api, "hello", "both.web.test", &pem).await.0, 201);
    let (status, _) = api.send(api.delete(&format!("{path}/acme"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        proxy_feed(&cluster).await,
        [("both.web.test".into(), json!(pem.0))]
    );

    // Deleting the hostname removes everything; then it is a 404.
    let (status, _) = api.send(api.delete(path)).await;
    assert_eq!(status, 200);
    assert!(proxy_feed(&cluster).await.is_empty());
    for req in [
        api.delete(path),
        api.delete(&format!("{path}/acme")),
        api.get(path),
    ] {
        let (status, body) = api.send(req).await;
        assert_eq!(status, 404, "{body}");
    }
}

/// The list is a page of summaries by hostname: `limit`, an opaque `cursor`, `filter`, and a
/// `total_count` over every page; bad paging is a 4xx.
#[tokio::test]
async fn hostnames_are_listed_a_page_at_a_time() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (status, empty) = api.send(api.get("/v1/apps/hello/certificates")).await;
    assert_eq!(status, 200);
    assert_eq!(empty, json!({"certificates": [], "total_count": 0}));
    for name in ["e", "a", "d", "b", "c"] {
        assert_eq!(
            acme(&api, "hello", &format!("{name}.web.test")).await.0,
            201
        );
    }
    let pem = self_signed("x.other.test");
    assert_eq!(custom(&api, "hello", "x.other.test", &pem).await.0, 201);

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let q = format!("/v1/apps/hello/certificates?limit=2&cursor={cursor}&filter=web");
        let (status, page) = api.send(api.get(&q)).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["total_count"], 5);
        for c in page["certificates"].as_array().unwrap() {
            seen.push(c["hostname"].as_str().unwrap().to_string());
            assert_eq!(
                (&c["has_fly_certificate"], &c["status"]),
                (&json!(true), &json!("active"))
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "a.web.test",
            "b.web.test",
            "c.web.test",
            "d.web.test",
            "e.web.test"
        ]
    );

    let (_, all) = api.send(api.get("/v1/apps/hello/certificates")).await;
    assert_eq!(all["total_count"], 6);
    assert!(all.get("next_cursor").is_none(), "{all}");
    let x = &all["certificates"][5];
    assert_eq!(x["hostname"], "x.other.test");
    assert_eq!(
        (&x["has_custom_certificate"], &x["acme_requested"]),
        (&json!(true), &json!(false))
    );
    for flag in [
        "configured",
        "acme_dns_configured",
        "ownership_txt_configured",
    ] {
        assert_eq!(x[flag], false, "{flag}");
    }
    assert!(!all.to_string().contains("PRIVATE KEY"), "{all}");

    for (query, status, says) in [
        ("limit=1001", 422, "page with `cursor`"),
        ("limit=-1", 400, "query string"),
        ("limit=abc", 400, "query string"),
        (
            &format!("filter={}", "a".repeat(300)) as &str,
            422,
            "longer than a hostname",
        ),
        (
            &format!("cursor={}", "a".repeat(300)) as &str,
            422,
            "longer than a hostname",
        ),
    ] {
        let (got, body) = api
            .send(api.get(&format!("/v1/apps/hello/certificates?{query}")))
            .await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
}

/// Bad hostnames, certificates and bodies are a 4xx naming the field and the fix; a managed
/// certificate for a real domain is refused until this cloud has an ACME issuer.
#[tokio::test]
async fn bad_hostnames_and_certificates_are_refused_saying_why() {
    let cluster = Cluster::start().await;
    let api = cluster.client();
    api.create_app("hello").await;
    let (cert, key) = self_signed("a.example.com");
    let (_, other_key) = self_signed("b.example.com");
    let (stale_cert, stale_key) = expired("a.example.com");
    let long = format!("{}.example.com", "a".repeat(250));
    let acme_cases = [
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
        (json!({"hostname": long}), "hostname", "longer than 253"),
        (
            json!({"hostname": "www.google.com"}),
            "hostname",
            "no ACME issuer yet",
        ),
    ];
    for (body, field, why) in acme_cases {
        let (status, resp) = api
            .send(api.post("/v1/apps/hello/certificates/acme").json(&body))
            .await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert_eq!(resp["field"], field, "{resp}");
        assert!(resp["error"].as_str().unwrap().contains(why), "{resp}");
    }
    let (_, resp) = acme(&api, "hello", "www.google.com").await;
    assert!(
        resp["error"]
            .as_str()
            .unwrap()
            .contains("certificates/custom"),
        "{resp}"
    );

    let big = "x".repeat(70_000);
    let custom_cases = [
        (
            json!({"hostname": "a.example.com", "fullchain": cert, "private_key": other_key}),
            "does not belong",
        ),
        (
            json!({"hostname": "a.example.com", "fullchain": "junk", "private_key": key}),
            "no certificate",
        ),
        (
            json!({"hostname": "z.example.com", "fullchain": cert, "private_key": key}),
            "does not name z.example.com",
        ),
        (
            json!({"hostname": "a.example.com", "fullchain": stale_cert, "private_key": stale_key}),
            "expired at 2002-01-01",
        ),
        (
            json!({"hostname": "a.example.com", "fullchain": big, "private_key": key}),
            "more than the 65536",
        ),
        (
            json!({"hostname": "a.example.com", "fullchain": cert, "private_key": big}),
            "more than the 16384",
        ),
    ];
    for (body, why) in custom_cases {
        let (status, resp) = api
            .send(api.post("/v1/apps/hello/certificates/custom").json(&body))
            .await;
        assert_eq!(status, 422, "{resp}");
        assert!(
            resp["error"].as_str().unwrap().contains(why),
            "{why}: {resp}"
        );
        assert!(!resp["field"].as_str().unwrap().is_empty(), "{resp}");
    }
    // The old shape (a certificate in the ACME request) and a missing field are refused.
    let (status, resp) = api
        .send(
            api.post("/v1/apps/hello/certificates/acme").json(
                &json!({"hostname": "a.example.com", "certificate": cert, "private_key": key}),
            ),
        )
        .await;
    assert!((400..500).contains(&status), "{resp}");
    let (status, resp) = api
        .send(
            api.post("/v1/apps/hello/certificates/custom")
                .json(&json!({"hostname": "a.example.com"})),
        )
        .await;
    assert!((400..500).contains(&status), "{resp}");
    let (status, _) = acme(&api, "nope", "a.web.test").await;
    assert_eq!(status, 404);
    // Nothing was stored by any of these.
    let (_, list) = api.send(api.get("/v1/apps/hello/certificates")).await;
    assert_eq!(list["total_count"], 0, "{list}");
}
