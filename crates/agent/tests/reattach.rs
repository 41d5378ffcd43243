//! Agent restarts and crashes: machines outlive the agent (one `SimRuntime` shared across
//! opens), running machines are adopted without a second start, interrupted operations finish.

mod common;

use aloft_runtime::Runtime;
use common::{TestAgent, mid, sim_config};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_running_machines() {
    let mut t = TestAgent::start().await;
    let a = t.create_started(sim_config(&[])).await;
    let b = t.create_started(sim_config(&[])).await;
    let stopped = t.create_started(sim_config(&[])).await;
    t.post(&format!("{}/stop", t.machine(&stopped)), json!({}))
        .await;
    let created = t
        .create(json!({"config": sim_config(&[]), "skip_launch": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let events_before = t.events(&a).await.len();

    t.restart().await;
    for id in [&a, &b] {
        assert_eq!(t.state(id).await, "started");
        assert_eq!(t.starts(id), 1, "no second start");
        assert_eq!(t.live_runs(id), 1);
    }
    assert_eq!(
        t.events(&a).await.len(),
        events_before,
        "adopting writes no event"
    );
    assert_eq!(t.state(&stopped).await, "stopped");
    assert_eq!(t.live_runs(&stopped), 0);
    assert_eq!(t.state(&created).await, "created");
    assert_eq!(t.starts(&created), 0);

    // The new agent supervises the adopted run: a crash of the process is seen and the
    // default policy (on-failure) starts it again.
    t.rt.kill(&mid(&a)).await.unwrap();
    t.eventually("the adopted machine was restarted", || async {
        t.starts(&a) == 2 && t.live_runs(&a) == 1
    })
    .await;
    t.wait_for(&a, "started").await;
    let kinds = t.event_kinds(&a).await;
    assert_eq!(kinds[kinds.len() - 2].0, "exit");
    // And it can stop what it adopted.
    let (status, _) = t.post(&format!("{}/stop", t.machine(&b)), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(t.live_runs(&b), 0);

    // A crash (no shutdown at all) adopts the same way.
    t.crash().await;
    assert_eq!(t.state(&a).await, "started");
    assert_eq!(t.starts(&a), 2);
    assert_eq!(t.live_runs(&a), 1);
    assert_eq!(t.state(&b).await, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_a_start_is_finished_by_the_next_agent() {
    let mut t = TestAgent::start().await;
    let id = t
        .create(json!({"config": sim_config(&[]), "skip_launch": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.rt.hold_starts();
    let start = t.req(Method::POST, &format!("{}/start", t.machine(&id)));
    let pending = tokio::spawn(async move { start.send().await.map(|r| r.status()) });
    t.rt.starts_held(1).await;
    assert_eq!(t.state(&id).await, "starting");
    t.agent.crash();
    assert_eq!(pending.await.unwrap().unwrap(), 503);
    t.rt.release_starts();
    t.reopen().await;
    assert_eq!(t.state(&id).await, "started");
    assert_eq!(t.live_runs(&id), 1);
    assert_eq!(t.starts(&id), 1);
    let kinds = t.event_kinds(&id).await;
    assert_eq!(
        kinds.last().unwrap(),
        &("start".into(), "started".into(), "agent".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_launch_still_launches() {
    let mut t = TestAgent::start().await;
    t.rt.hold_starts();
    let id = t.create(json!({"config": sim_config(&[])})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.rt.starts_held(1).await;
    t.agent.crash();
    t.rt.release_starts();
    t.reopen().await;
    assert_eq!(t.state(&id).await, "started");
    assert_eq!(t.live_runs(&id), 1);
    assert_eq!(t.starts(&id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_machine_whose_run_vanished_gets_its_restart_policy() {
    let mut t = TestAgent::start().await;
    let restarts = t.create_started(sim_config(&[])).await;
    let mut no = sim_config(&[]);
    no["restart"] = json!({"policy": "no"});
    let stays = t.create_started(no).await;

    t.agent.shutdown().await;
    // The processes end while no agent runs.
    t.rt.kill(&mid(&restarts)).await.unwrap();
    t.rt.kill(&mid(&stays)).await.unwrap();
    t.reopen().await;

    assert_eq!(t.state(&restarts).await, "started");
    assert_eq!(t.starts(&restarts), 2);
    assert_eq!(t.live_runs(&restarts), 1);
    let events = t.events(&restarts).await;
    let exit = events.iter().find(|e| e["type"] == "exit").unwrap();
    assert_eq!(exit["source"], "agent");
    assert_eq!(exit["request"]["exit_event"]["exit_code"], -1);
    assert_eq!(exit["request"]["exit_event"]["requested_stop"], false);
    assert!(
        exit["request"]["message"]
            .as_str()
            .unwrap()
            .contains("while the agent was not running")
    );
    assert_eq!(events.last().unwrap()["type"], "start");

    assert_eq!(t.state(&stays).await, "stopped");
    assert_eq!(t.starts(&stays), 1);
    assert_eq!(t.live_runs(&stays), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_a_stop_is_finished_by_the_next_agent() {
    let mut t = TestAgent::start().await;
    let mut config = sim_config(&[("SIM_IGNORE_SIGTERM", "1")]);
    config["stop_config"] = json!({"timeout": "1s"});
    let id = t.create_started(config).await;
    let stop = t
        .req(Method::POST, &format!("{}/stop", t.machine(&id)))
        .json(&json!({"timeout": "30s"}));
    let pending = tokio::spawn(async move { stop.send().await.map(|r| r.status()) });
    t.eventually("the stop began", || async {
        t.state(&id).await == "stopping"
    })
    .await;
    t.agent.crash();
    // The interrupted request fails; it does not hang.
    let status = pending.await.unwrap().unwrap();
    assert_eq!(status, 503);
    assert_eq!(t.live_runs(&id), 1, "the crash itself stops nothing");
    t.reopen().await;
    assert_eq!(t.state(&id).await, "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let kinds = t.event_kinds(&id).await;
    assert_eq!(
        kinds.last().unwrap(),
        &("stop".into(), "stopped".into(), "agent".into())
    );
    let events = t.events(&id).await;
    let exit = events.iter().rev().find(|e| e["type"] == "exit").unwrap();
    assert_eq!(exit["request"]["exit_event"]["signal"], 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_writes_nothing_more() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;
    t.agent.crash();
    // The old router refuses writes; the runtime is untouched.
    let (status, body) = t.post(&format!("{}/stop", t.machine(&id)), json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(t.live_runs(&id), 1);
    // A process exit is no longer handled by the crashed agent.
    t.rt.kill(&mid(&id)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(t.starts(&id), 1);
}
