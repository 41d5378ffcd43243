//! Tests of both ways to run a flight.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

type Detached = Flights<(), Arc<String>>;

#[tokio::test]
async fn concurrent_callers_share_one_flight() {
    let flights = Arc::new(Detached::default());
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let flights = Arc::clone(&flights);
        let runs = Arc::clone(&runs);
        tasks.push(tokio::spawn(async move {
            flights
                .run_detached("k", || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(())
                })
                .await
        }));
    }
    let mut leaders = 0;
    for task in tasks {
        let (led, outcome) = task.await.expect("task");
        assert_eq!(outcome, Some(Ok(())));
        leaders += usize::from(led);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(leaders, 1);
    // The key is free again afterwards.
    let (led, _) = flights.run_detached("k", || async { Ok(()) }).await;
    assert!(led);
}

#[tokio::test]
async fn a_detached_flight_survives_its_caller() {
    let flights = Arc::new(Detached::default());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = {
        let flights = Arc::clone(&flights);
        tokio::spawn(async move {
            flights
                .run_detached("k", || async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = tx.send(());
                    Err(Arc::new("gone".to_string()))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.abort();
    let (led, outcome) = flights.run_detached("k", || async { Ok(()) }).await;
    assert!(!led, "joined the running flight");
    assert_eq!(outcome, Some(Err(Arc::new("gone".to_string()))));
    rx.await.expect("the flight ran to its end");
}

#[tokio::test]
async fn a_panicking_detached_flight_has_no_outcome() {
    let flights = Detached::default();
    let (led, outcome) = flights
        .run_detached("k", || async { panic!("the work panicked") })
        .await;
    assert!(led);
    assert_eq!(outcome, None);
    let (led, outcome) = flights.run_detached("k", || async { Ok(()) }).await;
    assert!(led, "a new flight");
    assert_eq!(outcome, Some(Ok(())));
}

#[tokio::test]
async fn joined_callers_share_the_value_and_the_state() {
    let flights: Arc<Flights<u32, String, AtomicUsize>> = Arc::new(Flights::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (flights, runs) = (Arc::clone(&flights), Arc::clone(&runs));
        tasks.push(tokio::spawn(async move {
            let joined = flights.join("k");
            joined.state().fetch_add(1, Ordering::SeqCst);
            joined
                .run(|| async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7)
                })
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.expect("task"), Ok(7));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failure_is_shared_not_retried() {
    let flights: Arc<Flights<u32, String>> = Arc::new(Flights::new());
    let joined = flights.join("k");
    let waiter = {
        let second = flights.join("k");
        tokio::spawn(async move { second.run(|| async { Ok(1) }).await })
    };
    let first = joined
        .run(|| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err("registry down".to_string())
        })
        .await;
    assert_eq!(first, Err("registry down".to_string()));
    assert_eq!(
        waiter.await.expect("task"),
        Err("registry down".to_string())
    );
    drop(joined);
    // Gone from the map: a newcomer starts afresh.
    assert_eq!(flights.join("k").run(|| async { Ok(2) }).await, Ok(2));
}

#[tokio::test]
async fn a_cancelled_runner_lets_a_waiter_run() {
    let flights: Arc<Flights<u32, String>> = Arc::new(Flights::new());
    let leader = {
        let flights = Arc::clone(&flights);
        tokio::spawn(async move {
            let joined = flights.join("k");
            joined
                .run(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(1)
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let follower = flights.join("k");
    let waiting = tokio::spawn(async move { follower.run(|| async { Ok(2) }).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    leader.abort();
    assert_eq!(waiting.await.expect("task"), Ok(2));
}
