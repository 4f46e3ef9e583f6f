//! Ending a query's tasks on its executors: when its stream ends ([`QueryGuard::finish`], which
//! collects the tasks' statistics), or in the background when the stream is dropped early (a
//! vanished or cancelling client, a LIMIT satisfied).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use glaux_proto::generated::CancelQueryRequest;
use glaux_proto::{ClusterChannels, ExecutorAddr, QueryId, TaskStats};
use tokio::sync::mpsc;

use super::stage_progress::ExecutorTask;

/// How long ending a query waits for each executor's statistics.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a query's tasks reported when it ended: their statistics, and each task; and each task as
/// last described while it ran (to someone watching its progress).
#[derive(Debug, Default)]
pub(super) struct Late {
    pub stats: TaskStats,
    pub tasks: Vec<ExecutorTask>,
    pub seen: Vec<ExecutorTask>,
}

/// A query whose stream was dropped before it ended: its tasks are cancelled in the background.
#[derive(Debug)]
pub struct Abandoned {
    pub query: QueryId,
    pub executors: Vec<ExecutorAddr>,
}

/// Ends a query's tasks on its executors.
pub(super) struct QueryGuard {
    pub query: QueryId,
    /// Executors with tasks of the query (a re-run may add one while it runs).
    pub executors: Arc<Mutex<Vec<ExecutorAddr>>>,
    pub abandoned: mpsc::UnboundedSender<Abandoned>,
    pub channels: Arc<ClusterChannels>,
    /// Keeps the files the query was planned with while it runs.
    pub _in_use: Option<glaux_storage::InUse>,
}

impl QueryGuard {
    /// Ends the query on every executor (cancelling what still runs: a LIMIT may stop reading
    /// early) and returns what every task reports for itself.
    async fn finish(self) -> Late {
        let calls = self.take_executors().into_iter().map(|executor| {
            let (channels, query) = (Arc::clone(&self.channels), self.query.clone());
            async move {
                let mut client = channels.executor_control(&executor).ok()?;
                let call = client.cancel_query(CancelQueryRequest { query_id: query.to_string() });
                let response = tokio::time::timeout(FINISH_TIMEOUT, call).await.ok()?.ok()?.into_inner();
                Some((executor, response))
            }
        });
        let mut late = Late::default();
        for (executor, response) in futures::future::join_all(calls).await.into_iter().flatten() {
            if let Some(stats) = TaskStats::from_json(&response.stats) {
                late.stats.merge(&stats);
            }
            let executor = executor.to_string();
            let tasks = response.task_progress.into_iter();
            late.tasks.extend(tasks.map(|task| ExecutorTask { executor: executor.clone(), task }));
        }
        late
    }

    fn take_executors(&self) -> Vec<ExecutorAddr> {
        let mut executors = std::mem::take(&mut *self.executors.lock().unwrap_or_else(|e| e.into_inner()));
        executors.sort();
        executors.dedup();
        executors
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        let executors = self.take_executors();
        if !executors.is_empty() {
            // The receiver lives as long as the scheduler; after that there is nothing to clean.
            let _ = self.abandoned.send(Abandoned { query: self.query.clone(), executors });
        }
    }
}

/// The query's batches, then (once they end) its tasks ended everywhere and their statistics
/// put in `late`. Dropped early, the guard cancels in the background.
pub(super) fn guarded(
    batches: SendableRecordBatchStream,
    guard: QueryGuard,
    late: Arc<Mutex<Late>>,
) -> impl Stream<Item = Result<RecordBatch>> + Send {
    let finish = stream::once(async move {
        let (query, started) = (guard.query.clone(), std::time::Instant::now());
        let ended = guard.finish().await;
        // The end-of-query call is on every query's path to its client (its cost, measured:
        // benchmarks/README.md, 2026-12-04).
        tracing::debug!(%query, ending = ?started.elapsed(), "tasks ended");
        let mut late = late.lock().unwrap_or_else(|e| e.into_inner());
        late.stats.merge(&ended.stats);
        late.tasks.extend(ended.tasks);
        None
    });
    batches.map(Some).chain(finish).filter_map(std::future::ready)
}

/// Tells executors to forget the tasks of abandoned queries, for as long as the scheduler runs.
pub async fn cancel_abandoned(mut abandoned: mpsc::UnboundedReceiver<Abandoned>, channels: Arc<ClusterChannels>) {
    while let Some(Abandoned { query, executors }) = abandoned.recv().await {
        for executor in executors {
            let Ok(mut client) = channels.executor_control(&executor) else { continue };
            let request = CancelQueryRequest { query_id: query.to_string() };
            if let Err(status) = client.cancel_query(request).await {
                tracing::debug!(%query, %executor, "cancel failed: {}", status.message());
            }
        }
    }
}
