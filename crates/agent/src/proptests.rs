//! Property test of the state machine: random sequences of operations on a few machines
//! (API operations, processes exiting by themselves, agent restarts and crashes, crashes in the
//! middle of an operation) keep its invariants once things settle:
//!
//! - no machine rests in a transient state;
//! - a machine has one live run exactly when it is `started`;
//! - `destroyed` is terminal;
//! - the newest event's status is the machine's state;
//! - the store, the HTTP view and `wait` agree;
//! - no operation answers 5xx (except 503 for one a crash interrupted).

use crate::store::Record;
use crate::{Agent, AgentConfig};
use aloft_runtime::Runtime;
use aloft_runtime::sim::SimRuntime;
use aloft_types::{MachineId, MachineState};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "t";
const APP: &str = "prop";

#[derive(Debug, Clone)]
struct Setup {
    policy: &'static str,
    max_retries: u32,
    auto_destroy: bool,
}

#[derive(Debug, Clone)]
enum MachineOp {
    Start,
    Stop,
    Restart,
    Suspend,
    Update,
    Destroy,
    DestroyForce,
    SignalTerm,
}

#[derive(Debug, Clone)]
enum Op {
    Api(usize, MachineOp),
    /// The process exits by itself (killed from outside the agent).
    ProcessExit(usize),
    /// The process exits and an operation follows at once, before the exit is handled.
    ExitThen(usize, MachineOp),
    AgentRestart,
    AgentCrash,
    /// An operation is sent, the agent crashes after `yields` scheduler turns, and reopens.
    CrashDuring(usize, MachineOp, u8),
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![Just("no"), Just("always"), Just("on-failure")],
        0u32..3,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(policy, max_retries, auto_destroy)| Setup {
            policy,
            max_retries,
            auto_destroy,
        })
}

fn machine_op() -> impl Strategy<Value = MachineOp> {
    prop_oneof![
        Just(MachineOp::Start),
        Just(MachineOp::Stop),
        Just(MachineOp::Restart),
        Just(MachineOp::Suspend),
        Just(MachineOp::Update),
        Just(MachineOp::Destroy),
        Just(MachineOp::DestroyForce),
        Just(MachineOp::SignalTerm),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3, machine_op()).prop_map(|(i, o)| Op::Api(i, o)),
        2 => (0usize..3).prop_map(Op::ProcessExit),
        1 => (0usize..3, machine_op()).prop_map(|(i, o)| Op::ExitThen(i, o)),
        1 => Just(Op::AgentRestart),
        1 => Just(Op::AgentCrash),
        2 => (0usize..3, machine_op(), 0u8..8).prop_map(|(i, o, y)| Op::CrashDuring(i, o, y)),
    ]
}

struct Case {
    dir: tempfile::TempDir,
    rt: SimRuntime,
    agent: Agent,
    router: axum::Router,
    setups: Vec<Setup>,
    ids: Vec<MachineId>,
    destroyed: HashSet<MachineId>,
    version: u32,
}

fn config(dir: &std::path::Path) -> AgentConfig {
    AgentConfig {
        data_dir: dir.to_path_buf(),
        host_id: "prop-1".into(),
        host_number: 1,
        region: "local".into(),
        cpus: 64,
        memory_mb: 65536,
        agent_token: TOKEN.into(),
        peer_token: "peer".into(),
        images: None,
        registry: String::new(),
    }
}

async fn call(router: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .expect("a valid request");
    let resp = router.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("a body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON")
    };
    (status, value)
}

/// Waits until no operation has run for a little while.
async fn settle(agent: &Agent) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = agent.tasks().activity();
    let mut quiet = 0;
    while quiet < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never settled"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = agent.tasks().activity();
        if now.0 == 0 && now == last {
            quiet += 1;
        } else {
            quiet = 0;
        }
        last = now;
    }
}

impl Case {
    fn machine_config(&self, i: usize) -> Value {
        let s = &self.setups[i];
        json!({
            "image": "prop:v1",
            "env": {"VERSION": self.version.to_string()},
            "restart": {"policy": s.policy, "max_retries": s.max_retries},
            "auto_destroy": s.auto_destroy,
            "stop_config": {"timeout": "1s"},
        })
    }

    fn request(&mut self, i: usize, op: &MachineOp) -> (&'static str, String, Option<Value>) {
        let base = format!("/v1/apps/{APP}/machines/{}", self.ids[i]);
        match op {
            MachineOp::Start => ("POST", format!("{base}/start"), None),
            MachineOp::Stop => ("POST", format!("{base}/stop"), Some(json!({}))),
            MachineOp::Restart => ("POST", format!("{base}/restart"), None),
            MachineOp::Suspend => ("POST", format!("{base}/suspend"), None),
            MachineOp::Update => {
                self.version += 1;
                (
                    "POST",
                    base,
                    Some(json!({"config": self.machine_config(i)})),
                )
            }
            MachineOp::Destroy => ("DELETE", base, None),
            MachineOp::DestroyForce => ("DELETE", format!("{base}?force=true"), None),
            MachineOp::SignalTerm => (
                "POST",
                format!("{base}/signal"),
                Some(json!({"signal": "SIGTERM"})),
            ),
        }
    }

    async fn api(&mut self, i: usize, op: &MachineOp) {
        let (method, uri, body) = self.request(i, op);
        let (status, resp) = call(&self.router, method, &uri, body).await;
        assert!(
            matches!(status, 200 | 204 | 412),
            "{op:?} on machine {i}: {status} {resp}"
        );
    }

    async fn reopen(&mut self) {
        self.agent = Agent::open(
            config(self.dir.path()),
            Arc::new(self.rt.clone()),
            Default::default(),
        )
        .await
        .expect("the agent reopens");
        self.router = self.agent.router();
    }

    async fn apply(&mut self, op: &Op) {
        let n = self.ids.len();
        // An op that ends a process by itself leaves the exit to a supervisor, which may not
        // have woken yet when the op returns: settling then also waits for the exit's handling.
        let exiting = match op {
            Op::ProcessExit(i) | Op::ExitThen(i, _) | Op::Api(i, MachineOp::SignalTerm) => {
                let id = self.ids[i % n].clone();
                let starts = self.rt.starts(&id);
                Some((id, starts))
            }
            _ => None,
        };
        match op {
            Op::Api(i, o) => self.api(i % n, o).await,
            Op::ProcessExit(i) => {
                let id = self.ids[i % n].clone();
                // A destroyed machine is unknown to the runtime: nothing to kill.
                let _ = self.rt.kill(&id).await;
            }
            Op::ExitThen(i, o) => {
                let id = self.ids[i % n].clone();
                // A destroyed machine is unknown to the runtime: nothing to kill.
                let _ = self.rt.kill(&id).await;
                self.api(i % n, o).await;
            }
            Op::AgentRestart => {
                self.agent.shutdown().await;
                self.reopen().await;
            }
            Op::AgentCrash => {
                self.agent.crash();
                self.reopen().await;
            }
            Op::CrashDuring(i, o, yields) => {
                let (method, uri, body) = self.request(i % n, o);
                let router = self.router.clone();
                let pending = tokio::spawn(async move { call(&router, method, &uri, body).await });
                for _ in 0..*yields {
                    tokio::task::yield_now().await;
                }
                self.agent.crash();
                let (status, resp) = pending.await.expect("the request task");
                assert!(
                    matches!(status, 200 | 204 | 412 | 503),
                    "{o:?} interrupted by a crash: {status} {resp}"
                );
                self.reopen().await;
            }
        }
        settle(&self.agent).await;
        if let Some((id, starts)) = exiting {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let state = self.agent.store().get(&id).expect("store").map(|r| r.state);
                if state != Some(MachineState::Started) || self.rt.starts(&id) > starts {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "after {op:?}: the exit of machine {id} was never handled"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            settle(&self.agent).await;
        }
    }

    async fn check(&mut self, after: &Op) {
        for id in self.ids.clone() {
            let rec: Record = self
                .agent
                .store()
                .get(&id)
                .expect("the store answers")
                .expect("machines are never removed");
            let state = rec.state;
            assert!(
                state.is_persistent() || state == MachineState::Destroyed,
                "after {after:?}: machine {id} rests in {state}"
            );
            let live = self.rt.live_runs(&id);
            assert_eq!(
                live == 1,
                state == MachineState::Started,
                "after {after:?}: machine {id} is {state} with {live} live runs"
            );
            if self.destroyed.contains(&id) {
                assert_eq!(
                    state,
                    MachineState::Destroyed,
                    "after {after:?}: {id} revived"
                );
            }
            if state == MachineState::Destroyed {
                self.destroyed.insert(id.clone());
            }
            let events = self.agent.store().events(&id, Some(10)).expect("events");
            assert_eq!(
                events.first().map(|e| e.status.as_str()),
                Some(state.as_str()),
                "after {after:?}: machine {id} is {state} but its newest event is {:?}",
                events.first()
            );
            let uri = format!("/v1/apps/{APP}/machines/{id}");
            let (status, http) = call(&self.router, "GET", &uri, None).await;
            assert_eq!(status, 200);
            assert_eq!(http["state"], state.as_str());
            assert_eq!(http["instance_id"], rec.instance_id.as_str());
            assert_eq!(http["events"], serde_json::to_value(&events).expect("JSON"));
            if MachineState::WAITABLE.contains(&state) {
                let (status, body) = call(
                    &self.router,
                    "GET",
                    &format!("{uri}/wait?state={state}&timeout=1"),
                    None,
                )
                .await;
                assert_eq!(status, 200, "after {after:?}: wait for {state}: {body}");
            }
        }
    }
}

async fn run_case(setups: Vec<Setup>, ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let rt = SimRuntime::new();
    let agent = Agent::open(config(dir.path()), Arc::new(rt.clone()), Default::default())
        .await
        .expect("the agent opens");
    let router = agent.router();
    let mut case = Case {
        dir,
        rt,
        agent,
        router,
        setups,
        ids: Vec::new(),
        destroyed: HashSet::new(),
        version: 0,
    };
    for i in 0..case.setups.len() {
        let body = json!({"config": case.machine_config(i)});
        let (status, m) = call(
            &case.router,
            "POST",
            &format!("/v1/apps/{APP}/machines"),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{m}");
        let id = MachineId::parse(m["id"].as_str().expect("an id")).expect("a machine id");
        case.ids.push(id);
    }
    settle(&case.agent).await;
    case.check(&Op::AgentRestart).await;
    for op in &ops {
        case.apply(op).await;
        case.check(op).await;
    }
    case.agent.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_keep_the_state_machine_invariants(
        setups in prop::collection::vec(setup(), 1..=3),
        ops in prop::collection::vec(op(), 1..10),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(run_case(setups, ops));
    }
}
