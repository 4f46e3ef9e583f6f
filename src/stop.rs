//! How a server process stops: Ctrl-C (SIGINT) stops it at once; SIGTERM (what Kubernetes, systemd
//! and `docker stop` send) stops it gracefully: the scheduler starts no new statement and waits
//! for the running ones, an executor takes no new query and waits for its tasks, each up to its
//! `--drain-timeout`; a second signal during the wait stops it at once.

use tokio::signal::unix::{SignalKind, signal};

/// Why a server stops.
pub(crate) enum Stop {
    /// Ctrl-C: at once.
    Interrupt,
    /// SIGTERM: gracefully.
    Terminate,
    /// The server itself ended (it failed).
    Failed,
}

/// Waits for Ctrl-C, SIGTERM, or `stopped` (the server failed).
pub(crate) async fn until_stop(stopped: impl Future<Output = ()>) -> anyhow::Result<Stop> {
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        result = tokio::signal::ctrl_c() => { result?; Stop::Interrupt }
        _ = terminate.recv() => Stop::Terminate,
        () = stopped => Stop::Failed,
    })
}

/// Runs `graceful` unless Ctrl-C or another SIGTERM comes first; `None` then.
pub(crate) async fn unless_forced<T>(graceful: impl Future<Output = T>) -> anyhow::Result<Option<T>> {
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        done = graceful => Some(done),
        result = tokio::signal::ctrl_c() => { result?; None }
        _ = terminate.recv() => None,
    })
}
