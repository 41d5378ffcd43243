//! Fuzzing chunked uploads' `Content-Range` (any client that holds a push token sends it):
//! sequences of PATCH chunks and a closing PUT against a real registry, each with a range
//! written in every form clients use (`a-b`, `bytes a-b`, `bytes=a-b/total`) or a hostile one
//! (numbers at and past `u64::MAX`, `end < start`, signs, missing parts, junk). Properties:
//!
//! - the registry never fails (no 5xx, no dropped connection: a panic in the handler would
//!   drop it);
//! - it accepts exactly the valid ranges: a range in one of the accepted forms that starts at
//!   the upload's offset and spans exactly the body is taken (202, `Range: 0-<end>`); every
//!   other range is a 4xx and leaves the upload as it was (random texts may be either);
//! - a PUT with the right digest completes the upload with exactly the bytes accepted.
//!
//! `PROPTEST_CASES` sets the number of cases (default 64 here: each case is a few HTTP
//! requests; `scripts/fuzz.sh` runs many).

mod common;

use common::{ACME_TOKEN, TestRegistry, digest_of};
use proptest::prelude::*;
use reqwest::{Method, StatusCode};

/// How a chunk's range is written.
#[derive(Debug, Clone)]
enum Range {
    /// No `Content-Range` (a streamed chunk).
    None,
    /// The right range for the chunk, in one of the accepted forms.
    Right {
        prefix: &'static str,
        total: &'static str,
    },
    /// Numbers that may be wrong (out of order, not the body's length, huge), in an accepted
    /// form: valid exactly when they are the right ones.
    Numbers { start: Number, end: Number },
    /// A malformed text.
    Text(String),
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Offset,
    OffsetPlus(u8),
    EndOfBody,
    Max,
    Any(u64),
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        Just(Number::Offset),
        (0u8..3).prop_map(Number::OffsetPlus),
        Just(Number::EndOfBody),
        Just(Number::Max),
        (0u64..3).prop_map(|d| Number::Any(u64::MAX - d)),
        any::<u64>().prop_map(Number::Any),
    ]
}

fn malformed() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0-".to_string()),
        Just("-5".to_string()),
        Just("5".to_string()),
        Just("bytes */100".to_string()),
        Just("0-18446744073709551616".to_string()),
        Just("99999999999999999999999-1".to_string()),
        Just("0--1".to_string()),
        Just("-0-0".to_string()),
        Just("0x0-0x9".to_string()),
        "[0-9 =/*a-z+-]{0,30}",
        "[ -~]{0,40}",
    ]
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        Just(Range::None),
        (
            prop_oneof![Just(""), Just("bytes "), Just("bytes=")],
            prop_oneof![Just(""), Just("/*"), Just("/100000"), Just("/x")]
        )
            .prop_map(|(prefix, total)| Range::Right { prefix, total }),
        (number(), number()).prop_map(|(start, end)| Range::Numbers { start, end }),
        malformed().prop_map(Range::Text),
    ]
}

#[derive(Debug, Clone)]
struct Step {
    range: Range,
    body: Vec<u8>,
    /// PUT (with the digest of everything accepted plus this body) instead of PATCH.
    close: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        range(),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::bool::weighted(0.15),
    )
        .prop_map(|(range, body, close)| Step { range, body, close })
}

/// The header to send for `step` at `offset`, and whether it is valid (starts at `offset`,
/// spans exactly the body); `None`: a random text, which may happen to be valid.
fn header(step: &Step, offset: u64) -> (Option<String>, Option<bool>) {
    let len = step.body.len() as u64;
    let value = |n: Number| match n {
        Number::Offset => offset,
        Number::OffsetPlus(d) => offset + u64::from(d),
        Number::EndOfBody => (offset + len).saturating_sub(1),
        Number::Max => u64::MAX,
        Number::Any(v) => v,
    };
    match &step.range {
        Range::None => (None, Some(true)),
        Range::Right { prefix, total } => {
            let end = (offset + len).saturating_sub(1);
            (
                Some(format!("{prefix}{offset}-{end}{total}")),
                Some(len > 0),
            )
        }
        Range::Numbers { start, end } => {
            let (start, end) = (value(*start), value(*end));
            let valid = len > 0 && start == offset && end.checked_sub(start) == Some(len - 1);
            (Some(format!("{start}-{end}")), Some(valid))
        }
        Range::Text(text) => (Some(text.clone()), None),
    }
}

async fn run(registry: &TestRegistry, steps: &[Step]) {
    let raw = registry.raw(ACME_TOKEN);
    let response = raw
        .req(Method::POST, "/v2/acme/fuzz/blobs/uploads/")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let mut accepted: Vec<u8> = Vec::new();
    for step in steps {
        let offset = accepted.len() as u64;
        let (range, valid) = header(step, offset);
        let mut whole = accepted.clone();
        whole.extend(&step.body);
        let (method, url) = if step.close {
            (
                Method::PUT,
                format!("{location}?digest={}", digest_of(&whole)),
            )
        } else {
            (Method::PATCH, location.clone())
        };
        let mut request = raw.req(method, &url).body(step.body.clone());
        if let Some(range) = &range {
            request = request.header("content-range", range);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{range:?}: the registry dropped the request: {e}"));
        let status = response.status();
        assert!(
            !status.is_server_error(),
            "{range:?}: {status} {}",
            response.text().await.unwrap_or_default()
        );
        // A random text that the registry took was a valid range after all (the registry
        // checks start and length itself).
        let valid = valid.unwrap_or(status.is_success());
        match (valid, step.close) {
            (true, false) => {
                assert_eq!(status, StatusCode::ACCEPTED, "{range:?}");
                accepted = whole;
                let end = (accepted.len() as u64).saturating_sub(1);
                assert_eq!(response.headers()["range"], format!("0-{end}").as_str());
            }
            (true, true) => {
                assert_eq!(status, StatusCode::CREATED, "{range:?}");
                let blob = raw
                    .req(
                        Method::GET,
                        &format!("/v2/acme/fuzz/blobs/{}", digest_of(&whole)),
                    )
                    .send()
                    .await
                    .expect("get blob");
                assert_eq!(blob.bytes().await.expect("blob").as_ref(), &whole[..]);
                return;
            }
            (false, _) => {
                assert!(status.is_client_error(), "{range:?}: {status}");
                let status = raw
                    .req(Method::GET, &location)
                    .send()
                    .await
                    .expect("status");
                let end = (accepted.len() as u64).saturating_sub(1);
                assert_eq!(status.headers()["range"], format!("0-{end}").as_str());
            }
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

#[test]
fn fuzz_content_range_upload_sequences() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = rt.block_on(TestRegistry::start());
    let config = ProptestConfig {
        cases: cases(),
        ..ProptestConfig::default()
    };
    proptest!(config, |(steps in prop::collection::vec(step(), 1..5))| {
        rt.block_on(run(&registry, &steps));
    });
}

/// Found by fuzzing: a range ending at `u64::MAX` overflowed the chunk length computation
/// (`end - start + 1`) and panicked the request's handler, dropping the connection.
#[test]
fn fuzz_content_range_regression_end_at_u64_max() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = rt.block_on(TestRegistry::start());
    for (start, end) in [(0, u64::MAX), (0, u64::MAX - 1)] {
        let step = Step {
            range: Range::Numbers {
                start: Number::Any(start),
                end: Number::Any(end),
            },
            body: b"some bytes".to_vec(),
            close: false,
        };
        rt.block_on(run(&registry, std::slice::from_ref(&step)));
        rt.block_on(run(
            &registry,
            &[Step {
                close: true,
                ..step
            }],
        ));
    }
}
