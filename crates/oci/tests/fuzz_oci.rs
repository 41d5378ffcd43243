//! Fuzzing what registries and clients send about images: manifests and indexes (mutated from
//! valid OCI and Docker ones: fields removed, replaced by values of any type, added), with any
//! Content-Type, through both parsers (the host's puller, `manifest::parse` and
//! `select_platform`; the registry's `refs::parse`); and repository names, tags, digests and
//! manifest references. Properties: nothing panics; names, tags and digests that parse print
//! back to the same text and parse again to the same value.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_oci::digest::Digest;
use aloft_oci::manifest::{self, Parsed};
use aloft_oci::name::{ManifestRef, RepoName, is_valid_tag};
use aloft_oci::refs;
use proptest::prelude::*;
use serde_json::{Value, json};

const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

fn base() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D, "size": 7},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": D, "size": 32},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": D, "size": 1, "urls": ["http://x"]}
            ],
            "annotations": {"org.opencontainers.image.title": "x"}
        })),
        Just(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 9,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D, "size": 9,
                 "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}
            ]
        })),
        Just(json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": D, "size": 7},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": D, "size": 3}]
        })),
        Just(json!({"schemaVersion": 2, "manifests": []})),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(
            "application/vnd.oci.image.manifest.v1+json".to_string()
        )),
        Just(Some("application/vnd.oci.image.index.v1+json".to_string())),
        Just(Some(
            "application/vnd.docker.distribution.manifest.list.v2+json".to_string()
        )),
        Just(Some("application/json; charset=utf-8".to_string())),
        "[ -~]{0,30}".prop_map(Some),
    ]
}

/// A manifest body: a mutated valid one, sometimes cut short or with a byte changed.
fn body() -> impl Strategy<Value = Vec<u8>> {
    (
        base(),
        prop::collection::vec(edit(), 0..4),
        prop::option::of((any::<usize>(), any::<u8>())),
        prop::option::of(any::<usize>()),
    )
        .prop_map(|(mut doc, edits, poke, cut)| {
            apply(&mut doc, &edits);
            let mut bytes = serde_json::to_vec(&doc).expect("json");
            if let Some((i, b)) = poke {
                let n = bytes.len();
                bytes[i % n] = b;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #[test]
    fn fuzz_oci_manifests(bytes in body(), ct in content_type()) {
        if let Ok(Parsed::Index(index)) = manifest::parse(&bytes, ct.as_deref(), "x/y:z") {
            let _ = manifest::select_platform(&index, "x/y:z");
        }
        if let Ok(r) = refs::parse(ct.as_deref(), &bytes) {
            prop_assert!(!r.media_type.is_empty(), "a stored manifest has a type");
        }
    }

    #[test]
    fn fuzz_oci_names_round_trip(
        text in prop_oneof![
            "[a-z0-9]{1,8}(/[a-z0-9]{1,8}([._-]{1,2}[a-z0-9]{1,4})?){0,3}",
            "[a-zA-Z0-9_./:@-]{0,40}",
            "sha256:[0-9a-f]{62,66}",
            "\\PC{0,20}",
        ]
    ) {
        if let Ok(name) = RepoName::parse(&text) {
            prop_assert_eq!(name.to_string(), text.clone());
            prop_assert_eq!(RepoName::parse(&name.to_string()), Ok(name.clone()));
            prop_assert!(!name.org().is_empty() && !name.org().contains('/'));
        }
        if let Ok(r) = ManifestRef::parse(&text) {
            prop_assert_eq!(ManifestRef::parse(&r.to_string()), Ok(r.clone()));
            if let ManifestRef::Tag(tag) = &r {
                prop_assert!(is_valid_tag(tag));
            }
        }
        if let Ok(d) = Digest::parse(&text) {
            prop_assert_eq!(d.to_string(), text.clone());
            prop_assert_eq!(d.hex().len(), 64);
        }
    }
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
