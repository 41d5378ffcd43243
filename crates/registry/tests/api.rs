//! The distribution API of a standalone registry, over real HTTP on loopback: every endpoint,
//! authentication and tenancy, bad input, atomicity, uploads and their cleanup.

mod common;

use common::client::header;
use common::*;
use reqwest::{Method, StatusCode};
use std::time::Duration;

#[tokio::test]
async fn ping_challenges_anonymous_callers_and_accepts_tokens() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);

    let response = raw.anon(Method::GET, "/v2/").send().await.expect("ping");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        format!("Bearer realm=\"{}/v2/token\",service=\"aloft\"", reg.url)
    );
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let (_, code, message) = error_code(response).await;
    assert_eq!(code, "UNAUTHORIZED");
    assert!(message.contains("API token"), "{message}");

    let response = raw.req(Method::GET, "/v2/").send().await.expect("ping");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );

    let response = reg
        .raw(BROKEN_ORG_TOKEN)
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .expect("catalog");
    assert_eq!(error_code(response).await.1, "UNAUTHORIZED");

    let response = reg
        .raw("nope")
        .req(Method::GET, "/v2/")
        .send()
        .await
        .expect("ping");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(response).await.1, "UNAUTHORIZED");
}

#[tokio::test]
async fn token_endpoint_issues_a_bearer_token_for_basic_auth() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);

    let response = raw
        .anon(Method::GET, "/v2/acme/app/tags/list")
        .send()
        .await
        .expect("tags");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&response, "www-authenticate"),
        format!(
            "Bearer realm=\"{}/v2/token\",service=\"aloft\",scope=\"repository:acme/app:pull\"",
            reg.url
        )
    );
    let response = raw
        .anon(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .expect("upload");
    assert!(
        header(&response, "www-authenticate").ends_with("scope=\"repository:acme/app:pull,push\"")
    );

    let response = raw
        .req(
            Method::GET,
            "/v2/token?service=aloft&scope=repository:acme/app:pull,push",
        )
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(body["access_token"], body["token"]);
    assert!(body["expires_in"].as_u64().expect("expires_in") > 0);
    assert!(
        body["issued_at"]
            .as_str()
            .expect("issued_at")
            .ends_with('Z')
    );

    let response = reqwest::Client::new()
        .get(format!("{}/v2/", reg.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("ping");
    assert_eq!(response.status(), StatusCode::OK);

    for bad in [
        raw.anon(Method::GET, "/v2/token"),
        reg.raw("nope").req(Method::GET, "/v2/token"),
    ] {
        let response = bad.send().await.expect("token");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(header(&response, "www-authenticate").starts_with("Basic"));
    }
    // A bearer token is not accepted by the token endpoint (it wants the org token).
    let response = reqwest::Client::new()
        .get(format!("{}/v2/token", reg.url))
        .bearer_auth(&token)
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_second_client_pushes_and_pulls_with_the_token_flow() {
    let reg = TestRegistry::start().await;
    let client = reg.client(ACME_TOKEN);
    let image = TestImage::oci(1, &[10_000, 300_000]);
    let digest = client.push_image("acme/app", "v1", &image).await;
    assert_eq!(digest, image.digest());
    assert_eq!(*client.token_requests.lock(), 1, "one token, then reused");

    let pulled = client.pull_image("acme/app", "v1").await;
    assert_eq!(pulled.manifest, image.manifest);
    assert_eq!(pulled.config, image.config);
    assert_eq!(pulled.layers, image.layers);

    let (media_type, bytes, by_digest) = client
        .get_manifest("acme/app", &digest)
        .await
        .expect("by digest");
    assert_eq!(
        (media_type.as_str(), bytes, by_digest),
        (OCI_MANIFEST, image.manifest.clone(), digest.clone())
    );

    let response = client
        .request(Method::HEAD, "/v2/acme/app/manifests/v1")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "docker-content-digest"), digest);
    assert_eq!(header(&response, "content-type"), OCI_MANIFEST);
    assert_eq!(
        header(&response, "content-length"),
        image.manifest.len().to_string()
    );
    assert!(response.bytes().await.expect("body").is_empty());

    let layer = &image.layers[1];
    let response = client
        .request(
            Method::HEAD,
            &format!("/v2/acme/app/blobs/{}", digest_of(layer)),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), layer.len().to_string());
    assert_eq!(header(&response, "docker-content-digest"), digest_of(layer));
}

#[tokio::test]
async fn every_manifest_type_round_trips_byte_for_byte() {
    let reg = TestRegistry::start().await;
    let client = reg.client(ACME_TOKEN);
    let oci_a = TestImage::oci(2, &[1000]);
    let oci_b = TestImage::oci(3, &[1000]);
    let docker_a = TestImage::docker(4, &[1000]);
    let docker_b = TestImage::docker(5, &[1000]);
    for image in [&oci_a, &oci_b, &docker_a, &docker_b] {
        client
            .push_image(
                "acme/multi",
                &format!("single-{}", &image.digest()[7..15]),
                image,
            )
            .await;
    }
    // Pretty-printed JSON must be kept exactly as pushed.
    let index = serde_json::to_vec_pretty(
        &serde_json::from_slice::<serde_json::Value>(&index_of(&[&oci_a, &oci_b], OCI_INDEX))
            .expect("json"),
    )
    .expect("pretty");
    let list = index_of(&[&docker_a, &docker_b], DOCKER_LIST);
    for (tag, media_type, bytes) in [
        ("oci-index", OCI_INDEX, &index),
        ("docker-list", DOCKER_LIST, &list),
        ("docker", DOCKER_MANIFEST, &docker_a.manifest),
    ] {
        let response = client
            .push_manifest("acme/multi", tag, media_type, bytes)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{tag}");
        let digest = header(&response, "docker-content-digest");
        assert_eq!(digest, digest_of(bytes));
        assert_eq!(
            header(&response, "location"),
            format!("/v2/acme/multi/manifests/{digest}")
        );
        let (got_type, got, got_digest) = client.get_manifest("acme/multi", tag).await.expect(tag);
        assert_eq!(
            (got_type.as_str(), &got, got_digest),
            (media_type, bytes, digest)
        );
    }

    // An index whose children are not in the repository is refused.
    let orphan = TestImage::oci(6, &[10]);
    let response = client
        .push_manifest(
            "acme/multi",
            "orphan",
            OCI_INDEX,
            &index_of(&[&oci_a, &orphan], OCI_INDEX),
        )
        .await;
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    assert!(message.contains(&orphan.digest()), "{message}");
}

#[tokio::test]
async fn monolithic_chunked_and_ranged_blob_transfers() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);
    let client = reg.client(ACME_TOKEN);

    // Monolithic: POST with ?digest= and the body.
    let data = random_bytes(7, 50_000);
    let digest = digest_of(&data);
    let response = raw
        .req(
            Method::POST,
            &format!("/v2/acme/blobs/blobs/uploads/?digest={digest}"),
        )
        .body(data.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/acme/blobs/blobs/{digest}")
    );
    assert_eq!(
        client.get_blob("acme/blobs", &digest).await.expect("blob"),
        data
    );

    // Chunked, with Content-Range.
    let data = random_bytes(8, 100_000);
    let digest = client.push_blob_chunked("acme/blobs", &data, 30_000).await;
    assert_eq!(
        client.get_blob("acme/blobs", &digest).await.expect("blob"),
        data
    );

    // Ranges.
    let response = raw
        .req(Method::GET, &format!("/v2/acme/blobs/blobs/{digest}"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&response, "content-range"), "bytes 100-199/100000");
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        &data[100..200]
    );
    let response = raw
        .req(Method::GET, &format!("/v2/acme/blobs/blobs/{digest}"))
        .header("range", "bytes=-10")
        .send()
        .await
        .expect("suffix range");
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        &data[99_990..]
    );
    let response = raw
        .req(Method::GET, &format!("/v2/acme/blobs/blobs/{digest}"))
        .header("range", "bytes=200000-")
        .send()
        .await
        .expect("bad range");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&response, "content-range"), "bytes */100000");
}

#[tokio::test]
async fn chunks_out_of_order_are_refused_and_the_upload_resumes() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);
    let data = random_bytes(9, 3000);
    let digest = digest_of(&data);

    let response = raw
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = header(&response, "location");
    assert_eq!(header(&response, "docker-upload-uuid").len(), 32);
    assert_eq!(header(&response, "range"), "0-0");

    // The second chunk first: 416.
    let response = raw
        .req(Method::PATCH, &location)
        .header("content-range", "1000-1999")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .expect("patch");
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (416, "BLOB_UPLOAD_INVALID"));
    assert!(message.contains("starts at 0"), "{message}");

    // A Content-Range that does not match the body length: refused, nothing kept.
    let response = raw
        .req(Method::PATCH, &location)
        .header("content-range", "0-1999")
        .body(data[..1000].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(error_code(response).await.1, "SIZE_INVALID");

    for (start, end) in [(0, 999), (1000, 1999)] {
        let response = raw
            .req(Method::PATCH, &location)
            .header("content-range", format!("{start}-{end}"))
            .body(data[start..=end].to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "range"), format!("0-{end}"));
    }
    // A repeated chunk is out of order too.
    let response = raw
        .req(Method::PATCH, &location)
        .header("content-range", "1000-1999")
        .body(data[1000..2000].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    let response = raw
        .req(Method::GET, &location)
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&response, "range"), "0-1999");

    // The last chunk comes with the PUT.
    let response = raw
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(response.status(), StatusCode::CREATED);
    let got = reg
        .client(ACME_TOKEN)
        .get_blob("acme/app", &digest)
        .await
        .expect("blob");
    assert_eq!(got, data);
    assert_eq!(
        reg.upload_dirs(),
        0,
        "finished uploads leave nothing behind"
    );
    let response = raw
        .req(Method::GET, &location)
        .send()
        .await
        .expect("status");
    assert_eq!(error_code(response).await.1, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_wrong_digest_leaves_nothing_visible() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);
    let data = random_bytes(10, 5000);
    let real = digest_of(&data);
    let claimed = digest_of(b"something else");

    let response = raw
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let location = header(&response, "location");
    let response = raw
        .req(Method::PUT, &format!("{location}?digest={claimed}"))
        .body(data.clone())
        .send()
        .await
        .expect("put");
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (400, "DIGEST_INVALID"));
    assert!(
        message.contains(&real) && message.contains("nothing was stored"),
        "{message}"
    );

    // Monolithic POST with a wrong digest, too.
    let response = raw
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={claimed}"),
        )
        .body(data.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(response).await.1, "DIGEST_INVALID");

    for digest in [&real, &claimed] {
        let response = raw
            .req(Method::HEAD, &format!("/v2/acme/app/blobs/{digest}"))
            .send()
            .await
            .expect("head");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(!reg.blob_file(digest).exists());
    }
    assert_eq!(reg.upload_dirs(), 0);
    let response = raw
        .req(Method::GET, &location)
        .send()
        .await
        .expect("status");
    assert_eq!(error_code(response).await.1, "BLOB_UPLOAD_UNKNOWN");
    // A malformed digest is refused before anything is read.
    let response = raw
        .req(
            Method::POST,
            "/v2/acme/app/blobs/uploads/?digest=sha256:abc",
        )
        .body(data)
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(response).await.1, "DIGEST_INVALID");
}

/// A body that sends `payload`, then fails: the client goes away mid-upload.
struct BrokenBody {
    payload: Option<Vec<u8>>,
}

impl http_body::Body for BrokenBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.payload.take() {
            Some(payload) => Ok(http_body::Frame::data(bytes::Bytes::from(payload))),
            None => Err(std::io::Error::other("client died")),
        }))
    }
}

#[tokio::test]
async fn an_interrupted_upload_is_never_visible_and_resumes_after_a_restart() {
    let reg = TestRegistry::start().await;
    let raw = reg.raw(ACME_TOKEN);
    let data = random_bytes(12, 8000);
    let digest = digest_of(&data);

    // A monolithic upload that breaks off.
    let sent = raw
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={digest}"),
        )
        .header("content-length", "8000")
        .body(reqwest::Body::wrap(BrokenBody {
            payload: Some(data[..4000].to_vec()),
        }))
        .send()
        .await;
    if let Ok(response) = sent {
        assert!(!response.status().is_success());
    }
    // A session whose second chunk breaks off.
    let response = raw
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .expect("post");
    let location = header(&response, "location");
    let response = raw
        .req(Method::PATCH, &location)
        .body(data[..3000].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let _ = raw
        .req(Method::PATCH, &location)
        .header("content-length", "5000")
        .body(reqwest::Body::wrap(BrokenBody {
            payload: Some(data[3000..5000].to_vec()),
        }))
        .send()
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = raw
        .req(Method::HEAD, &format!("/v2/acme/app/blobs/{digest}"))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(!reg.blob_file(&digest).exists());

    // "Crash" and reopen on the same data dir: the session is still there, at the offset of
    // what was received, and the client resumes from there. The running hash died with the
    // process, so the registry hashes the data again from disk.
    let dir = reg.dir.clone();
    reg.stop();
    let reopened = TestRegistry::start_in(&dir, |_| {}).await;
    let raw = reopened.raw(ACME_TOKEN);
    let response = raw
        .req(Method::GET, &location)
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let range = header(&response, "range");
    let offset: usize = range
        .trim_start_matches("0-")
        .parse::<usize>()
        .expect("range")
        + 1;
    assert!(
        (3000..=5000).contains(&offset),
        "kept the first chunk: {range}"
    );
    let response = raw
        .req(Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-range", format!("{offset}-7999"))
        .body(data[offset..].to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "completed after a restart"
    );
    let got = reopened
        .client(ACME_TOKEN)
        .get_blob("acme/app", &digest)
        .await
        .expect("blob");
    assert_eq!(got, data);
    assert_eq!(reopened.upload_dirs(), 0);
}

#[tokio::test]
async fn abandoned_uploads_are_cleaned_up() {
    let reg = TestRegistry::start_with(|c| c.upload_ttl = Duration::from_secs(1)).await;
    let raw = reg.raw(ACME_TOKEN);
    let mut locations = Vec::new();
    for _ in 0..2 {
        let response = raw
            .req(Method::POST, "/v2/acme/app/blobs/uploads/")
            .send()
            .await
            .expect("post");
        let location = header(&response, "location");
        raw.req(Method::PATCH, &location)
            .body(vec![1u8; 100])
            .send()
            .await
            .expect("patch");
        locations.push(location);
    }
    assert_eq!(
        reg.registry.cleanup_uploads().await.expect("cleanup"),
        0,
        "still fresh"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Keep the second one alive.
    raw.req(Method::PATCH, &locations[1])
        .body(vec![1u8; 100])
        .send()
        .await
        .expect("patch");
    assert_eq!(reg.registry.cleanup_uploads().await.expect("cleanup"), 1);
    let response = raw
        .req(Method::GET, &locations[0])
        .send()
        .await
        .expect("status");
    assert_eq!(error_code(response).await.1, "BLOB_UPLOAD_UNKNOWN");
    let response = raw
        .req(Method::GET, &locations[1])
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // The janitor does the same on its own.
    let janitor = reg.registry.spawn_janitor();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    janitor.abort();
    assert_eq!(reg.upload_dirs(), 0);
}

#[tokio::test]
async fn bad_names_tags_and_manifests_are_refused() {
    let reg = TestRegistry::start_with(|c| c.max_manifest_bytes = 2000).await;
    let raw = reg.raw(ACME_TOKEN);
    let client = reg.client(ACME_TOKEN);
    let image = TestImage::oci(13, &[100]);

    for (path, code) in [
        ("/v2/acme/App/tags/list", "NAME_INVALID"),
        ("/v2/acme/a..b/tags/list", "NAME_INVALID"),
        ("/v2/acme/-x/manifests/v1", "NAME_INVALID"),
        ("/v2/noorg/tags/list", "NAME_INVALID"),
        ("/v2/acme/app/manifests/-bad", "TAG_INVALID"),
        ("/v2/acme/app/manifests/sha256:xyz", "DIGEST_INVALID"),
        ("/v2/acme/app/blobs/md5:abc", "DIGEST_INVALID"),
        ("/v2/acme/app/whatever/x", "UNSUPPORTED"),
    ] {
        let response = raw.req(Method::GET, path).send().await.expect(path);
        let (status, got, message) = error_code(response).await;
        assert_eq!(got, code, "{path}: {message}");
        assert!(status == 400 || status == 405, "{path}: {status}");
        assert!(!message.is_empty());
    }
    let long_tag = "t".repeat(129);
    let response = client
        .push_manifest("acme/app", &long_tag, OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(error_code(response).await.1, "TAG_INVALID");

    // A manifest referencing blobs that were never pushed.
    let response = client
        .push_manifest("acme/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    assert!(message.contains(&digest_of(&image.config)), "{message}");

    // Too large, with and without a Content-Length.
    let huge = vec![b' '; 3000];
    let response = client
        .push_manifest("acme/app", "v1", OCI_MANIFEST, &huge)
        .await;
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "MANIFEST_INVALID"));
    assert!(message.contains("at most 2000 bytes"), "{message}");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 1500]), Ok(vec![b' '; 1500])];
    let stream_body = StreamedBody(chunks.into_iter());
    let response = raw
        .req(Method::PUT, "/v2/acme/app/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap(stream_body))
        .send()
        .await
        .expect("put");
    assert_eq!(error_code(response).await.0, 413);

    // Not a manifest; a digest reference that does not match the body.
    let response = client
        .push_manifest("acme/app", "v1", OCI_MANIFEST, b"{\"schemaVersion\": 1}")
        .await;
    assert_eq!(error_code(response).await.1, "MANIFEST_INVALID");
    for blob in image.blobs() {
        client.push_blob("acme/app", blob).await;
    }
    let wrong = digest_of(b"other");
    let response = client
        .push_manifest("acme/app", &wrong, OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(error_code(response).await.1, "DIGEST_INVALID");
    let response = client
        .push_manifest("acme/app", &image.digest(), OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(response.status(), StatusCode::CREATED, "by its real digest");

    // Unknown things.
    let response = raw
        .req(Method::GET, "/v2/acme/app/manifests/nope")
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "MANIFEST_UNKNOWN");
    let response = raw
        .req(Method::GET, "/v2/acme/ghost/tags/list")
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "NAME_UNKNOWN");
    let response = raw
        .req(Method::GET, &format!("/v2/acme/app/blobs/{wrong}"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "BLOB_UNKNOWN");
    let response = raw
        .req(
            Method::PATCH,
            "/v2/acme/app/blobs/uploads/0123456789abcdef0123456789abcdef",
        )
        .send()
        .await
        .expect("patch");
    assert_eq!(error_code(response).await.1, "BLOB_UPLOAD_UNKNOWN");
    let response = raw
        .req(Method::PATCH, "/v2/acme/app/blobs/uploads/..%2F..%2Fetc")
        .send()
        .await
        .expect("patch");
    assert_eq!(error_code(response).await.1, "BLOB_UPLOAD_UNKNOWN");
}

/// A body streamed from an iterator of chunks (no Content-Length).
struct StreamedBody(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);

impl http_body::Body for StreamedBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(
            self.0
                .next()
                .map(|chunk| chunk.map(|c| http_body::Frame::data(bytes::Bytes::from(c)))),
        )
    }
}

#[tokio::test]
async fn another_orgs_repositories_are_denied_everywhere() {
    let reg = TestRegistry::start().await;
    let acme = reg.client(ACME_TOKEN);
    let image = TestImage::oci(14, &[500]);
    let digest = acme.push_image("acme/secret", "v1", &image).await;
    let layer = digest_of(&image.layers[0]);

    let other = reg.raw(OTHER_TOKEN);
    for (method, path) in [
        (Method::GET, "/v2/acme/secret/manifests/v1".to_string()),
        (Method::HEAD, format!("/v2/acme/secret/manifests/{digest}")),
        (Method::PUT, "/v2/acme/secret/manifests/v2".to_string()),
        (
            Method::DELETE,
            format!("/v2/acme/secret/manifests/{digest}"),
        ),
        (Method::GET, format!("/v2/acme/secret/blobs/{layer}")),
        (Method::HEAD, format!("/v2/acme/secret/blobs/{layer}")),
        (Method::DELETE, format!("/v2/acme/secret/blobs/{layer}")),
        (Method::GET, "/v2/acme/secret/tags/list".to_string()),
        (Method::POST, "/v2/acme/secret/blobs/uploads/".to_string()),
        // Same answer for a repository that does not exist: existence does not leak.
        (Method::GET, "/v2/acme/nothing-here/tags/list".to_string()),
    ] {
        let response = other
            .req(method.clone(), &path)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        if method != Method::HEAD {
            let (_, code, message) = error_code(response).await;
            assert_eq!(code, "DENIED", "{method} {path}");
            assert!(message.contains("`other`"), "{message}");
        }
    }
    // The other org's own repository cannot read acme's blob by digest, though storage dedups.
    let response = other
        .req(Method::GET, &format!("/v2/other/mine/blobs/{layer}"))
        .send()
        .await
        .expect("get");
    assert_eq!(error_code(response).await.1, "BLOB_UNKNOWN");
    // Nor mount it: the mount falls back to a plain upload session.
    let response = other
        .req(
            Method::POST,
            &format!("/v2/other/mine/blobs/uploads/?mount={layer}&from=acme/secret"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = other
        .req(Method::HEAD, &format!("/v2/other/mine/blobs/{layer}"))
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // Within an org, mounting works.
    let response = reg
        .raw("acme-token-2")
        .req(
            Method::POST,
            &format!("/v2/acme/copy/blobs/uploads/?mount={layer}&from=acme/secret"),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/acme/copy/blobs/{layer}")
    );
    // Mounting what `from` does not have is a plain upload.
    let response = reg
        .raw(ACME_TOKEN)
        .req(
            Method::POST,
            &format!(
                "/v2/acme/copy/blobs/uploads/?mount={}&from=acme/secret",
                digest_of(b"nope")
            ),
        )
        .send()
        .await
        .expect("mount");
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // The catalog shows each org only its own repositories.
    reg.client(OTHER_TOKEN)
        .push_image("other/mine", "v1", &TestImage::oci(15, &[10]))
        .await;
    let response = reg
        .raw(ACME_TOKEN)
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .expect("catalog");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["repositories"],
        serde_json::json!(["acme/copy", "acme/secret"])
    );
    let response = other
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .expect("catalog");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["repositories"], serde_json::json!(["other/mine"]));
}

#[tokio::test]
async fn tags_and_catalog_page_with_n_and_last() {
    let reg = TestRegistry::start().await;
    let client = reg.client(ACME_TOKEN);
    let raw = reg.raw(ACME_TOKEN);
    let image = TestImage::oci(16, &[10]);
    client.push_image("acme/paged", "v1", &image).await;
    for tag in ["b", "a", "c", "d"] {
        let response = client
            .push_manifest("acme/paged", tag, OCI_MANIFEST, &image.manifest)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = raw
        .req(Method::GET, "/v2/acme/paged/tags/list")
        .send()
        .await
        .expect("tags");
    assert!(header(&response, "link").is_empty());
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"name": "acme/paged", "tags": ["a", "b", "c", "d", "v1"]})
    );

    let mut seen = Vec::new();
    let mut next = "/v2/acme/paged/tags/list?n=2".to_string();
    loop {
        let response = raw.req(Method::GET, &next).send().await.expect("page");
        let link = header(&response, "link");
        let body: serde_json::Value = response.json().await.expect("json");
        seen.extend(
            body["tags"]
                .as_array()
                .expect("tags")
                .iter()
                .map(|t| t.as_str().expect("tag").to_string()),
        );
        if link.is_empty() {
            break;
        }
        assert!(link.ends_with(">; rel=\"next\""), "{link}");
        next = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .expect("url")
            .to_string();
    }
    assert_eq!(seen, ["a", "b", "c", "d", "v1"]);
    let response = raw
        .req(Method::GET, "/v2/acme/paged/tags/list?n=10&last=c")
        .send()
        .await
        .expect("tags");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["tags"], serde_json::json!(["d", "v1"]));
    let response = raw
        .req(Method::GET, "/v2/acme/paged/tags/list?n=x")
        .send()
        .await
        .expect("tags");
    assert_eq!(error_code(response).await.1, "PAGINATION_NUMBER_INVALID");

    client.push_image("acme/zeta", "v1", &image).await;
    client.push_image("acme/alpha/nested", "v1", &image).await;
    let response = raw
        .req(Method::GET, "/v2/_catalog?n=2")
        .send()
        .await
        .expect("catalog");
    assert_eq!(
        header(&response, "link"),
        "</v2/_catalog?n=2&last=acme/paged>; rel=\"next\""
    );
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        body["repositories"],
        serde_json::json!(["acme/alpha/nested", "acme/paged"])
    );
    let response = raw
        .req(Method::GET, "/v2/_catalog?n=2&last=acme/paged")
        .send()
        .await
        .expect("catalog");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["repositories"], serde_json::json!(["acme/zeta"]));
}

#[tokio::test]
async fn deletes_unlink_manifests_tags_and_blobs() {
    let reg = TestRegistry::start().await;
    let client = reg.client(ACME_TOKEN);
    let raw = reg.raw(ACME_TOKEN);
    let image = TestImage::oci(17, &[10]);
    let digest = client.push_image("acme/del", "v1", &image).await;
    client
        .push_manifest("acme/del", "v2", OCI_MANIFEST, &image.manifest)
        .await;

    let response = raw
        .req(Method::DELETE, "/v2/acme/del/manifests/v2")
        .send()
        .await
        .expect("delete tag");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(
        client.get_manifest("acme/del", "v1").await.is_ok(),
        "other tags stay"
    );

    let response = raw
        .req(Method::DELETE, &format!("/v2/acme/del/manifests/{digest}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    for reference in ["v1", digest.as_str()] {
        let response = raw
            .req(Method::GET, &format!("/v2/acme/del/manifests/{reference}"))
            .send()
            .await
            .expect("get");
        assert_eq!(
            error_code(response).await.1,
            "MANIFEST_UNKNOWN",
            "{reference}"
        );
    }
    let response = raw
        .req(Method::GET, "/v2/acme/del/tags/list")
        .send()
        .await
        .expect("tags");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["tags"], serde_json::json!([]));
    let response = raw
        .req(Method::DELETE, &format!("/v2/acme/del/manifests/{digest}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(error_code(response).await.1, "MANIFEST_UNKNOWN");

    let layer = digest_of(&image.layers[0]);
    let response = raw
        .req(Method::DELETE, &format!("/v2/acme/del/blobs/{layer}"))
        .send()
        .await
        .expect("delete blob");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(!client.blob_exists("acme/del", &layer).await);
    let response = raw
        .req(Method::DELETE, &format!("/v2/acme/del/blobs/{layer}"))
        .send()
        .await
        .expect("delete blob");
    assert_eq!(error_code(response).await.1, "BLOB_UNKNOWN");
}
