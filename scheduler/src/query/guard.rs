//! Ending a query's tasks on its executors: when its stream ends ([`QueryGuard::finish`], which
//! collects the tasks' statistics), or in the background when the stream is dropped early (a
//! vanished or cancelling client, a LIMIT satisfied).
//!
//! A query whose every task's account came down the trailers with its results ([`Accounts`])
//! ends without asking its executors: its tasks are freed in the background. Any other (a LIMIT
//! that stopped reading, a task run again, a client reading the executors) asks each executor,
//! which cancels what still runs and accounts for every task of the query.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt, stream};
use glaux_proto::generated::CancelQueryRequest;
use glaux_proto::{ClusterChannels, EndedTask, EndedTasks, ExecutorAddr, QueryId, TaskStats};
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

/// A query whose tasks are cancelled in the background: its stream was dropped before it ended,
/// or it ended with every task's account from the trailers.
#[derive(Debug)]
pub struct Abandoned {
    pub query: QueryId,
    pub executors: Vec<ExecutorAddr>,
}

/// The finished tasks' accounts the final stage's readers received, and the tasks they must cover.
pub(super) struct Accounts {
    pub received: Arc<EndedTasks>,
    /// Every task of the plan, as (stage, task), sorted.
    pub expected: Vec<(u32, u32)>,
    /// Tasks run again after their executor was lost (their accounts are their executors' to give).
    pub reruns: Arc<AtomicU64>,
}

impl Accounts {
    /// Every task's account, exactly once each; `None` if any is missing or doubled.
    fn complete(&self) -> Option<Vec<EndedTask>> {
        let received = self.received.take();
        if self.reruns.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let mut tasks: Vec<(u32, u32)> = received.iter().map(|a| (a.progress.stage_id, a.progress.task_id)).collect();
        tasks.sort_unstable();
        (tasks == self.expected).then_some(received)
    }
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
    /// Where the final stage's readers put the tasks' accounts (none when a client reads the
    /// executors).
    pub accounts: Option<Accounts>,
    /// Counts how each query's accounts came.
    pub metrics: Arc<crate::metrics::SchedulerMetrics>,
}

impl QueryGuard {
    /// What every task reports for itself: from the trailers if each task's account came there
    /// (the guard, dropped, then frees the tasks in the background), otherwise by ending the
    /// query on every executor (cancelling what still runs: a LIMIT may stop reading early).
    async fn finish(self) -> Late {
        let complete = self.accounts.as_ref().and_then(Accounts::complete);
        if self.accounts.as_ref().is_none_or(|a| !a.expected.is_empty()) {
            self.metrics.query_ended(complete.is_some());
        }
        if let Some(accounts) = complete {
            let mut late = Late::default();
            for EndedTask { executor, progress, stats } in accounts {
                late.stats.merge(&stats);
                late.tasks.push(ExecutorTask { executor, task: progress });
            }
            return late;
        }
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

/// Tells executors to forget the tasks of abandoned queries (and of those that ended with every
/// task's account), for as long as the scheduler runs.
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

#[cfg(test)]
mod tests {
    use glaux_proto::generated::TaskProgress;

    use super::*;

    fn account(stage: u32, task: u32, bytes: u64) -> EndedTask {
        EndedTask {
            executor: "127.0.0.1:1".into(),
            progress: TaskProgress { stage_id: stage, task_id: task, done: true, ..Default::default() },
            stats: TaskStats { bytes_scanned: bytes, ..Default::default() },
        }
    }

    fn accounts(received: &[EndedTask], reruns: u64) -> Accounts {
        let kept = Arc::new(EndedTasks::default());
        kept.receive("127.0.0.1:1", received);
        Accounts { received: kept, expected: vec![(0, 0), (0, 1), (1, 0)], reruns: Arc::new(AtomicU64::new(reruns)) }
    }

    #[test]
    fn only_every_task_once_ends_a_query_from_its_trailers() {
        let all = [account(1, 0, 5), account(0, 1, 7), account(0, 0, 11)];
        let ended = accounts(&all, 0).complete().expect("every task's account came");
        assert_eq!(ended.iter().map(|a| a.stats.bytes_scanned).sum::<u64>(), 23);
        assert!(accounts(&all[..2], 0).complete().is_none(), "a task's account is missing");
        let doubled = [&all[..], &[account(0, 1, 7)]].concat();
        assert!(accounts(&doubled, 0).complete().is_none(), "a task's account came twice");
        let other = [account(1, 0, 5), account(0, 1, 7), account(2, 0, 11)];
        assert!(accounts(&other, 0).complete().is_none(), "a task the plan does not have");
        assert!(accounts(&all, 1).complete().is_none(), "a task ran again");
    }
}
