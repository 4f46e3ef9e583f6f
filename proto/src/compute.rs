//! Where plans run: on a runtime apart from the one that answers the network.
//!
//! DataFusion's operators give their thread back only every so many batches (tokio's cooperative
//! budget), so a scan of a large JSON file or a join can hold a worker thread for seconds. On the
//! runtime that also answers HTTP/2 keep-alive pings and control calls, that makes a busy member
//! look lost: its pings go unanswered for the keep-alive timeout (`channels.rs`) and the queries
//! reading from it fail or run their tasks again. So a member runs its plans on a [`Compute`]
//! runtime that the binary makes, and keeps its own runtime for the network: connections
//! ([`ClusterChannels`](crate::ClusterChannels) spawns theirs there), Flight and control services,
//! heartbeats.

use datafusion::common::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use futures::StreamExt;
use tokio::runtime::{EnterGuard, Handle};

/// How many batches a driven stream may have ready before its reader takes them.
const AHEAD: usize = 2;

/// The runtime plans run on.
#[derive(Clone, Debug)]
pub struct Compute {
    handle: Handle,
}

impl Compute {
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// Plans run on the caller's runtime (for embedders and tests that make no second one).
    pub fn current() -> Self {
        Self::new(Handle::current())
    }

    /// While the guard lives, whatever the caller spawns runs on this runtime.
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// The stream `make` returns, made and driven on this runtime: its batches come through a
    /// channel [`AHEAD`] deep, so whoever reads it (a Flight response, a client's stream) only
    /// waits for them. Dropping the result stops the work; an error or a panic in it reaches
    /// the reader.
    pub fn stream(
        &self,
        make: impl FnOnce() -> Result<SendableRecordBatchStream>,
    ) -> Result<SendableRecordBatchStream> {
        let _on = self.enter();
        let mut batches = make()?;
        let mut builder = RecordBatchReceiverStreamBuilder::new(batches.schema(), AHEAD);
        let sender = builder.tx();
        builder.spawn(async move {
            while let Some(batch) = batches.next().await {
                let failed = batch.is_err();
                // Stops when the reader is gone, and after an error (which ends the stream for it).
                if sender.send(batch).await.is_err() || failed {
                    break;
                }
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Spawns a connection's tasks (tonic's and hyper's) on the runtime it was made for, whichever
/// runtime first uses the connection.
#[derive(Clone, Debug)]
pub(crate) struct SpawnOn(pub Handle);

impl<F> hyper::rt::Executor<F> for SpawnOn
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        // Owned by the connection: it ends when the channel and its clients are dropped.
        drop(self.0.spawn(future));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::stream;

    use super::*;

    /// A stream whose every batch holds its thread for `busy` without yielding, as a scan of a
    /// large file does between its cooperative yields.
    fn hogging(busy: Duration, batches: i64) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let out = Arc::clone(&schema);
        let batches = stream::iter(0..batches).map(move |n| {
            std::thread::sleep(busy);
            Ok(RecordBatch::try_new(Arc::clone(&out), vec![Arc::new(Int64Array::from(vec![n]))])?)
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    /// How late a 10 ms timer on `runtime` fires, at worst, while the stream `make` returns is
    /// read there.
    fn longest_timer_delay(
        runtime: &tokio::runtime::Runtime,
        make: impl FnOnce() -> SendableRecordBatchStream + Send + 'static,
    ) -> Duration {
        use std::sync::atomic::{AtomicBool, Ordering};
        let done = Arc::new(AtomicBool::new(false));
        // Both spawned: tasks on the runtime's one worker thread, as a connection's are.
        let ticks = runtime.spawn({
            let done = Arc::clone(&done);
            async move {
                let mut longest = Duration::ZERO;
                while !done.load(Ordering::Acquire) {
                    let tick = Instant::now();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    longest = longest.max(tick.elapsed());
                }
                longest
            }
        });
        let read = runtime.spawn(async move {
            let mut batches = make();
            let mut read = 0;
            while let Some(batch) = batches.next().await {
                read += batch.unwrap().num_rows();
            }
            done.store(true, Ordering::Release);
            read
        });
        assert_eq!(runtime.block_on(read).unwrap(), 4, "every batch is read");
        runtime.block_on(ticks).unwrap()
    }

    #[test]
    fn the_network_runtime_answers_while_plans_hog_the_compute_one() {
        let runtime = || tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (network, compute) = (runtime(), runtime());
        let hog = || Ok(hogging(Duration::from_millis(300), 4));

        let compute = Compute::new(compute.handle().clone());
        let longest = longest_timer_delay(&network, move || compute.stream(hog).unwrap());
        assert!(longest < Duration::from_millis(200), "the network runtime was held for {longest:?}");

        // On one runtime, the hog holds its only thread for a batch's whole 300 ms.
        let longest = longest_timer_delay(&network, move || Compute::current().stream(hog).unwrap());
        assert!(longest >= Duration::from_millis(250), "{longest:?}");
    }

    #[test]
    fn a_failure_in_the_driven_stream_reaches_its_reader_and_dropping_it_stops_the_work() {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let compute = Compute::new(runtime.handle().clone());
        runtime.block_on(async {
            let failing = compute.stream(|| Err(datafusion::error::DataFusionError::Execution("no plan".into())));
            assert!(failing.is_err());
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            let broken = stream::iter([Err(datafusion::error::DataFusionError::Execution("bad file".into()))]);
            let mut batches = compute
                .stream(|| Ok(Box::pin(RecordBatchStreamAdapter::new(schema, broken)) as SendableRecordBatchStream))
                .unwrap();
            let error = batches.next().await.unwrap().unwrap_err();
            assert!(error.to_string().contains("bad file"), "{error}");

            // An endless stream stops once its reader is dropped.
            let polled = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = Arc::clone(&polled);
            let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
            let out = Arc::clone(&schema);
            let endless = stream::repeat_with(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(RecordBatch::try_new(Arc::clone(&out), vec![Arc::new(Int64Array::from(vec![1]))])?)
            });
            let mut batches = compute
                .stream(|| Ok(Box::pin(RecordBatchStreamAdapter::new(schema, endless)) as SendableRecordBatchStream))
                .unwrap();
            batches.next().await.unwrap().unwrap();
            drop(batches);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let after_drop = polled.load(std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(polled.load(std::sync::atomic::Ordering::Relaxed), after_drop, "the work went on");
        });
    }
}
