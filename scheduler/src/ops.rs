//! The operators' routes on the scheduler's HTTP port: `/metrics` (Prometheus' text format),
//! `/health` (the process serves) and `/ready` (its catalog answers and an executor is alive).
//! They need no credentials, as scrapers and orchestrators' probes expect, and say nothing about
//! users, statements or data (`metrics.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use glaux_catalog::Catalog;
use http::StatusCode;

use crate::metrics::{Sampled, SchedulerMetrics};

/// How long `/ready` waits for the catalog to answer.
const CATALOG_PROBE: Duration = Duration::from_secs(2);

pub(crate) struct Ops {
    pub metrics: Arc<SchedulerMetrics>,
    pub sampled: Sampled,
    pub catalog: Arc<dyn Catalog>,
    /// The scheduler's stop: a stopping scheduler is not ready.
    pub closing: crate::stopping::Stopping,
}

pub(crate) fn router(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(Arc::new(ops))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    let text = ops.metrics.render(&ops.sampled);
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    let catalog = Arc::clone(&ops.catalog);
    let answered = tokio::time::timeout(CATALOG_PROBE, tokio::task::spawn_blocking(move || catalog.databases())).await;
    let not_ready = |why: String| (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response();
    match answered {
        Ok(Ok(Ok(_))) => {}
        Ok(Ok(Err(e))) => return not_ready(format!("the catalog does not answer ({e})")),
        Ok(Err(_)) => return not_ready("the catalog does not answer".into()),
        Err(_) => return not_ready(format!("the catalog did not answer within {} s", CATALOG_PROBE.as_secs())),
    }
    if ops.closing.is_closing() {
        return not_ready("the scheduler is stopping".into());
    }
    let executors = ops.sampled.cluster.schedulable().len();
    if executors == 0 {
        return not_ready("no executor has joined (or every one is draining)".into());
    }
    format!("ready: {executors} executor(s)\n").into_response()
}
