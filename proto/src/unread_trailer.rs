//! A task output's trailer, taken even when its reader stops early.
//!
//! A task's account (its statistics, its last progress) rides in the last message of its output
//! stream (`trailer.rs`). A reader that stops before that message (the final stage's merge met
//! its LIMIT: most TPC-DS queries end `ORDER BY ... LIMIT 100` over a few hundred rows) drops the
//! stream with the trailer often already received, and the scheduler then asks every executor of
//! the query for the accounts it missed: a round trip on the path to the client (0.47 ms of TPC-DS
//! q15's 19.6 ms). Here a task output's messages are read through a slot; when the reader is
//! dropped, the messages already received are looked through for the trailer, without waiting
//! for any and without decoding a batch.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use arrow::array::RecordBatch;
use arrow_flight::FlightData;
use arrow_flight::error::FlightError;
use futures::stream::{BoxStream, Stream, StreamExt};

use crate::ids::ExecutorAddr;
use crate::stage_reader::TrailerCounters;
use crate::stats::TaskStats;
use crate::task_error::TaskError;

/// A task output's messages, as they come off the wire.
pub(crate) type Messages = BoxStream<'static, Result<FlightData, FlightError>>;

/// The most messages a dropped reader looks through: a stream whose trailer is further behind
/// is still running, and the query's end asks its executor.
const LOOKED_THROUGH: usize = 16;

type Slot = Arc<Mutex<Option<Messages>>>;

/// `messages` read through a slot, and what looks through the rest of them once dropped.
pub(crate) fn through_slot(
    messages: Messages,
    counters: Arc<TrailerCounters>,
    executor: ExecutorAddr,
) -> (impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static, UnreadTrailer) {
    let slot: Slot = Arc::new(Mutex::new(Some(messages)));
    let reading = Arc::clone(&slot);
    let read = futures::stream::poll_fn(move |cx| {
        let mut messages = reading.lock().unwrap_or_else(PoisonError::into_inner);
        messages.as_mut().map_or(Poll::Ready(None), |messages| messages.poll_next_unpin(cx))
    });
    (read, UnreadTrailer { slot, counters, executor })
}

/// On drop, takes the trailer from the messages already received that its reader left.
pub(crate) struct UnreadTrailer {
    slot: Slot,
    counters: Arc<TrailerCounters>,
    executor: ExecutorAddr,
}

impl UnreadTrailer {
    /// `batches` (decoded from the slot's messages), holding this until they are dropped.
    pub(crate) fn held_by(
        self,
        batches: BoxStream<'static, Result<RecordBatch, TaskError>>,
    ) -> BoxStream<'static, Result<RecordBatch, TaskError>> {
        Box::pin(Holding { batches, _unread: self })
    }
}

impl Drop for UnreadTrailer {
    fn drop(&mut self) {
        let Some(mut messages) = self.slot.lock().unwrap_or_else(PoisonError::into_inner).take() else {
            return;
        };
        // Only what has arrived: a message not yet here is not waited for.
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..LOOKED_THROUGH {
            let Poll::Ready(Some(Ok(message))) = messages.poll_next_unpin(&mut cx) else {
                return;
            };
            if let Some(stats) = TaskStats::from_json(&message.app_metadata) {
                self.counters.record(&stats, &self.executor);
                return;
            }
        }
    }
}

/// Batches with the [`UnreadTrailer`] of their messages.
struct Holding {
    batches: BoxStream<'static, Result<RecordBatch, TaskError>>,
    _unread: UnreadTrailer,
}

impl Stream for Holding {
    type Item = Result<RecordBatch, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.batches.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;

    use super::*;
    use crate::stats::{EndedTask, EndedTasks};

    /// A trailer carrying the account of stage 1's task 4.
    fn trailer() -> FlightData {
        let progress = crate::generated::TaskProgress { stage_id: 1, task_id: 4, done: true, ..Default::default() };
        let stats = TaskStats { ended: vec![EndedTask { progress, ..Default::default() }], ..Default::default() };
        FlightData { app_metadata: stats.to_json().into(), ..Default::default() }
    }

    fn batch() -> FlightData {
        FlightData { data_body: vec![7; 64].into(), ..Default::default() }
    }

    /// Reads `read` of `messages` and drops the reader; the accounts taken.
    async fn left_after(messages: Messages, read: usize) -> Vec<EndedTask> {
        let ended = Arc::new(EndedTasks::default());
        let counters = Arc::new(TrailerCounters::new(&ExecutionPlanMetricsSet::new(), 0, Some(Arc::clone(&ended))));
        let executor = ExecutorAddr::parse("127.0.0.1:7000").expect("an address");
        let (mut reading, unread) = through_slot(messages, counters, executor);
        for _ in 0..read {
            assert!(reading.next().await.is_some());
        }
        drop(reading);
        drop(unread);
        ended.take()
    }

    #[tokio::test]
    async fn a_reader_stopped_early_takes_the_trailer_already_received() {
        let messages = futures::stream::iter([batch(), batch(), trailer()].map(Ok)).boxed();
        let ended = left_after(messages, 1).await;
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!((ended[0].progress.stage_id, ended[0].progress.task_id), (1, 4));
        assert_eq!(ended[0].executor, "127.0.0.1:7000");
    }

    #[tokio::test]
    async fn a_trailer_not_yet_received_is_not_waited_for() {
        let messages = futures::stream::iter([batch()].map(Ok)).chain(futures::stream::pending()).boxed();
        assert!(left_after(messages, 0).await.is_empty());
    }

    #[tokio::test]
    async fn a_trailer_behind_many_messages_is_left_to_the_query_end() {
        let many = std::iter::repeat_with(batch).take(LOOKED_THROUGH).chain([trailer()]).map(Ok);
        assert!(left_after(futures::stream::iter(many).boxed(), 0).await.is_empty());
    }

    #[tokio::test]
    async fn a_trailer_its_reader_read_is_not_taken_again() {
        let messages = futures::stream::iter([batch(), trailer()].map(Ok)).boxed();
        assert!(left_after(messages, 2).await.is_empty());
    }
}
