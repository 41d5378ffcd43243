//! Fuzzing fly.toml (users write it, and a platform built on aloft may take it from its own
//! users): a file using every section of the reference is turned into a document, mutated
//! (keys removed, values replaced by values of any type and size: huge numbers, negative
//! sizes, odd durations and strings; keys added), written back as TOML, and sometimes cut or
//! poked as text. Properties: `parse` never panics; a config it accepts gives, for every process
//! group, a machine config or an error, never a panic; errors name a line or a key.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_appconfig::{ConfigError, parse};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A fly.toml using every section of the reference (shared with tests/config.rs).
const FULL: &str = include_str!("full.fly.toml");

/// The document: FULL (as JSON), mutated, written back as TOML; `None` when TOML cannot hold
/// the result (a null).
fn document() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(edit(), 0..5),
        prop::option::of((any::<usize>(), "[ -~\n]{0,3}")),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(edits, poke, cut)| {
            let mut doc: Value = toml::from_str(FULL).expect("FULL is TOML");
            apply(&mut doc, &edits);
            let mut text = toml::to_string(&doc).unwrap_or_else(|_| FULL.to_string());
            if let Some((at, s)) = poke {
                let at = floor_char_boundary(&text, at % (text.len() + 1));
                text.insert_str(at, &s);
            }
            if let Some(cut) = cut {
                let at = floor_char_boundary(&text, cut % (text.len() + 1));
                text.truncate(at);
            }
            text
        })
}

fn floor_char_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn check(text: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    match parse(&dir.path().join("fly.toml"), text) {
        Ok(loaded) => {
            for group in loaded.config.groups() {
                let _ = loaded
                    .config
                    .machine_config(&group, "registry.example/app:v1", dir.path());
            }
        }
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty());
            for p in problems {
                assert!(!p.message.is_empty());
            }
        }
        Err(e) => panic!("parse gave {e}"),
    }
}

proptest! {
    #[test]
    fn fuzz_flytoml_mutated(text in document()) {
        check(&text);
    }

    #[test]
    fn fuzz_flytoml_random_text(text in "[ -~\n]{0,200}") {
        check(&text);
    }
}

#[test]
fn fuzz_flytoml_unmutated_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let doc: Value = toml::from_str(FULL).expect("FULL is TOML");
    let text = toml::to_string(&doc).expect("TOML");
    parse(&dir.path().join("fly.toml"), &text).expect("valid");
}

/// A JSON value of any shape, with the numbers and strings that break parsers.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(-1)),
        Just(json!(1e308)),
        Just(json!(0.5)),
        "[ -~]{0,16}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        Just(json!("")),
        Just(json!("../../etc/passwd")),
        Just(json!(
            "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        )),
        Just(json!("99999999999999999999s")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a JSON document, at its `at`-th node (pre-order, modulo the node count).
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, Value),
    Remove(usize),
    Insert(usize, String, Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any_json()).prop_map(|(at, v)| Edit::Replace(at, v)),
        any::<usize>().prop_map(Edit::Remove),
        (any::<usize>(), "[a-z_]{1,10}", any_json()).prop_map(|(at, k, v)| Edit::Insert(at, k, v)),
    ]
}

fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{here}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn apply(doc: &mut Value, edits: &[Edit]) {
    for e in edits {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        let at = match e {
            Edit::Replace(at, _) | Edit::Remove(at) | Edit::Insert(at, _, _) => {
                all[at % all.len()].clone()
            }
        };
        match e {
            Edit::Replace(_, v) => {
                if let Some(slot) = doc.pointer_mut(&at) {
                    *slot = v.clone();
                }
            }
            Edit::Remove(_) => {
                let Some((parent, last)) = at.rsplit_once('/') else {
                    continue;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            Edit::Insert(_, k, v) => {
                if let Some(Value::Object(map)) = doc.pointer_mut(&at) {
                    map.insert(k.clone(), v.clone());
                }
            }
        }
    }
}
