//! Spooled task outputs (retry policy `task`): kept on this executor so that they can be read again.
//!
//! A spooled task runs every output partition it serves when the first read of any of them
//! arrives, and writes each to a file in the executor's spill directory (Arrow IPC, through
//! DataFusion's `SpillManager`, counted against the directory's limit and against the query's
//! spool budget). Every read waits until the whole output is written, then streams its partition
//! from the file, as often as it is asked: a consumer that runs again reads the same rows, and no
//! consumer ever reads part of an output that a re-run would produce in another order. The files
//! go with the task: when its query ends (`CancelQuery`), when it is installed again (a retry on
//! the same executor) or at the task TTL, and give back what they took from the budget.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::common::DataFusionError;
use datafusion::common::runtime::SpawnedTask;
use datafusion::execution::{SendableRecordBatchStream, SpillFile, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt, stream};
use glaux_proto::TaskError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The outcome of a spooled run: every partition's file (none when it had no rows), or why it failed.
type Outcome = Option<Result<Arc<Spooled>, Arc<TaskError>>>;

/// How much one query may keep in the spools of one executor.
#[derive(Debug)]
pub struct SpoolBudget {
    limit: u64,
    used: AtomicU64,
}

impl SpoolBudget {
    pub fn new(limit: u64) -> Self {
        Self { limit, used: AtomicU64::new(0) }
    }

    /// Bytes the query's spools on this executor hold now.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64, charge: &AtomicU64) -> Result<(), DataFusionError> {
        charge.fetch_add(bytes, Ordering::Relaxed);
        let used = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if used > self.limit {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "the query's spooled task outputs on this executor exceed the spool limit ({} MiB); \
                 raise --spool-limit or run it with retry policy 'query'",
                self.limit >> 20
            )));
        }
        Ok(())
    }
}

/// What one spool took from its query's budget, given back when the spool and its run are gone.
#[derive(Debug)]
struct Charge {
    budget: Arc<SpoolBudget>,
    taken: AtomicU64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(*self.taken.get_mut(), Ordering::Relaxed);
    }
}

/// A task's whole output, written.
struct Spooled {
    files: HashMap<u32, Option<Arc<dyn SpillFile>>>,
    manager: SpillManager,
    /// Held for as long as the files are.
    _charge: Arc<Charge>,
}

impl std::fmt::Debug for Spooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let files: Vec<_> = self.files.iter().map(|(p, file)| (p, file.as_ref().and_then(|f| f.path()))).collect();
        f.debug_struct("Spooled").field("files", &files).finish()
    }
}

/// One task's spool: its run, started by the first read, and what it wrote.
#[derive(Debug)]
pub struct Spool {
    run: Mutex<Option<SpawnedTask<()>>>,
    outcome: watch::Sender<Outcome>,
    charge: Arc<Charge>,
}

impl Spool {
    /// An empty spool, whose files count against `budget`.
    pub fn new(budget: Arc<SpoolBudget>) -> Self {
        let charge = Arc::new(Charge { budget, taken: AtomicU64::new(0) });
        Self { run: Mutex::default(), outcome: watch::Sender::new(None), charge }
    }

    /// The whole output has been written.
    pub fn written(&self) -> bool {
        matches!(&*self.outcome.borrow(), Some(Ok(_)))
    }

    /// Partition `partition` of the task's output, once all of it is written. The first read
    /// starts `run`; later reads wait for it.
    pub fn read(&self, partition: u32, run: SpoolRun) -> SendableRecordBatchStream {
        let schema = run.plan.schema();
        self.start(run);
        let mut outcome = self.outcome.subscribe();
        let batches = stream::once(async move {
            let written = outcome
                .wait_for(Option::is_some)
                .await
                .map_err(|_| DataFusionError::Execution("the task's spool was dropped".into()))?
                .clone();
            let spooled = match written {
                Some(Ok(spooled)) => spooled,
                Some(Err(error)) => {
                    let error = TaskError::new(error.failure.clone(), error.message.clone());
                    return Err(DataFusionError::External(Box::new(error)));
                }
                None => unreachable!("waited for an outcome"),
            };
            let file =
                spooled.files.get(&partition).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("the spooled task has no partition {partition}"))
                })?;
            match file {
                Some(file) => spooled.manager.read_spill_as_stream(file, None),
                None => Ok(Box::pin(RecordBatchStreamAdapter::new(spooled.manager.schema().clone(), stream::empty()))
                    as SendableRecordBatchStream),
            }
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(schema, batches))
    }

    fn start(&self, run: SpoolRun) {
        let mut running = self.run.lock().unwrap_or_else(|e| e.into_inner());
        if running.is_some() {
            return;
        }
        let (outcome, charge) = (self.outcome.clone(), Arc::clone(&self.charge));
        *running = Some(SpawnedTask::spawn(async move {
            let cancel = run.cancel.clone();
            let written = tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Arc::new(TaskError::new(
                    glaux_proto::TaskFailure::Cancelled, "query cancelled"))),
                written = run.write(charge) => written.map_err(|e| Arc::new(TaskError::from(&e))),
            };
            outcome.send_replace(Some(written));
        }));
    }
}

/// What a spooled run needs: the task's plan and context, and its partitions.
pub struct SpoolRun {
    pub plan: Arc<dyn ExecutionPlan>,
    pub context: Arc<TaskContext>,
    /// Each served partition, with the partition of `plan` that makes it.
    pub partitions: Vec<(u32, usize)>,
    pub cancel: CancellationToken,
}

impl SpoolRun {
    /// Runs every partition at once (a repartition's outputs must be drained together) into its file.
    async fn write(self, charge: Arc<Charge>) -> Result<Arc<Spooled>, DataFusionError> {
        let metrics = SpillMetrics::new(&ExecutionPlanMetricsSet::new(), 0);
        // What the files hold so far, in bytes written (the partitions' writes never overlap:
        // they are polled by one task, and a write does not yield).
        let written = metrics.spilled_bytes.clone();
        let manager = SpillManager::new(self.context.runtime_env(), metrics, self.plan.schema());
        let writes = self.partitions.iter().map(|&(served, index)| {
            let (manager, charge, written) = (&manager, &charge, &written);
            let batches = self.plan.execute(index, Arc::clone(&self.context));
            async move {
                let mut batches = batches?;
                let mut file = None;
                while let Some(batch) = batches.next().await {
                    let batch = batch?;
                    if batch.num_rows() == 0 {
                        continue;
                    }
                    let file = match &mut file {
                        Some(file) => file,
                        None => file.insert(manager.create_in_progress_file("spooled task output")?),
                    };
                    let before = written.value();
                    file.append_batch(&batch)?;
                    charge.budget.take(written.value().saturating_sub(before) as u64, &charge.taken)?;
                }
                let file = match file {
                    Some(mut file) => file.finish()?,
                    None => None,
                };
                Ok::<_, DataFusionError>((served, file))
            }
        });
        let files = futures::future::try_join_all(writes).await?.into_iter().collect();
        Ok(Arc::new(Spooled { files, manager, _charge: charge }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;

    fn plan() -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |from: i64| {
            let values = Int64Array::from_iter_values(from..from + 1000);
            RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(values)]).unwrap()
        };
        MemorySourceConfig::try_new_exec(&[vec![batch(0), batch(1000)], vec![batch(5000)]], schema, None).unwrap()
    }

    fn run(cancel: CancellationToken) -> SpoolRun {
        SpoolRun { plan: plan(), context: Arc::new(TaskContext::default()), partitions: vec![(3, 0), (7, 1)], cancel }
    }

    fn spool(budget: u64) -> (Spool, Arc<SpoolBudget>) {
        let budget = Arc::new(SpoolBudget::new(budget));
        (Spool::new(Arc::clone(&budget)), budget)
    }

    async fn values(spool: &Spool, partition: u32, run: SpoolRun) -> Result<Vec<i64>, DataFusionError> {
        let batches: Vec<RecordBatch> = spool.read(partition, run).try_collect().await?;
        Ok(batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect())
    }

    #[tokio::test]
    async fn a_spooled_output_is_written_whole_once_and_read_as_often_as_asked() {
        let (spool, budget) = spool(u64::MAX);
        assert!(!spool.written());
        let first = values(&spool, 3, run(CancellationToken::new())).await.unwrap();
        assert_eq!(first, (0..2000).collect::<Vec<_>>());
        assert!(spool.written(), "every partition was written before the first read returned");
        let held = budget.used();
        assert!(held > 0, "the files count against the budget");
        // Later reads (a consumer that runs again) get the same rows, without running the plan
        // again: a cancelled run would fail them, and the budget does not grow.
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        assert_eq!(values(&spool, 3, run(cancelled.clone())).await.unwrap(), first);
        assert_eq!(values(&spool, 7, run(cancelled)).await.unwrap(), (5000..6000).collect::<Vec<_>>());
        assert_eq!(budget.used(), held);
        let unknown = values(&spool, 4, run(CancellationToken::new())).await.unwrap_err();
        assert!(unknown.to_string().contains("no partition 4"), "{unknown}");
        // The spool replaced or ended: its files go, and so does their charge.
        drop(spool);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_spool_over_its_budget_or_cancelled_fails_every_read_with_its_kind() {
        let (spool, budget) = spool(100);
        let error = values(&spool, 3, run(CancellationToken::new())).await.unwrap_err();
        assert_eq!(TaskError::from(&error).failure, glaux_proto::TaskFailure::ResourcesExhausted, "{error}");
        assert!(error.to_string().contains("spool limit"), "{error}");
        let again = values(&spool, 7, run(CancellationToken::new())).await.unwrap_err();
        assert!(again.to_string().contains("spool limit"), "{again}");
        drop(spool);
        assert_eq!(budget.used(), 0, "a failed spool gives back what it took");

        let cancel = CancellationToken::new();
        cancel.cancel();
        let error = values(&self::spool(u64::MAX).0, 3, run(cancel)).await.unwrap_err();
        assert_eq!(TaskError::from(&error).failure, glaux_proto::TaskFailure::Cancelled, "{error}");
    }
}
