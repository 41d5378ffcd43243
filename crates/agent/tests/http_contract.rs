//! The agent's HTTP contract, through a real server on 127.0.0.1:0 and the sim runtime.

mod common;

use common::{APP, TestAgent, sim_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn assert_error(body: &Value) {
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "not an error body: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_token_is_required() {
    let t = TestAgent::start().await;
    let url = format!("{}{}", t.url, t.machines());
    let resp = t.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");

    let resp = t
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_error(&body);

    let resp = t
        .client
        .get(&url)
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (status, body) = t.get(&t.machines()).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([]));
}

/// Another host's key (the peer key) opens only the autostart of a machine: it cannot list,
/// create, exec or destroy (403), and the agent key opens everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_key_opens_only_autostart() {
    let t = TestAgent::start().await;
    let peer = |method: Method, path: &str| {
        t.client
            .request(method, format!("{}{path}", t.url))
            .bearer_auth(common::PEER_TOKEN)
    };
    let m = t
        .send(
            t.req(Method::POST, &t.machines())
                .header("x-aloft-org", "acme")
                .header("x-aloft-network-id", "5")
                .json(&json!({"config": {"image": "a"}, "region": "local"})),
        )
        .await;
    let id = m.1["id"].as_str().unwrap().to_string();
    let machine = format!("{}/{id}", t.machines());
    for (method, path) in [
        (Method::GET, t.machines()),
        (Method::DELETE, format!("{machine}?force=true")),
        (Method::POST, format!("{machine}/stop")),
        (Method::POST, format!("{machine}/exec")),
        (Method::GET, "/internal/v1/host".to_string()),
        (
            Method::GET,
            format!("/internal/v1/apps/{APP}/machines/{id}/autostart"),
        ),
        (
            Method::POST,
            format!("/internal/v1/apps/{APP}/machines/{id}/autostart/x"),
        ),
    ] {
        let resp = peer(method.clone(), &path).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
    }
    let resp = peer(
        Method::POST,
        &format!("/internal/v1/apps/{APP}/machines/{id}/autostart"),
    )
    .send()
    .await
    .unwrap();
    assert!(
        resp.status().is_success(),
        "autostart with the peer key: {}",
        resp.status()
    );
    let (status, _) = t.get(&machine).await;
    assert_eq!(status, 200, "the agent key still opens everything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_answers_created_then_launches() {
    let t = TestAgent::start().await;
    let m = t
        .send(
            t.req(Method::POST, &t.machines())
                .header("x-aloft-org", "acme")
                .header("x-aloft-network-id", "5")
                .json(&json!({"config": {"image": "registry.local/acme/hello:v1", "metadata": {"role": "web"}}, "name": "web-1", "region": "local"})),
        )
        .await;
    assert_eq!(m.0, 200, "{}", m.1);
    let m = m.1;
    let id = m["id"].as_str().unwrap();
    assert_eq!(id.len(), 14);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(m["name"], "web-1");
    assert_eq!(m["state"], "created");
    assert_eq!(m["region"], "local");
    assert_eq!(m["app_name"], APP);
    assert_eq!(m["host_id"], "local-1");
    assert_eq!(m["host_status"], "ok");
    assert_eq!(m["cordoned"], false);
    assert!(m.get("nonce").is_none(), "{m}");
    // network 5, host 7, first machine on this host.
    assert_eq!(m["private_ip"], "fdaa:0:5:0:7:0:1:2");
    assert_eq!(
        m["image_ref"],
        json!({"registry": "registry.local", "repository": "acme/hello", "tag": "v1", "digest": ""})
    );
    assert_eq!(m["config"]["metadata"]["role"], "web");
    assert_eq!(m["events"][0]["type"], "launch");
    assert_eq!(m["events"][0]["status"], "created");
    assert_eq!(m["events"][0]["source"], "user");
    assert!(m["instance_id"].as_str().unwrap().len() == 26);
    assert!(m["created_at"].as_str().unwrap().ends_with('Z'));

    t.wait_for(id, "started").await;
    let (_, m) = t.get(&t.machine(id)).await;
    assert_eq!(m["state"], "started");
    assert_eq!(m["events"][0]["type"], "start");
    assert_eq!(m["events"][0]["status"], "started");
    assert_eq!(t.live_runs(id), 1);
    assert_eq!(t.starts(id), 1);

    // A second machine gets the next address; a generated name when none is given.
    let m2 = t
        .create(json!({"config": {"image": "nginx"}, "skip_launch": true}))
        .await;
    assert_eq!(m2["private_ip"], "fdaa:0:1:0:7:0:2:2");
    assert!(!m2["name"].as_str().unwrap().is_empty());
    assert_eq!(m2["state"], "created");
    assert_eq!(m2["image_ref"]["tag"], "latest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_400_413_and_422() {
    let t = TestAgent::start().await;
    // Malformed JSON.
    let (status, body) = t
        .send(t.req(Method::POST, &t.machines()).body("{nope"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body);
    // Missing body.
    let (status, body) = t.send(t.req(Method::POST, &t.machines())).await;
    assert_eq!(status, 400, "{body}");
    // Invalid values name the field.
    let (status, body) = t
        .post(
            &t.machines(),
            json!({"config": {"image": "a", "guest": {"cpus": 3}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "config.guest.cpus");
    assert!(body["allowed"].as_array().is_some_and(|a| !a.is_empty()));
    let (status, body) = t
        .post(
            &t.machines(),
            json!({"config": {"image": "a", "guest": {"cpu_kind": "turbo"}}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "config.guest.cpu_kind");
    let (status, body) = t
        .post(&t.machines(), json!({"config": {"image": ""}}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "config.image");
    let (status, body) = t
        .post(
            &t.machines(),
            json!({"config": {"image": "a"}, "region": "ams"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "region");
    let (status, body) = t
        .post(
            &t.machines(),
            json!({"config": {"image": "a"}, "lease_ttl": 0}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "lease_ttl");
    let (status, body) = t
        .post(
            &t.machines(),
            json!({"config": {"image": "a"}, "name": "bad name"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "name");
    let (status, body) = t
        .send(
            t.req(Method::POST, &t.machines())
                .header("x-aloft-network-id", "lots")
                .json(&json!({"config": {"image": "a"}})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Over 1 MiB.
    let big = json!({"config": {"image": "a", "env": {"BIG": "x".repeat(2 << 20)}}});
    let (status, body) = t.post(&t.machines(), big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("1 MiB"), "{body}");
    // Nothing was created by any of these.
    let (_, list) = t
        .get(&format!("{}?include_deleted=true", t.machines()))
        .await;
    assert_eq!(list, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_host_answers_503() {
    // 2 cpus, 4096 MB. Shared CPUs are oversubscribed: memory is what fills the host.
    let t = TestAgent::with_capacity(2, 4096).await;
    let shared = json!({"config": {"image": "a", "guest": {"cpus": 1, "memory_mb": 1024}}, "skip_launch": true});
    for _ in 0..3 {
        t.create(shared.clone()).await;
    }
    let perf = |cpus: u32| json!({"config": {"image": "a", "guest": {"cpu_kind": "performance", "cpus": cpus, "memory_mb": 2048 * cpus}}, "skip_launch": true});
    // 1024 MB left: a performance guest needs 2048.
    let (status, body) = t.post(&t.machines(), perf(1)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "insufficient_capacity", "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("host local-1 has no room for performance-1x"),
        "{msg}"
    );
    let (status, body) = t.post(&t.machines(), shared.clone()).await;
    assert_eq!(status, 200, "a fourth shared guest fits in memory: {body}");
    let (status, body) = t.post(&t.machines(), shared.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("shared-cpu-1x"),
        "{body}"
    );
    let (_, info) = t.get("/internal/v1/host").await;
    assert_eq!(
        info["allocated_cpus"], 0,
        "shared guests hold no dedicated cpus"
    );
    assert_eq!(info["allocated_memory_mb"], 4096);

    // Dedicated CPUs are the limit for performance guests.
    let t2 = TestAgent::with_capacity(2, 65536).await;
    t2.create(perf(2)).await;
    let (status, body) = t2.post(&t2.machines(), perf(1)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("dedicated cpus"),
        "{body}"
    );
    let (_, info2) = t2.get("/internal/v1/host").await;
    assert_eq!(info2["allocated_cpus"], 2);
    assert_eq!(info["cpus"], 2);
    assert_eq!(info["runtime"], "sim");
    assert_eq!(info["region"], "local");
    assert_eq!(info["id"], "local-1");
    assert!(
        info["address"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_performance_preset_of_the_reference_is_created() {
    // fly-go's MachinePresets: performance-6x, 10x, 12x and 14x too (2048 MB per CPU).
    let t = TestAgent::with_capacity(16, 32768).await;
    for cpus in [6, 10, 12, 14] {
        let guest = json!({"cpu_kind": "performance", "cpus": cpus, "memory_mb": 2048 * cpus});
        let (status, m) = t
            .post(
                &t.machines(),
                json!({"config": {"image": "a", "guest": guest}, "skip_launch": true}),
            )
            .await;
        assert_eq!(status, 200, "performance-{cpus}x: {m}");
        assert_eq!(m["config"]["guest"], guest);
        let id = m["id"].as_str().unwrap();
        let (status, _) = t.send(t.req(Method::DELETE, &t.machine(id))).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_make_one_run() {
    let t = TestAgent::start().await;
    let m = t
        .create(json!({"config": sim_config(&[]), "skip_launch": true}))
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    assert_eq!(t.state(&id).await, "created");
    assert_eq!(t.starts(&id), 0);
    let start = format!("{}/start", t.machine(&id));
    let (a, b) = tokio::join!(t.post(&start, json!({})), t.post(&start, json!({})));
    assert_eq!(a.0, 200, "{}", a.1);
    assert_eq!(b.0, 200, "{}", b.1);
    let mut previous = [a.1["previous_state"].clone(), b.1["previous_state"].clone()];
    previous.sort_by_key(|v| v.to_string());
    assert_eq!(previous, [json!("created"), json!("started")]);
    assert_eq!(t.live_runs(&id), 1);
    assert_eq!(t.starts(&id), 1);
    assert_eq!(t.state(&id).await, "started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_start_restart_signal_suspend() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;

    // Stop: SIGTERM by default; exit + stop events.
    let (status, body) = t.post(&format!("{}/stop", t.machine(&id)), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true}));
    assert_eq!(t.state(&id).await, "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let events = t.events(&id).await;
    let exit = &events[events.len() - 2];
    assert_eq!(exit["type"], "exit");
    let exit_event = &exit["request"]["exit_event"];
    assert_eq!(exit_event["requested_stop"], true);
    assert_eq!(exit_event["signal"], 15);
    // The reference's fields (fly-go's MachineExitEvent): the guest's code and signal are the
    // process's; a stop does not restart it.
    assert_eq!(exit_event["guest_signal"], 15, "{exit}");
    assert_eq!(
        exit_event["guest_exit_code"], exit_event["exit_code"],
        "{exit}"
    );
    assert_eq!(exit_event["restarting"], false, "{exit}");
    assert_eq!(exit["request"]["restart_count"], 0, "{exit}");
    assert!(
        exit_event["exited_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{exit}"
    );
    assert_eq!(events.last().unwrap()["type"], "stop");
    assert_eq!(events.last().unwrap()["status"], "stopped");
    // Stopping again is fine and says so.
    let (status, body) = t
        .send(t.req(Method::POST, &format!("{}/stop", t.machine(&id))))
        .await;
    assert_eq!(status, 200);
    assert!(
        body["note"].as_str().unwrap().contains("already stopped"),
        "{body}"
    );

    // Start from stopped.
    let (status, body) = t
        .post(&format!("{}/start", t.machine(&id)), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"previous_state": "stopped"}));
    assert_eq!(t.live_runs(&id), 1);

    // Restart with a query signal.
    let (status, body) = t
        .send(t.req(
            Method::POST,
            &format!("{}/restart?signal=SIGINT&timeout=2s", t.machine(&id)),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(&id).await, "started");
    assert_eq!(t.starts(&id), 3);
    assert_eq!(t.live_runs(&id), 1);
    let kinds = t.event_kinds(&id).await;
    assert_eq!(
        kinds.last().unwrap(),
        &("restart".into(), "started".into(), "user".into())
    );
    let (status, body) = t
        .send(t.req(
            Method::POST,
            &format!("{}/restart?signal=SIGNOPE", t.machine(&id)),
        ))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "signal");

    // A signal by name; the sim process ends on it and the default policy (on-failure)
    // starts it again.
    let (status, body) = t
        .post(
            &format!("{}/signal", t.machine(&id)),
            json!({"signal": "SIGUSR1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t.eventually("the policy restarted it", || async {
        t.starts(&id) == 4 && t.live_runs(&id) == 1
    })
    .await;
    t.wait_for(&id, "started").await;
    // Both exits say the machine starts again: the user's restart, and the policy's after
    // SIGUSR1 (its first restart).
    let events = t.events(&id).await;
    let exits: Vec<&Value> = events.iter().filter(|e| e["type"] == "exit").collect();
    let (by_policy, by_restart) = (exits[exits.len() - 1], exits[exits.len() - 2]);
    assert_eq!(by_restart["request"]["exit_event"]["restarting"], true);
    assert_eq!(by_restart["request"]["exit_event"]["requested_stop"], true);
    let policy_exit = &by_policy["request"]["exit_event"];
    assert_eq!(policy_exit["restarting"], true, "{by_policy}");
    assert_eq!(policy_exit["requested_stop"], false, "{by_policy}");
    assert_eq!(policy_exit["guest_signal"], 10, "{by_policy}");
    let (status, body) = t
        .post(
            &format!("{}/signal", t.machine(&id)),
            json!({"signal": "SIGNOPE"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");

    // Suspend on a runtime that cannot: stopped, and the reply says so.
    let (status, body) = t
        .post(&format!("{}/suspend", t.machine(&id)), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["suspended"], false);
    assert!(
        body["note"].as_str().unwrap().contains("cannot suspend"),
        "{body}"
    );
    assert_eq!(t.state(&id).await, "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let kinds = t.event_kinds(&id).await;
    assert_eq!(
        kinds.last().unwrap(),
        &("suspend".into(), "stopped".into(), "user".into())
    );

    // Operations that need a started machine.
    for (path, body) in [
        ("restart", json!({})),
        ("signal", json!({"signal": 9})),
        ("suspend", json!({})),
    ] {
        let (status, resp) = t.post(&format!("{}/{path}", t.machine(&id)), body).await;
        assert_eq!(status, 412, "{path}: {resp}");
        assert!(
            resp["error"]
                .as_str()
                .unwrap()
                .contains("aloft machine start"),
            "{resp}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_the_proxys_requests_in_flight_finish_first() {
    let load = std::sync::Arc::new(aloft_catalog::Load::default());
    let t = TestAgent::with_deps(aloft_agent::AgentDeps {
        drain: Some(load.clone()),
        ..Default::default()
    })
    .await;
    let id = t.create_started(sim_config(&[])).await;
    let stop_url = format!("{}/stop", t.machine(&id));

    // A request in flight: the machine is stopping (no new requests) but not signalled yet.
    let request = load.try_acquire(&id, 10).unwrap();
    let stop = t.post(&stop_url, json!({"timeout": "10s"}));
    let finish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(t.state(&id).await, "stopping");
        assert_eq!(
            t.live_runs(&id),
            1,
            "signalled while a request was in flight"
        );
        drop(request);
    };
    let ((status, body), ()) = tokio::join!(stop, finish);
    assert_eq!(status, 200, "{body}");
    assert_eq!(t.state(&id).await, "stopped");

    // One that never ends holds the stop for the stop's timeout at most.
    t.post(&format!("{}/start", t.machine(&id)), json!({}))
        .await;
    let _stuck = load.try_acquire(&id, 10).unwrap();
    let t0 = Instant::now();
    let (status, body) = t.post(&stop_url, json!({"timeout": "1s"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(t.state(&id).await, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_validates_and_times_out() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;
    let wait = |q: &str| format!("{}/wait?{q}", t.machine(&id));
    for bad in ["timeout=0", "timeout=61", "timeout=abc", "timeout=-1"] {
        let (status, body) = t.get(&wait(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("1 to 60"),
            "{body}"
        );
    }
    let (status, body) = t.get(&wait("state=starting")).await;
    assert_eq!(status, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("started, stopped, suspended, destroyed"),
        "{msg}"
    );

    // Already there.
    let (status, body) = t.get(&wait("state=started&timeout=1")).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"ok": true, "state": "started"}));

    // Never gets there.
    let begun = Instant::now();
    let (status, body) = t.get(&wait("state=stopped&timeout=1")).await;
    assert_eq!(status, 408, "{body}");
    assert_error(&body);
    assert!(begun.elapsed() >= Duration::from_millis(900));

    // The wait does not hold up operations (it takes no lock), and sees the stop.
    let waiter = {
        let url = format!("{}{}", t.url, wait("state=stopped&timeout=10"));
        let client = t.client.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(common::TOKEN)
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = t.post(&format!("{}/stop", t.machine(&id)), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(waiter.await.unwrap(), StatusCode::OK);

    // A version that is not current is not reached.
    let (_, m) = t.get(&t.machine(&id)).await;
    let current = m["instance_id"].as_str().unwrap().to_string();
    let (status, _) = t
        .get(&wait(&format!(
            "state=stopped&instance_id={current}&timeout=1"
        )))
        .await;
    assert_eq!(status, 200);
    let (status, _) = t
        .get(&wait("state=stopped&instance_id=01OLD&timeout=1"))
        .await;
    assert_eq!(status, 408);

    // Destroyed.
    let (status, _) = t.send(t.req(Method::DELETE, &t.machine(&id))).await;
    assert_eq!(status, 200);
    let (status, _) = t.get(&wait("state=destroyed&timeout=1")).await;
    assert_eq!(status, 200);
    let (status, body) = t.get(&wait("state=started&timeout=5")).await;
    assert_eq!(status, 412, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_guard_every_write() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;
    let lease = format!("{}/lease", t.machine(&id));
    let stop = format!("{}/stop", t.machine(&id));
    let (nonce, expires) = a_lease_is_taken(&t, &id, &lease).await;
    others_writes_are_refused(&t, &id, &lease, &stop).await;
    the_holders_writes_go_through(&t, &lease, &stop, &nonce, expires).await;
    releasing_needs_the_nonce(&t, &id, &lease, &nonce).await;
    an_expired_lease_is_ignored(&t, &id, &lease).await;
    a_machine_created_with_lease_ttl_holds_one(&t).await;
}

/// A machine has no lease at first; one taken names its owner and description, carries the
/// machine's version, expires after its ttl and reads back the same. Returns its nonce and expiry.
async fn a_lease_is_taken(t: &TestAgent, id: &str, lease: &str) -> (String, i64) {
    let (status, body) = t.get(lease).await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = t
        .send(
            t.req(Method::POST, lease)
                .header("x-aloft-actor", "alice@acme")
                .json(&json!({"ttl": 60, "description": "deploy"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "success");
    let data = &body["data"];
    let nonce = data["nonce"].as_str().unwrap().to_string();
    assert!(!nonce.is_empty() && nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(data["owner"], "alice@acme");
    assert_eq!(data["description"], "deploy");
    let (_, m) = t.get(&t.machine(id)).await;
    assert_eq!(data["version"], m["instance_id"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires = data["expires_at"].as_i64().unwrap();
    assert!(
        (now + 55..=now + 61).contains(&expires),
        "{expires} vs {now}"
    );

    let (status, shown) = t.get(lease).await;
    assert_eq!(status, 200);
    assert_eq!(shown["data"], *data);
    (nonce, expires)
}

/// Someone else's writes are refused, naming the owner; taking it again without the nonce is
/// refused too; reads and metadata are not guarded.
async fn others_writes_are_refused(t: &TestAgent, id: &str, lease: &str, stop: &str) {
    let (status, body) = t.post(stop, json!({})).await;
    assert_eq!(status, 409, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("alice@acme") && msg.contains("fly-machine-lease-nonce"),
        "{msg}"
    );
    let (status, _) = t
        .send(
            t.req(Method::POST, stop)
                .header("fly-machine-lease-nonce", "0000"),
        )
        .await;
    assert_eq!(status, 409);
    for (method, path) in [
        (Method::POST, format!("{}/start", t.machine(id))),
        (Method::POST, format!("{}/restart", t.machine(id))),
        (Method::POST, format!("{}/suspend", t.machine(id))),
        (Method::POST, format!("{}/cordon", t.machine(id))),
        (Method::POST, format!("{}/uncordon", t.machine(id))),
        (Method::DELETE, format!("{}?force=true", t.machine(id))),
    ] {
        let (status, body) = t.send(t.req(method.clone(), &path)).await;
        assert_eq!(status, 409, "{method} {path}: {body}");
    }
    // Metadata is labels, not the machine: the reference's clients write it without a nonce.
    let (status, body) = t
        .send(t.req(Method::DELETE, &format!("{}/metadata/role", t.machine(id))))
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = t
        .post(
            &format!("{}/signal", t.machine(id)),
            json!({"signal": "SIGTERM"}),
        )
        .await;
    assert_eq!(status, 409);
    let (status, _) = t
        .post(
            &format!("{}/metadata/role", t.machine(id)),
            json!({"value": "x"}),
        )
        .await;
    assert_eq!(status, 204, "metadata is not guarded");
    let (status, _) = t
        .post(&t.machine(id), json!({"config": sim_config(&[])}))
        .await;
    assert_eq!(status, 409);
    // Taking it again without the nonce: 409.
    let (status, _) = t.post(lease, json!({})).await;
    assert_eq!(status, 409);
    // Reads are not guarded.
    let (status, _) = t.get(&t.machine(id)).await;
    assert_eq!(status, 200);
}

/// The holder's writes go through; refreshing keeps the nonce.
async fn the_holders_writes_go_through(
    t: &TestAgent,
    lease: &str,
    stop: &str,
    nonce: &str,
    expires: i64,
) {
    let (status, body) = t
        .send(
            t.req(Method::POST, lease)
                .header("fly-machine-lease-nonce", nonce)
                .json(&json!({"ttl": 120})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["nonce"], nonce);
    assert!(body["data"]["expires_at"].as_i64().unwrap() > expires);
    let (status, body) = t
        .send(
            t.req(Method::POST, stop)
                .header("fly-machine-lease-nonce", nonce),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Release needs the nonce; refreshing a lease that is gone makes no new one (its holder would
/// not know the nonce), and the machine can be written again.
async fn releasing_needs_the_nonce(t: &TestAgent, id: &str, lease: &str, nonce: &str) {
    let (status, _) = t.send(t.req(Method::DELETE, lease)).await;
    assert_eq!(status, 409);
    let (status, body) = t
        .send(
            t.req(Method::DELETE, lease)
                .header("fly-machine-lease-nonce", nonce),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = t.get(lease).await;
    assert_eq!(status, 404);
    // Refreshing a lease that is gone makes no new one (its holder would not know the nonce).
    let (status, body) = t
        .send(
            t.req(Method::POST, lease)
                .header("fly-machine-lease-nonce", nonce)
                .json(&json!({"ttl": 120})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("expired or was released")
    );
    let (status, _) = t.get(lease).await;
    assert_eq!(status, 404);
    let (status, _) = t.post(&format!("{}/start", t.machine(id)), json!({})).await;
    assert_eq!(status, 200);
}

/// An expired lease is ignored; a ttl of 0 is refused, naming the field.
async fn an_expired_lease_is_ignored(t: &TestAgent, id: &str, lease: &str) {
    let (status, _) = t.post(lease, json!({"ttl": 1})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _) = t.get(lease).await;
    assert_eq!(status, 404);
    let (status, body) = t
        .post(&format!("{}/cordon", t.machine(id)), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t.post(lease, json!({"ttl": 0})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "ttl");
}

/// A machine created with lease_ttl holds a lease from the start.
async fn a_machine_created_with_lease_ttl_holds_one(t: &TestAgent) {
    let m = t
        .send(
            t.req(Method::POST, &t.machines())
                .header("x-aloft-actor", "bob")
                .json(&json!({"config": sim_config(&[]), "lease_ttl": 30, "skip_launch": true})),
        )
        .await
        .1;
    let nonce = m["nonce"].as_str().expect("nonce on create with lease_ttl");
    let id2 = m["id"].as_str().unwrap();
    let (status, body) = t
        .post(&format!("{}/start", t.machine(id2)), json!({}))
        .await;
    assert_eq!(status, 409);
    assert!(body["error"].as_str().unwrap().contains("bob"));
    let (status, _) = t
        .send(
            t.req(Method::POST, &format!("{}/start", t.machine(id2)))
                .header("fly-machine-lease-nonce", nonce),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_needs_force_on_a_started_machine() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;
    let (status, body) = t.send(t.req(Method::DELETE, &t.machine(&id))).await;
    assert_eq!(status, 412, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("machine is started; stop it first (aloft machine stop")
            && msg.contains("or pass force=true"),
        "{msg}"
    );
    let (status, body) = t
        .send(t.req(Method::DELETE, &format!("{}?force=maybe", t.machine(&id))))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body);
    let (status, body) = t
        .send(t.req(Method::DELETE, &format!("{}?force=true", t.machine(&id))))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"ok": true}));
    assert_eq!(t.live_runs(&id), 0);
    assert!(!t.rt.knows(&common::mid(&id)));

    // Destroyed machines stay: GET shows them, the list only with include_deleted.
    let (status, m) = t.get(&t.machine(&id)).await;
    assert_eq!(status, 200);
    assert_eq!(m["state"], "destroyed");
    assert_eq!(m["events"][0]["type"], "destroy");
    let (_, list) = t.get(&t.machines()).await;
    assert_eq!(list, json!([]));
    let (_, list) = t
        .get(&format!("{}?include_deleted=true", t.machines()))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Nothing revives it; destroying again is fine.
    for op in ["start", "stop", "cordon"] {
        let (status, body) = t.post(&format!("{}/{op}", t.machine(&id)), json!({})).await;
        assert_eq!(status, 412, "{op}: {body}");
    }
    let (status, _) = t
        .post(&t.machine(&id), json!({"config": sim_config(&[])}))
        .await;
    assert_eq!(status, 412);
    let (status, _) = t.send(t.req(Method::DELETE, &t.machine(&id))).await;
    assert_eq!(status, 200);
    assert_eq!(t.state(&id).await, "destroyed");

    // A stopped machine is destroyed without force.
    let id = t.create_started(sim_config(&[])).await;
    t.post(&format!("{}/stop", t.machine(&id)), json!({})).await;
    let (status, _) = t.send(t.req(Method::DELETE, &t.machine(&id))).await;
    assert_eq!(status, 200);
    assert_eq!(t.state(&id).await, "destroyed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters() {
    let t = TestAgent::start().await;
    let web = t
        .create(json!({"config": {"image": "a", "metadata": {"role": "web", "tier": "1"}}, "skip_launch": true}))
        .await;
    let worker = t
        .create(
            json!({"config": {"image": "a", "metadata": {"role": "worker"}}, "skip_launch": true}),
        )
        .await;
    let started = t.create_started(json!({"image": "a"})).await;
    // Another app's machine.
    let (status, _) = t
        .post(
            "/v1/apps/other/machines",
            json!({"config": {"image": "a"}, "skip_launch": true}),
        )
        .await;
    assert_eq!(status, 200);

    let ids = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = t.get(&t.machines()).await;
    assert_eq!(
        ids(&all),
        vec![
            web["id"].as_str().unwrap(),
            worker["id"].as_str().unwrap(),
            started.as_str()
        ]
    );
    let (_, list) = t.get(&format!("{}?metadata.role=web", t.machines())).await;
    assert_eq!(ids(&list), vec![web["id"].as_str().unwrap()]);
    let (_, list) = t
        .get(&format!(
            "{}?metadata.role=web&metadata.tier=2",
            t.machines()
        ))
        .await;
    assert_eq!(list, json!([]));
    let (_, list) = t.get(&format!("{}?state=started", t.machines())).await;
    assert_eq!(ids(&list), vec![started.clone()]);
    let (_, list) = t
        .get(&format!("{}?state=created,started", t.machines()))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, list) = t.get(&format!("{}?region=local", t.machines())).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (_, list) = t.get(&format!("{}?region=ams", t.machines())).await;
    assert_eq!(list, json!([]));
    let (status, body) = t.get(&format!("{}?state=sleeping", t.machines())).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = t
        .get(&format!("{}?include_deleted=perhaps", t.machines()))
        .await;
    assert_eq!(status, 400);

    // A machine is only reachable under its own app.
    let (status, body) = t.get(&format!("/v1/apps/other/machines/{started}")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = t
        .post(
            &format!("/v1/apps/other/machines/{started}/stop"),
            json!({}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = t.get(&t.machine("not-an-id")).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_makes_versions() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[("V", "1")])).await;
    let (_, m) = t.get(&t.machine(&id)).await;
    let v1 = m["instance_id"].as_str().unwrap().to_string();

    // Wrong current_version: 412, nothing changes.
    let (status, body) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[("V", "2")]), "current_version": "01NOPE"}),
        )
        .await;
    assert_eq!(status, 412, "{body}");
    // Invalid config: 422 naming the field.
    let (status, body) = t
        .post(
            &t.machine(&id),
            json!({"config": {"image": "a", "guest": {"memory_mb": 100}}}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "config.guest.memory_mb");

    // A started machine restarts on the new version.
    let (status, m) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[("V", "2")]), "current_version": v1}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    let v2 = m["instance_id"].as_str().unwrap().to_string();
    assert_ne!(v1, v2);
    // `version` is the reference's name for the same id: it changes with every update.
    assert_eq!(m["version"], v2.as_str());
    assert_eq!(m["host_status"], "ok");
    assert!(m.get("incomplete_config").is_none(), "{m}");
    assert_eq!(m["state"], "started");
    assert_eq!(m["config"]["env"]["V"], "2");
    assert_eq!(m["events"][0]["type"], "update");
    assert_eq!(m["events"][0]["status"], "started");
    assert_eq!(m["events"][1]["type"], "exit");
    // The update of a started machine starts it again.
    assert_eq!(m["events"][1]["request"]["exit_event"]["restarting"], true);
    assert_eq!(t.starts(&id), 2);
    assert_eq!(t.live_runs(&id), 1);
    let (_, env) = t
        .post(
            &format!("{}/exec", t.machine(&id)),
            json!({"command": ["env"]}),
        )
        .await;
    assert!(env["stdout"].as_str().unwrap().contains("V=2"), "{env}");

    let (status, versions) = t.get(&format!("{}/versions", t.machine(&id))).await;
    assert_eq!(status, 200);
    let versions = versions.as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], v2.as_str());
    assert_eq!(versions[1]["version"], v1.as_str());
    assert_eq!(versions[0]["user_config"]["env"]["V"], "2");
    assert_eq!(versions[1]["user_config"]["env"]["V"], "1");

    // skip_launch on a started machine: the new version does not start.
    let (status, m) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[("V", "3")]), "skip_launch": true}),
        )
        .await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["state"], "stopped");
    assert_eq!(t.live_runs(&id), 0);

    // A stopped machine stays stopped.
    let (status, m) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[("V", "4")])}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(m["state"], "stopped");
    assert_eq!(m["events"][0]["type"], "update");
    assert_eq!(m["events"][0]["status"], "stopped");
    assert_eq!(t.live_runs(&id), 0);
    let (_, versions) = t.get(&format!("{}/versions", t.machine(&id))).await;
    assert_eq!(versions.as_array().unwrap().len(), 4);

    // Region and name.
    let (status, body) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[]), "region": "ams"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "region");
    let (_, m) = t
        .post(
            &t.machine(&id),
            json!({"config": sim_config(&[]), "name": "renamed"}),
        )
        .await;
    assert_eq!(m["name"], "renamed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_cordon() {
    let t = TestAgent::start().await;
    let id = t.create_started(json!({"image": "a"})).await;
    let (_, m) = t.get(&t.machine(&id)).await;
    let version = m["instance_id"].clone();

    let meta = format!("{}/metadata", t.machine(&id));
    let (status, body) = t.get(&meta).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({}));
    let (status, body) = t
        .post(&format!("{meta}/role"), json!({"value": "web"}))
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null);
    let (_, body) = t.get(&meta).await;
    assert_eq!(body, json!({"role": "web"}));
    let (_, list) = t.get(&format!("{}?metadata.role=web", t.machines())).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (_, m) = t.get(&t.machine(&id)).await;
    assert_eq!(m["instance_id"], version, "metadata is not a new version");
    assert_eq!(m["state"], "started");
    let (status, body) = t.post(&format!("{meta}/role"), json!({"val": "web"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = t
        .post(&format!("{meta}/bad%20key"), json!({"value": "web"}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "key");
    let (status, _) = t.send(t.req(Method::DELETE, &format!("{meta}/role"))).await;
    assert_eq!(status, 204);
    let (_, body) = t.get(&meta).await;
    assert_eq!(body, json!({}));

    let (status, body) = t
        .post(&format!("{}/cordon", t.machine(&id)), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"ok": true}));
    let (_, m) = t.get(&t.machine(&id)).await;
    assert_eq!(m["cordoned"], true);
    let (status, _) = t
        .post(&format!("{}/uncordon", t.machine(&id)), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, m) = t.get(&t.machine(&id)).await;
    assert_eq!(m["cordoned"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_ps_logs_and_events() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[("GREETING", "hi")])).await;
    let exec = format!("{}/exec", t.machine(&id));
    let (status, body) = t
        .post(&exec, json!({"command": ["echo", "hello", "world"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"exit_code": 0, "exit_signal": -1, "stdout": "hello world\n", "stderr": ""})
    );
    let (_, body) = t.post(&exec, json!({"cmd": "cat", "stdin": "abc"})).await;
    assert_eq!(body["stdout"], "abc");
    let (_, body) = t.post(&exec, json!({"command": ["false"]})).await;
    assert_eq!(body["exit_code"], 1);
    let (status, body) = t
        .post(&exec, json!({"command": ["sleep", "5"], "timeout": 1}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["exit_signal"], 9);
    let (status, body) = t
        .post(&exec, json!({"command": ["true"], "timeout": 301}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "timeout");
    let (status, body) = t.post(&exec, json!({"command": []})).await;
    assert_eq!(status, 422);
    assert_eq!(body["field"], "command");
    // Fields aloft does not know are ignored, as the reference's server does (newer clients
    // send more).
    let (status, _) = t
        .post(&exec, json!({"command": ["true"], "container": "app"}))
        .await;
    assert_eq!(status, 200);

    let (status, ps) = t.get(&format!("{}/ps", t.machine(&id))).await;
    assert_eq!(status, 200);
    // The reference's shape (fly-go's ProcessStat).
    let p = &ps[0];
    assert_eq!(p["command"], "sim-process");
    assert_eq!(p["directory"], "/");
    assert!(p["pid"].as_i64().is_some_and(|pid| pid > 0), "{p}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stime = p["stime"].as_u64().unwrap();
    assert!(stime <= now && stime + 600 > now, "{p}");
    assert!(p["rtime"].as_u64().is_some_and(|r| r < 600), "{p}");
    assert_eq!(p["rss"], 8 << 20);
    assert_eq!(p["cpu"], 0);
    assert_eq!(p["listen_sockets"], json!([]));

    let (status, logs) = t.get(&format!("{}/logs", t.machine(&id))).await;
    assert_eq!(status, 200);
    assert!(
        logs[0]["message"].as_str().unwrap().contains("starting"),
        "{logs}"
    );
    let last = logs.as_array().unwrap().last().unwrap()["timestamp"]
        .as_i64()
        .unwrap();
    let (status, newer) = t
        .get(&format!("{}/logs?since={}", t.machine(&id), last + 1))
        .await;
    assert_eq!(status, 200);
    assert_eq!(newer, json!([]), "nothing after the last line");
    let (_, from_last) = t
        .get(&format!("{}/logs?since={last}", t.machine(&id)))
        .await;
    assert!(!from_last.as_array().unwrap().is_empty(), "{from_last}");
    let (status, _) = t
        .get(&format!("{}/logs?since=yesterday", t.machine(&id)))
        .await;
    assert_eq!(status, 400);

    t.post(
        &format!("{}/stop", t.machine(&id)),
        json!({"signal": "SIGINT", "timeout": "2s"}),
    )
    .await;
    let (status, body) = t.post(&exec, json!({"command": ["true"]})).await;
    assert_eq!(status, 412, "{body}");
    assert!(body["error"].as_str().unwrap().contains("start it first"));
    let (status, _) = t.get(&format!("{}/ps", t.machine(&id))).await;
    assert_eq!(status, 412);

    // Events: all of them, newest first; the machine carries the newest 10.
    for _ in 0..5 {
        t.post(&format!("{}/start", t.machine(&id)), json!({}))
            .await;
        t.post(&format!("{}/stop", t.machine(&id)), json!({})).await;
    }
    let (_, events) = t.get(&format!("{}/events", t.machine(&id))).await;
    let events = events.as_array().unwrap();
    assert!(events.len() > 10);
    let stamps: Vec<i64> = events
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {stamps:?}"
    );
    let (_, m) = t.get(&t.machine(&id)).await;
    assert_eq!(m["events"].as_array().unwrap().len(), 10);
    assert_eq!(m["events"][0], events[0]);
    let exit = events.iter().find(|e| e["type"] == "exit").unwrap();
    assert_eq!(exit["request"]["exit_event"]["requested_stop"], true);
    // The first stop used SIGINT.
    let first_exit = events.iter().rev().find(|e| e["type"] == "exit").unwrap();
    assert_eq!(first_exit["request"]["exit_event"]["signal"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_use_the_error_shape() {
    let t = TestAgent::start().await;
    let (status, body) = t.get("/v1/nothing/here").await;
    assert_eq!(status, 404);
    assert_error(&body);
    assert_eq!(body["status"], "not_found");
    let (status, body) = t.send(t.req(Method::PUT, &t.machines())).await;
    assert_eq!(status, 405);
    assert_error(&body);
    assert_eq!(body["status"], "method_not_allowed");
    let id = t
        .create(json!({"config": {"image": "a"}, "skip_launch": true}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = t
        .send(t.req(
            Method::POST,
            &format!("{}/restart?force_stop=sometimes", t.machine(&id)),
        ))
        .await;
    assert_eq!(status, 400);
    assert_error(&body);
    let (status, body) = t
        .send(t.req(Method::POST, &format!("{}/signal", t.machine(&id))))
        .await;
    assert_eq!(status, 400);
    assert_error(&body);
    let (status, body) = t
        .send(
            t.req(Method::POST, &format!("{}/stop", t.machine(&id)))
                .body("[1,"),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body);
    let (status, body) = t
        .post(
            &format!("{}/stop", t.machine(&id)),
            json!({"signal": "SIGWHAT"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "signal");
    assert_eq!(body["status"], "invalid_value");
}

#[test]
fn the_openapi_document_is_complete_and_deterministic() {
    use utoipa::OpenApi;
    let doc = aloft_agent::http::MachinesApiDoc::openapi();
    let a = doc.to_pretty_json().unwrap();
    let b = aloft_agent::http::MachinesApiDoc::openapi()
        .to_pretty_json()
        .unwrap();
    assert_eq!(a, b);
    let v: Value = serde_json::from_str(&a).unwrap();
    let paths = v["paths"].as_object().unwrap();
    let expected = [
        ("/v1/apps/{app}/machines", vec!["get", "post"]),
        (
            "/v1/apps/{app}/machines/{id}",
            vec!["get", "post", "delete"],
        ),
        ("/v1/apps/{app}/machines/{id}/start", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/stop", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/restart", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/signal", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/suspend", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/wait", vec!["get"]),
        (
            "/v1/apps/{app}/machines/{id}/lease",
            vec!["get", "post", "delete"],
        ),
        ("/v1/apps/{app}/machines/{id}/cordon", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/uncordon", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/metadata", vec!["get"]),
        (
            "/v1/apps/{app}/machines/{id}/metadata/{key}",
            vec!["post", "delete"],
        ),
        ("/v1/apps/{app}/machines/{id}/events", vec!["get"]),
        ("/v1/apps/{app}/machines/{id}/versions", vec!["get"]),
        ("/v1/apps/{app}/machines/{id}/ps", vec!["get"]),
        ("/v1/apps/{app}/machines/{id}/exec", vec!["post"]),
        ("/v1/apps/{app}/machines/{id}/logs", vec!["get"]),
    ];
    assert_eq!(
        paths.len(),
        expected.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, methods) in expected {
        let item = paths.get(path).unwrap_or_else(|| panic!("missing {path}"));
        for m in methods {
            let op = &item[m];
            assert_eq!(op["tags"], json!(["Machines"]), "{m} {path}");
            assert!(op["operationId"].as_str().unwrap().starts_with("Machines_"));
            assert!(op["responses"]["401"].is_object(), "{m} {path} lacks 401");
        }
    }
    // Query parameters are documented in the query, path parameters in the path.
    let wait = &paths["/v1/apps/{app}/machines/{id}/wait"]["get"]["parameters"];
    let location = |params: &Value, name: &str| -> String {
        params
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["in"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(location(wait, "timeout"), "query");
    assert_eq!(location(wait, "id"), "path");
    let list = &paths["/v1/apps/{app}/machines"]["get"]["parameters"];
    assert_eq!(location(list, "include_deleted"), "query");
    assert_eq!(location(list, "metadata.{key}"), "query");
    // Every schema reference resolves.
    let schemas = v["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&v, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(schemas.contains_key(name), "unresolved {r}");
    }
    for name in [
        "Machine",
        "MachineConfig",
        "ErrorBody",
        "CreateMachineRequest",
        "LeaseResponse",
    ] {
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_string());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// What the reference's Go client (fly-go's flaps) sends: a stop body with the machine's `id`
/// and a Go duration, waits on several states (repeated `state=`, `settled`) with `version=`,
/// a lease TTL in the query, metadata writes without the lease's nonce, and `?kill=true` to
/// destroy a started machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_clients_requests_are_understood() {
    let t = TestAgent::start().await;
    let id = t.create_started(sim_config(&[])).await;
    let m = t.machine(&id);
    let (_, machine) = t.get(&m).await;
    let version = machine["instance_id"].as_str().unwrap().to_string();

    let (status, body) = t
        .send(t.req(Method::POST, &format!("{m}/lease?ttl=120")))
        .await;
    assert_eq!(status, 200, "{body}");
    let left = body["data"]["expires_at"].as_i64().unwrap() - aloft_types::time::now_ms() / 1000;
    assert!((100..=120).contains(&left), "the query's TTL: {body}");
    let nonce = body["data"]["nonce"].as_str().unwrap().to_string();

    // Metadata is not held back by the lease (flaps sends no nonce for it).
    let (status, body) = t
        .post(&format!("{m}/metadata/role"), json!({"value": "web"}))
        .await;
    assert_eq!(status, 204, "{body}");

    let (status, body) = t
        .get(&format!(
            "{m}/wait?state=started&state=stopped&version={version}&timeout=5"
        ))
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("started")),
        "{body}"
    );
    let (status, body) = t.get(&format!("{m}/wait?state=settled&timeout=5")).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = t
        .get(&format!(
            "{m}/wait?state=started&version=01NOTTHISVERSION&timeout=1"
        ))
        .await;
    assert_eq!(status, 408, "version= is the instance to wait for");
    let (status, body) = t.get(&format!("{m}/wait?state=starting&timeout=1")).await;
    assert_eq!(status, 400, "{body}");

    let (status, body) = t
        .send(
            t.req(Method::POST, &format!("{m}/stop"))
                .header(aloft_types::api::LEASE_NONCE_HEADER, &nonce)
                .json(&json!({"id": id, "timeout": "0s", "signal": "SIGTERM"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = t
        .send(
            t.req(Method::POST, &format!("{m}/start"))
                .header(aloft_types::api::LEASE_NONCE_HEADER, &nonce),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    t.wait_for(&id, "started").await;
    let (status, body) = t
        .send(
            t.req(Method::DELETE, &format!("{m}?kill=true"))
                .header(aloft_types::api::LEASE_NONCE_HEADER, &nonce),
        )
        .await;
    assert_eq!(status, 200, "kill=true destroys a started machine: {body}");
    assert_eq!(t.state(&id).await, "destroyed");
}
