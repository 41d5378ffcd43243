//! Fuzzing image references (a tenant writes them in machine configs and deploys): built from
//! the parts references have (registry hosts with ports and IPv6 literals, repository paths,
//! tags, digests), then mixed with odd characters. Properties: parsing never panics; a
//! reference that parses prints as text that parses back to the same reference (with any
//! default registry and org), and its parts are valid on their own.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_image::Reference;
use proptest::prelude::*;

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("localhost/".to_string()),
        Just("127.0.0.1:5000/".to_string()),
        Just("[::1]:5000/".to_string()),
        Just("registry.example/".to_string()),
        "[a-z0-9.:-]{1,12}/",
    ]
}

fn reference() -> impl Strategy<Value = String> {
    (
        host(),
        "[a-z0-9]{1,6}((/|[._-])[a-z0-9]{1,6}){0,3}",
        prop_oneof![Just(String::new()), "(:[a-zA-Z0-9_][a-zA-Z0-9._-]{0,10})"],
        prop_oneof![
            Just(String::new()),
            "@sha256:[0-9a-f]{64}",
            "@sha256:[0-9a-fA-F]{60,66}",
            "@[a-z0-9]{1,8}:[0-9a-f]{1,10}",
        ],
        prop::option::of((any::<usize>(), "[ -~]|\\PC")),
    )
        .prop_map(|(host, path, tag, digest, poke)| {
            let mut s = format!("{host}{path}{tag}{digest}");
            if let Some((at, c)) = poke {
                let mut chars: Vec<char> = s.chars().collect();
                let at = at % (chars.len() + 1);
                chars.splice(at..at, c.chars());
                s = chars.into_iter().collect();
            }
            s
        })
}

fn check(text: &str, registry: &str, org: &str) {
    let Ok(r) = Reference::parse(text, registry, org) else {
        return;
    };
    let printed = r.to_string();
    let again = Reference::parse(&printed, "other.example:1", "otherorg")
        .unwrap_or_else(|e| panic!("{text} printed as {printed}, which does not parse: {e}"));
    assert_eq!(again, r, "{text} printed as {printed}");
    assert!(r.tag.is_some() || r.digest.is_some());
    assert!(!r.registry.is_empty() && !r.registry.contains('/'));
    assert!(!r.repository.starts_with('/') && !r.repository.contains(".."));
}

proptest! {
    #[test]
    fn fuzz_reference_round_trips(
        text in reference(),
        registry in prop_oneof![Just("127.0.0.1:5000"), Just("reg.local"), Just("localhost")],
        org in prop_oneof![Just("personal"), Just("")],
    ) {
        check(&text, registry, org);
    }

    #[test]
    fn fuzz_reference_random_text(text in "\\PC{0,60}") {
        check(&text, "127.0.0.1:5000", "personal");
    }
}
