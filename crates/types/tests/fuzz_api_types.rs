//! Fuzzing the API's request bodies at the type level, as the agent reads them (the control
//! plane passes machine bodies on to it): valid bodies of every request type mutated (fields
//! removed, replaced by values of any type and size, added), deserialized with serde_json, and
//! machine configs that deserialize are validated. Properties: nothing panics; a config that
//! validates serializes and reads back as a config that validates; a validation error is a
//! 4xx with a message.
//!
//! `PROPTEST_CASES` sets the number of cases (`scripts/fuzz.sh` runs many).

use aloft_types::MachineConfig;
use aloft_types::api::{
    CreateAppRequest, CreateMachineRequest, CreateVolumeRequest, ExecRequest, LeaseRequest,
    SignalRequest, StopRequest, UpdateMachineRequest,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn machine() -> Value {
    json!({
        "name": "m", "region": "local", "lease_ttl": 30, "skip_launch": false,
        "config": {
            "image": "registry.example/web:v1",
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
            "env": {"A": "b"},
            "metadata": {"k": "v"},
            "services": [{"protocol": "tcp", "internal_port": 8080,
                          "ports": [{"port": 80, "handlers": ["http", "tls"]},
                                    {"start_port": 9000, "end_port": 9010}],
                          "concurrency": {"type": "requests", "soft_limit": 20, "hard_limit": 25},
                          "autostop": "suspend", "autostart": true, "min_machines_running": 1}],
            "checks": {"alive": {"type": "http", "port": 8080, "path": "/", "interval": "15s",
                                 "timeout": "2s", "method": "GET"}},
            "restart": {"policy": "on-failure", "max_retries": 3},
            "mounts": [{"volume": "vol_0123456789", "path": "/data"}],
            "files": [{"guest_path": "/etc/x", "raw_value": "aGk="}],
            "init": {"cmd": ["sh", "-c", "echo hi"], "entrypoint": ["/bin/sh"]},
            "stop_config": {"signal": "SIGTERM", "timeout": "5s"},
            "auto_destroy": false
        }
    })
}

fn validate(config: MachineConfig) {
    match config.validate() {
        Ok(()) => {
            let value = serde_json::to_value(&config).expect("serialize");
            let again: MachineConfig =
                serde_json::from_value(value).expect("a valid config reads back");
            assert!(again.validate().is_ok());
        }
        Err(e) => {
            assert!((400..500).contains(&e.status()), "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

fn check(kind: usize, body: &[u8]) {
    match kind {
        0 => {
            if let Ok(r) = serde_json::from_slice::<CreateMachineRequest>(body) {
                validate(r.config);
            }
        }
        1 => {
            if let Ok(r) = serde_json::from_slice::<UpdateMachineRequest>(body) {
                validate(r.config);
            }
        }
        2 => drop(serde_json::from_slice::<CreateAppRequest>(body)),
        3 => drop(serde_json::from_slice::<CreateVolumeRequest>(body)),
        4 => drop(serde_json::from_slice::<StopRequest>(body)),
        5 => drop(serde_json::from_slice::<SignalRequest>(body)),
        6 => drop(serde_json::from_slice::<ExecRequest>(body).map(|r| r.argv())),
        _ => drop(serde_json::from_slice::<LeaseRequest>(body)),
    }
}

fn base(kind: usize) -> Value {
    match kind {
        0 | 1 => machine(),
        2 => json!({"app_name": "web", "org_slug": "personal"}),
        3 => json!({"name": "data", "region": "local", "size_gb": 1}),
        4 => json!({"signal": "SIGTERM", "timeout": "5s"}),
        5 => json!({"signal": "SIGKILL"}),
        6 => json!({"cmd": "ls -la", "command": ["ls", "-la"], "timeout": 5}),
        _ => json!({"ttl": 30, "description": "x"}),
    }
}

proptest! {
    #[test]
    fn fuzz_api_types_mutated_bodies(
        kind in 0usize..8,
        edits in prop::collection::vec(edit(), 0..5),
    ) {
        let mut doc = base(kind);
        apply(&mut doc, &edits);
        check(kind, &serde_json::to_vec(&doc).expect("json"));
    }
}

/// The machine body the mutations start from is valid, so they reach validation.
#[test]
fn fuzz_api_types_base_machine_is_valid() {
    let r: CreateMachineRequest = serde_json::from_value(machine()).expect("reads");
    r.config.validate().expect("valid");
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
