//! Fuzzing `fly-replay` values: a machine (tenant code) writes this header and the proxy acts
//! on it. Values are built from the header's real keys and values (quoted lists, durations,
//! case and spacing variants, unknown keys), then mixed with random text. Properties:
//!
//! - parsing never panics, and an error is a sentence;
//! - an accepted value names a target, never both `instance` and `prefer_instance`, has
//!   lowercase non-empty regions, and a timeout the proxy can add to the current time (a
//!   machine once crashed the request's task with `timeout=18446744073709551615`);
//! - a replay written out parses back to itself;
//! - the `fly-replay-src` made from an accepted value is a valid header value.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_proxy::replay::{self, Fallback, Replay};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("region".to_string()),
        Just("REGION".to_string()),
        Just("instance".to_string()),
        Just("prefer_instance".to_string()),
        Just("app".to_string()),
        Just("elsewhere".to_string()),
        Just("state".to_string()),
        Just("timeout".to_string()),
        Just("fallback".to_string()),
        "[a-z_]{1,10}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ams".to_string()),
        Just("any".to_string()),
        Just("\"ams, sjc\"".to_string()),
        Just("\"\"".to_string()),
        Just(",,".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("force_self".to_string()),
        Just("prefer_self".to_string()),
        Just("18446744073709551615".to_string()),
        Just("584942417355y".to_string()),
        Just("9999999999999999999999h".to_string()),
        "[0-9]{1,20}(ms|s|m|h|d|y|us|ns)?",
        "[0-9a-f]{14}",
        "[ -~&&[^;]]{0,30}",
    ]
}

/// `key=value` pairs joined by `;`, with odd spacing, and sometimes a random fragment.
fn header_value() -> impl Strategy<Value = String> {
    (
        prop::collection::vec((key(), value(), " {0,2}", "=|= | =|"), 0..6),
        "[ -~]{0,20}",
        prop::bool::weighted(0.2),
    )
        .prop_map(|(pairs, junk, with_junk)| {
            let mut parts: Vec<String> = pairs
                .into_iter()
                .map(|(k, v, pad, eq)| {
                    let eq = if eq.is_empty() { "=" } else { eq.as_str() };
                    format!("{pad}{k}{eq}{v}{pad}")
                })
                .collect();
            if with_junk {
                parts.push(junk);
            }
            parts.join(";")
        })
}

fn check(value: &str) {
    match replay::parse(value) {
        Ok(r) => {
            assert!(
                !r.regions.is_empty()
                    || r.instance.is_some()
                    || r.prefer_instance.is_some()
                    || r.app.is_some()
                    || r.elsewhere
                    || value.to_ascii_lowercase().contains("region"),
                "{value}: no target"
            );
            assert!(r.instance.is_none() || r.prefer_instance.is_none());
            for region in &r.regions {
                assert!(!region.is_empty() && *region == region.to_ascii_lowercase());
            }
            if let Some(t) = r.timeout {
                assert!(
                    Instant::now().checked_add(t).is_some() && t <= replay::MAX_TIMEOUT,
                    "{value}: timeout {t:?}"
                );
            }
            let src = replay::source("m1", "ams", 17, r.state.as_deref());
            assert!(
                http::HeaderValue::from_str(&src).is_ok(),
                "{value}: fly-replay-src `{src}`"
            );
        }
        Err(why) => assert!(!why.is_empty()),
    }
}

/// A valid replay, as a machine would mean it.
fn replay() -> impl Strategy<Value = Replay> {
    (
        prop::collection::vec("[a-z]{3}", 0..3),
        prop::option::of("[0-9a-f]{14}"),
        prop::bool::ANY,
        prop::option::of("[a-z][a-z0-9-]{0,20}"),
        prop::option::of("[a-zA-Z0-9_-]{1,20}"),
        prop::bool::ANY,
        prop::option::of(0u64..=300_000),
        prop::option::of(prop_oneof![
            Just(Fallback::ForceSelf),
            Just(Fallback::PreferSelf)
        ]),
    )
        .prop_map(
            |(regions, instance, prefer, app, state, elsewhere, timeout, fallback)| {
                let (instance, prefer_instance) = if prefer {
                    (None, instance)
                } else {
                    (instance, None)
                };
                Replay {
                    regions,
                    instance,
                    prefer_instance,
                    app,
                    state,
                    elsewhere,
                    timeout: timeout.map(Duration::from_millis),
                    fallback,
                }
            },
        )
        .prop_filter("names a target", |r| {
            !r.regions.is_empty()
                || r.instance.is_some()
                || r.prefer_instance.is_some()
                || r.app.is_some()
                || r.elsewhere
        })
}

fn write(r: &Replay) -> String {
    let mut parts = Vec::new();
    if !r.regions.is_empty() {
        parts.push(format!("region=\"{}\"", r.regions.join(", ")));
    }
    let fields = [
        ("instance", &r.instance),
        ("prefer_instance", &r.prefer_instance),
        ("app", &r.app),
        ("state", &r.state),
    ];
    for (key, v) in fields {
        if let Some(v) = v {
            parts.push(format!("{key}={v}"));
        }
    }
    if r.elsewhere {
        parts.push("elsewhere=true".into());
    }
    if let Some(t) = r.timeout {
        parts.push(format!("timeout={}ms", t.as_millis()));
    }
    match r.fallback {
        Some(Fallback::ForceSelf) => parts.push("fallback=force_self".into()),
        Some(Fallback::PreferSelf) => parts.push("fallback=prefer_self".into()),
        None => {}
    }
    parts.join("; ")
}

proptest! {
    #[test]
    fn fuzz_replay_values(value in header_value()) {
        check(&value);
    }

    #[test]
    fn fuzz_replay_random_text(value in "[\t -~]{0,80}") {
        check(&value);
    }

    #[test]
    fn fuzz_replay_round_trips(r in replay()) {
        let text = write(&r);
        prop_assert_eq!(replay::parse(&text), Ok(r), "{}", text);
    }
}

/// Found by fuzzing: a timeout too large to add to the current time panicked the request's
/// task when the proxy computed the replay's deadline. Now it is refused with the limit.
#[test]
fn fuzz_replay_regression_huge_timeouts_are_refused() {
    for value in [
        "region=ams;timeout=18446744073709551615",
        "region=ams;timeout=500000y",
        "region=ams;timeout=2h",
    ] {
        let err = replay::parse(value).expect_err(value);
        assert!(err.contains("at most 5m"), "{value}: {err}");
    }
    assert!(replay::parse("region=ams;timeout=60s").is_ok());
}
