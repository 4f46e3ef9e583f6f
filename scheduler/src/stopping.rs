//! A scheduler's graceful stop (SIGTERM; see `Scheduler::drain`): first it starts no new
//! statement (every door's statements pass the statement gate, which refuses them with
//! [`ErrorKind::ShuttingDown`]) and `/ready` turns 503, while running statements go on to their
//! end; at the drain timeout the ones still running are cancelled: their results end with an
//! error and their history records say CANCELLED.

use std::pin::Pin;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::common::DataFusionError;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::error::{ErrorKind, SchedulerError};
use crate::history::History;
use crate::limits::StatementGate;

/// How often a drain looks at the statements still running.
const POLL: Duration = Duration::from_millis(50);

/// Why a statement still running at the drain timeout ended.
pub const STOPPED: &str = "cancelled: the scheduler stopped before the statement finished";

type Batches = Pin<Box<dyn Stream<Item = Result<RecordBatch, DataFusionError>> + Send>>;

/// Shared by the statement gate, the engine and `/ready`.
#[derive(Clone, Debug, Default)]
pub struct Stopping {
    closed: CancellationToken,
    cancelled: CancellationToken,
}

impl Stopping {
    /// No new statement starts from now on.
    pub fn close(&self) {
        self.closed.cancel();
    }

    pub fn is_closing(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Statements still running end now, cancelled.
    pub fn cancel_running(&self) {
        self.close();
        self.cancelled.cancel();
    }

    /// The refusal of a statement that would start while the scheduler stops.
    pub fn refusal() -> SchedulerError {
        SchedulerError::refused(
            ErrorKind::ShuttingDown,
            "the scheduler is stopping and starts no new statement; try again shortly (or another scheduler)",
        )
    }

    fn stopped() -> SchedulerError {
        SchedulerError::refused(ErrorKind::Cancelled, STOPPED)
    }

    /// `work`, unless the running statements are cancelled first.
    pub async fn bound<T>(&self, work: impl Future<Output = Result<T, SchedulerError>>) -> Result<T, SchedulerError> {
        tokio::select! {
            result = work => result,
            () = self.cancelled.cancelled() => Err(Self::stopped()),
        }
    }

    /// `batches`, ending with an error once the running statements are cancelled.
    pub fn bound_stream(&self, batches: Batches) -> Batches {
        let cancelled = self.cancelled.clone();
        let until = self.cancelled.clone().cancelled_owned();
        let tail = futures::stream::once(async move {
            cancelled.is_cancelled().then(|| Err(DataFusionError::External(Box::new(Self::stopped()))))
        })
        .filter_map(std::future::ready);
        Box::pin(batches.take_until(until).chain(tail))
    }
}

/// How long statements cancelled at the drain timeout get to end before their records are
/// ended for them (a client that stopped reading never polls its result again).
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// How long the servers keep answering after the last running statement ended: its client's
/// calls right after the last batch (ADBC closes its prepared statement) still get their answer.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// What a drain did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Statements that were running when it began.
    pub running: usize,
    /// Statements cancelled at the timeout.
    pub cancelled: usize,
}

/// Stops starting statements, waits up to `timeout` for the running ones, then cancels the rest
/// and records them CANCELLED.
pub async fn drain(gate: &StatementGate, history: &History, timeout: Duration) -> Drained {
    gate.stopping().close();
    let running = gate.running();
    tracing::info!(running, ?timeout, "stopping: no new statement starts; waiting for the running ones");
    let deadline = Instant::now() + timeout;
    while gate.running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let cancelled = gate.running();
    if running > 0 && cancelled == 0 {
        tokio::time::sleep(CLOSE_GRACE).await;
    }
    if cancelled > 0 {
        tracing::warn!(cancelled, "stopping: statements still running at the drain timeout are cancelled");
        gate.stopping().cancel_running();
        let grace = Instant::now() + CANCEL_GRACE;
        while gate.running() > 0 && Instant::now() < grace {
            tokio::time::sleep(POLL).await;
        }
    }
    match history.cancel_unfinished(STOPPED).await {
        Ok(0) => {}
        Ok(ended) => tracing::info!(ended, "stopping: unfinished statements recorded as cancelled"),
        Err(e) => tracing::warn!("stopping: ending the query history: {e}"),
    }
    Drained { running, cancelled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancelled_stop_ends_work_and_streams_with_a_cancellation() {
        let stopping = Stopping::default();
        let pending = futures::stream::pending::<Result<RecordBatch, DataFusionError>>();
        let mut batches = stopping.bound_stream(Box::pin(pending));
        assert!(!stopping.is_closing());
        stopping.cancel_running();
        assert!(stopping.is_closing());
        let error = batches.next().await.expect("an error").expect_err("a cancellation");
        assert!(error.to_string().contains(STOPPED), "{error}");
        assert!(batches.next().await.is_none());
        let work = stopping.bound(std::future::pending::<Result<(), SchedulerError>>()).await;
        assert_eq!(work.expect_err("cancelled").kind(), ErrorKind::Cancelled);
    }

    #[tokio::test]
    async fn an_open_scheduler_passes_streams_unchanged() {
        let stopping = Stopping::default();
        let batches = futures::stream::iter(vec![Ok(RecordBatch::new_empty(std::sync::Arc::new(
            arrow::datatypes::Schema::empty(),
        )))]);
        let all: Vec<_> = stopping.bound_stream(Box::pin(batches)).collect().await;
        assert_eq!(all.len(), 1);
        assert!(all[0].is_ok());
    }
}
