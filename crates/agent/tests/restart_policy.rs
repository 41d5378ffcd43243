//! Processes that exit by themselves: restart policies, auto_destroy, OOM, stubborn processes and
//! failed starts, with the sim runtime's scripted processes.

mod common;

use common::{TestAgent, sim_config};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn with(mut config: Value, key: &str, value: Value) -> Value {
    config[key] = value;
    config
}

fn exits(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["type"] == "exit")
        .map(|e| &e["request"]["exit_event"])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_up_to_max_retries() {
    let t = TestAgent::start().await;
    let config = with(
        sim_config(&[("SIM_EXIT_AFTER_MS", "20"), ("SIM_EXIT_CODE", "3")]),
        "restart",
        json!({"policy": "on-failure", "max_retries": 2}),
    );
    let m = t.create(json!({ "config": config })).await;
    let id = m["id"].as_str().unwrap();
    // Intermediate exits go straight to `starting`, so `stopped` is only the final state.
    t.wait_for(id, "stopped").await;
    assert_eq!(t.starts(id), 3);
    assert_eq!(t.live_runs(id), 0);
    let kinds = t.event_kinds(id).await;
    let expect = |k: &str, s: &str, src: &str| (k.to_string(), s.to_string(), src.to_string());
    assert_eq!(
        kinds,
        vec![
            expect("launch", "created", "user"),
            expect("start", "started", "user"),
            expect("exit", "stopped", "agent"),
            expect("start", "started", "agent"),
            expect("exit", "stopped", "agent"),
            expect("start", "started", "agent"),
            expect("exit", "stopped", "agent"),
        ]
    );
    let events = t.events(id).await;
    let exits = exits(&events);
    for (i, exit) in exits.iter().enumerate() {
        assert_eq!(exit["exit_code"], 3);
        assert_eq!(exit["requested_stop"], false);
        assert_eq!(exit["oom_killed"], false);
        assert_eq!(exit["signal"], -1);
        assert_eq!(exit["restarts"], i);
    }
    let restart_msg = events[3]["request"]["message"].as_str().unwrap();
    assert!(
        restart_msg.contains("on-failure, restart 1 of 2"),
        "{restart_msg}"
    );

    // A user start resets the budget.
    let (status, _) = t.post(&format!("{}/start", t.machine(id)), json!({})).await;
    assert_eq!(status, 200);
    t.wait_for(id, "stopped").await;
    assert_eq!(t.starts(id), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_no_and_clean_exits_stay_stopped() {
    let t = TestAgent::start().await;
    let failing = with(
        sim_config(&[("SIM_EXIT_AFTER_MS", "20"), ("SIM_EXIT_CODE", "3")]),
        "restart",
        json!({"policy": "no"}),
    );
    let id = t.create(json!({ "config": failing })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.wait_for(&id, "stopped").await;
    // on-failure (the default) does not restart a clean exit.
    let clean = sim_config(&[("SIM_EXIT_AFTER_MS", "20"), ("SIM_EXIT_CODE", "0")]);
    let id2 = t.create(json!({ "config": clean })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.wait_for(&id2, "stopped").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for id in [&id, &id2] {
        assert_eq!(t.state(id).await, "stopped");
        assert_eq!(t.starts(id), 1);
        let kinds = t.event_kinds(id).await;
        assert_eq!(kinds.last().unwrap().0, "exit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_restarts_even_clean_exits() {
    let t = TestAgent::start().await;
    let config = with(
        sim_config(&[("SIM_EXIT_AFTER_MS", "20"), ("SIM_EXIT_CODE", "0")]),
        "restart",
        json!({"policy": "always"}),
    );
    let id = t.create(json!({ "config": config })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.eventually("restarted three times", || async { t.starts(&id) >= 4 })
        .await;
    // A user stop ends it for good.
    let stop = format!("{}/stop", t.machine(&id));
    t.eventually("stopped by the user", || async {
        t.post(&stop, json!({})).await;
        t.state(&id).await == "stopped"
    })
    .await;
    let starts = t.starts(&id);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(t.starts(&id), starts);
    assert_eq!(t.state(&id).await, "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let events = t.events(&id).await;
    assert!(
        exits(&events)
            .iter()
            .any(|e| e["exit_code"] == 0 && e["requested_stop"] == false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_destroy_after_the_last_exit() {
    let t = TestAgent::start().await;
    let config = with(
        with(
            sim_config(&[("SIM_EXIT_AFTER_MS", "20")]),
            "restart",
            json!({"policy": "no"}),
        ),
        "auto_destroy",
        json!(true),
    );
    let id = t.create(json!({ "config": config })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.wait_for(&id, "destroyed").await;
    let kinds = t.event_kinds(&id).await;
    assert_eq!(
        kinds.last().unwrap(),
        &(
            "destroy".to_string(),
            "destroyed".to_string(),
            "agent".to_string()
        )
    );
    assert!(!t.rt.knows(&common::mid(&id)));
    let (_, list) = t.get(&t.machines()).await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kills_are_reported() {
    let t = TestAgent::start().await;
    let config = with(
        sim_config(&[("SIM_OOM_AFTER_MS", "20")]),
        "restart",
        json!({"policy": "no"}),
    );
    let id = t.create(json!({ "config": config })).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.wait_for(&id, "stopped").await;
    let events = t.events(&id).await;
    let exit = exits(&events)[0];
    assert_eq!(exit["oom_killed"], true);
    assert_eq!(exit["exit_code"], 137);
    assert_eq!(exit["signal"], 9);
    assert_eq!(exit["requested_stop"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_ignores_sigterm_is_killed_after_the_timeout() {
    let t = TestAgent::start().await;
    let id = t
        .create_started(sim_config(&[("SIM_IGNORE_SIGTERM", "1")]))
        .await;
    let begun = Instant::now();
    let (status, body) = t
        .post(
            &format!("{}/stop", t.machine(&id)),
            json!({"timeout": "1s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(t.state(&id).await, "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let events = t.events(&id).await;
    let exit = exits(&events)[0];
    assert_eq!(exit["signal"], 9);
    assert_eq!(exit["requested_stop"], true);
    // A requested stop is not a crash: nothing restarts it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(t.starts(&id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_is_failed_with_a_clear_event() {
    let t = TestAgent::start().await;
    let m = t
        .create(json!({"config": sim_config(&[("SIM_FAIL_START", "1")])}))
        .await;
    let id = m["id"].as_str().unwrap();
    t.eventually("the launch failed", || async {
        t.state(id).await == "failed"
    })
    .await;
    let events = t.events(id).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "start");
    assert_eq!(last["status"], "failed");
    let msg = last["request"]["message"].as_str().unwrap();
    assert!(msg.contains("entrypoint does not exist"), "{msg}");
    assert!(msg.contains("aloft machine update"), "{msg}");
    assert_eq!(t.live_runs(id), 0);

    // Starting it again fails the same way, and says so.
    let (status, body) = t.post(&format!("{}/start", t.machine(id)), json!({})).await;
    assert_eq!(status, 500, "{body}");
    assert!(body["error"].as_str().unwrap().contains("failed"), "{body}");
    assert_eq!(t.state(id).await, "failed");

    // A fixed config and a start: running. A failed machine can also be destroyed.
    let (status, m) = t
        .post(&t.machine(id), json!({"config": sim_config(&[])}))
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["state"], "failed");
    let (status, body) = t.post(&format!("{}/start", t.machine(id)), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous_state"], "failed");
    assert_eq!(t.live_runs(id), 1);
}
