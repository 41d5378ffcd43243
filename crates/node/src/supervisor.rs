//! What every role's process shares: OS signals (installed before anything starts, so a signal
//! during start-up still ends in a clean stop), one shutdown signal for every server it runs, the
//! background tasks it owns, and how long each server gets to drain.

use anyhow::{Context, Result};
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long in-flight requests get to finish after a stop signal.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a [`Supervisor::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every server drained (or was dropped after [`DRAIN_TIMEOUT`]) and `finish` completed.
    Cleanly,
    /// A second signal came while stopping: stop now, as a crash would.
    AtOnce,
}

/// Owns a process's servers and background tasks and its stop signal.
pub struct Supervisor {
    /// SIGTERM and SIGINT, when this supervisor owns the process's signals.
    signals: Option<(Signal, Signal)>,
    stop_tx: watch::Sender<bool>,
    servers: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Supervisor {
    /// A supervisor that owns the process's SIGTERM and SIGINT: call it before starting
    /// anything.
    pub fn install() -> Result<Self> {
        let term = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
        let mut supervisor = Self::new();
        supervisor.signals = Some((term, int));
        Ok(supervisor)
    }

    /// A supervisor of roles embedded in a larger program (the test harness): it stops when
    /// told to, never on a signal.
    pub fn new() -> Self {
        Self {
            signals: None,
            stop_tx: watch::channel(false).0,
            servers: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Resolves once the supervisor stops: the graceful shutdown of a server.
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + use<> {
        self.stop_signal().stopping()
    }

    /// The stop, for a task that serves several listeners.
    pub fn stop_signal(&self) -> StopSignal {
        StopSignal(self.stop_tx.subscribe())
    }

    /// Serves `router` on `listener` until the stop, then drains it: with a cap on open
    /// connections and bounds on their idle phases ([`aloft_http::serve`]), never on a request in
    /// flight.
    pub fn serve(&mut self, name: &'static str, listener: TcpListener, router: axum::Router) {
        let server = aloft_http::serve::serve(
            listener,
            router,
            aloft_http::serve::Limits::default(),
            self.stopping(),
        );
        self.servers.push((name, tokio::spawn(server)));
    }

    /// Serves `router` on `listener` behind TLS with `tls`, as [`Supervisor::serve`] does.
    pub fn serve_tls(
        &mut self,
        name: &'static str,
        listener: TcpListener,
        router: axum::Router,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) {
        let server = aloft_http::serve::serve_tls(
            listener,
            router,
            aloft_http::serve::Limits::default(),
            tls,
            self.stopping(),
        );
        self.servers.push((name, tokio::spawn(server)));
    }

    /// A server task that ends by itself after [`Supervisor::stopping`] resolves; drained at
    /// shutdown.
    pub fn server(&mut self, name: &'static str, task: JoinHandle<std::io::Result<()>>) {
        self.servers.push((name, task));
    }

    /// A background task, aborted at shutdown.
    pub fn task(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// Waits for SIGTERM or SIGINT and says which (forever without signals).
    pub async fn wait(&mut self) -> &'static str {
        match &mut self.signals {
            Some((term, int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            None => std::future::pending().await,
        }
    }

    /// Aborts the background tasks, tells every server to stop and waits for them to drain
    /// (each at most [`DRAIN_TIMEOUT`]) together with `finish`; a second signal meanwhile ends it
    /// at once.
    pub async fn shutdown(mut self, finish: impl Future<Output = ()>) -> Stopped {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.stop_tx.send(true);
        let servers = std::mem::take(&mut self.servers);
        let mut drains = tokio::task::JoinSet::new();
        for (name, server) in servers {
            drains.spawn(drain(name, server));
        }
        let graceful = async {
            tokio::join!(drains.join_all(), finish);
        };
        tokio::select! {
            () = graceful => Stopped::Cleanly,
            _ = self.wait() => Stopped::AtOnce,
        }
    }
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Supervisor {
    /// A supervisor dropped without [`Supervisor::shutdown`] (a crash, in tests) takes every
    /// task with it.
    fn drop(&mut self) {
        for (_, server) in &self.servers {
            server.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A [`Supervisor`]'s stop, as many futures as its holder needs.
#[derive(Clone)]
pub struct StopSignal(watch::Receiver<bool>);

impl StopSignal {
    /// Resolves once the supervisor stops (or is gone, which also means stop).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Waits for a server to finish its requests, for at most [`DRAIN_TIMEOUT`].
async fn drain(name: &'static str, server: JoinHandle<std::io::Result<()>>) {
    let abort = server.abort_handle();
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!("the {name} server ended with an error: {e}"),
        Ok(Err(e)) => tracing::warn!("the {name} server task failed: {e}"),
        Err(_) => {
            tracing::warn!(
                "the {name} server still had requests after {DRAIN_TIMEOUT:?}; dropping them"
            );
            abort.abort();
        }
    }
}
