//! Task outputs read whole before any of their rows goes on (retry policy `task`).
//!
//! The scheduler's final stage passes rows to the client, which cannot take them back. Under retry
//! policy `task` its readers therefore read each task they read from **whole, every partition of
//! it from one attempt**, before any of its rows goes on, and keep it: each partition in memory up
//! to [`IN_MEMORY`] bytes, then in a file of the scheduler's spill directory (DataFusion's
//! `SpillManager`, counted against that directory's limit). If the task's executor is lost while
//! it is read, the task runs again and all of it is read again, and no row has gone on twice. Once
//! read, losing the executor changes nothing: the rows are here.
//!
//! Whole tasks, not single partitions: which of a task's partitions a row comes out of need not
//! be the same in two runs (a `CollectLeft` join emits its build side's rows from whichever
//! partition finishes last), so partitions of two attempts of one task do not add up to its
//! output. The first reader to ask for any partition of a task fetches all of them (those the
//! reader reads); the others take theirs from the same fetch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::SpillFile;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt, stream};

use crate::ids::{StageId, TaskId};
use crate::stage_reader::{SourceContext, SourceStream, TaskOutput, open_task_output};
use crate::task_error::{TaskError, TaskFailure};
use crate::task_rerun::RerunHandle;

/// Bytes of one partition kept in memory; beyond this its rows go to a file.
const IN_MEMORY: usize = 4 << 20;

/// One partition of a task's output, read whole.
enum Kept {
    Memory(Vec<RecordBatch>),
    File { file: Arc<dyn SpillFile>, manager: SpillManager },
    Empty,
}

impl Kept {
    /// Its rows, from the start.
    fn replay(&self) -> Result<SourceStream, TaskError> {
        match self {
            Kept::Memory(batches) => Ok(stream::iter(batches.clone().into_iter().map(Ok)).boxed()),
            Kept::Empty => Ok(stream::empty().boxed()),
            Kept::File { file, manager } => {
                let replay = manager.read_spill_as_stream(Arc::clone(file), None).map_err(kept_failed)?;
                Ok(replay.map_err(kept_failed).boxed())
            }
        }
    }
}

fn kept_failed(e: DataFusionError) -> TaskError {
    TaskError::new(TaskFailure::Failed, format!("keeping a task's output on the scheduler: {e}"))
}

/// Reads `source` to its end and keeps it.
async fn keep_whole(mut source: SourceStream, schema: SchemaRef, runtime: Arc<RuntimeEnv>) -> Result<Kept, TaskError> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    while let Some(batch) = source.next().await {
        let batch = batch?;
        bytes += batch.get_array_memory_size();
        kept.push(batch);
        if bytes > IN_MEMORY {
            break;
        }
    }
    if bytes <= IN_MEMORY {
        return Ok(Kept::Memory(kept));
    }
    let manager = SpillManager::new(runtime, SpillMetrics::new(&ExecutionPlanMetricsSet::new(), 0), schema);
    let mut file = manager.create_in_progress_file("task output kept for retry policy 'task'").map_err(kept_failed)?;
    for batch in kept {
        file.append_batch(&batch).map_err(kept_failed)?;
    }
    while let Some(batch) = source.next().await {
        file.append_batch(&batch?).map_err(kept_failed)?;
    }
    Ok(match file.finish().map_err(kept_failed)? {
        Some(file) => Kept::File { file, manager },
        None => Kept::Empty,
    })
}

/// A task's partitions (those its reader reads), all from one attempt; each leaves when its
/// reader takes it, so what the scheduler holds shrinks as the rows go on.
type KeptTask = Mutex<HashMap<u32, Kept>>;

type Fetch = Shared<BoxFuture<'static, Result<Arc<KeptTask>, Arc<TaskError>>>>;

/// The tasks a query's final stage keeps whole, each fetched once for all its readers.
#[derive(Default)]
pub struct KeptTasks {
    fetches: Mutex<HashMap<(StageId, TaskId), Fetch>>,
}

impl std::fmt::Debug for KeptTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tasks = self.fetches.lock().map_or(0, |fetches| fetches.len());
        f.debug_struct("KeptTasks").field("tasks", &tasks).finish()
    }
}

/// Partition `output` of a task, once the whole task is kept.
pub(crate) fn read_kept(
    context: SourceContext,
    output: TaskOutput,
    handle: Arc<RerunHandle>,
) -> futures::stream::BoxStream<'static, Result<RecordBatch>> {
    let key = (context.stage, output.task);
    let fetch = {
        let mut fetches = handle.kept.fetches.lock().unwrap_or_else(|e| e.into_inner());
        let fetch = fetches.entry(key).or_insert_with(|| {
            let outputs: Vec<TaskOutput> =
                context.all_outputs.iter().flatten().filter(|o| o.task == output.task).cloned().collect();
            keep_task(context.clone(), outputs, Arc::clone(&handle)).boxed().shared()
        });
        fetch.clone()
    };
    let partition = output.partition;
    stream::once(async move {
        let task = fetch.await.map_err(|error| TaskError::new(error.failure.clone(), error.message.clone()))?;
        let kept = task.lock().unwrap_or_else(|e| e.into_inner()).remove(&partition);
        match kept {
            Some(kept) => kept.replay(),
            None => Err(TaskError::new(
                TaskFailure::Failed,
                format!("stage {} task {} has no kept partition {partition} (or it was read already)", key.0, key.1),
            )),
        }
    })
    .try_flatten()
    .map_err(|error| DataFusionError::External(Box::new(error)))
    .boxed()
}

/// Reads every one of `outputs` (the partitions of one task) whole from one attempt; when that
/// fails because an executor was lost, has the task run again and reads all of it again.
async fn keep_task(
    context: SourceContext,
    mut outputs: Vec<TaskOutput>,
    handle: Arc<RerunHandle>,
) -> Result<Arc<KeptTask>, Arc<TaskError>> {
    let Some(task) = outputs.first().map(|o| o.task) else {
        return Ok(Arc::default());
    };
    let (mut attempt, mut reruns) = (0, 0);
    loop {
        let reads = outputs.iter().map(|output| {
            let context = &context;
            async move {
                let opened = open_task_output(context, output).await?;
                let kept = keep_whole(opened, Arc::clone(&context.schema), Arc::clone(&context.runtime)).await?;
                Ok::<_, TaskError>((output.partition, kept))
            }
        });
        let error = match futures::future::try_join_all(reads).await {
            Ok(kept) => return Ok(Arc::new(Mutex::new(kept.into_iter().collect()))),
            Err(error) => error,
        };
        // A loss, of the task's own executor or of one it read from (the stages below keep their
        // outputs, so the task can run again from them), is made good by running the task again.
        let lost = error.lost_executor().cloned().filter(|_| reruns < handle.max_per_source);
        let again = match lost {
            Some(lost) => match handle.rerun.rerun(context.stage, task, attempt, &lost, 0).await {
                Ok(again) => {
                    tracing::warn!(query = %context.query, stage = %context.stage, %task, %lost,
                        executor = %again.executor, attempt = again.attempt, "task re-run after losing an executor");
                    reruns += 1;
                    again
                }
                Err(why) => {
                    let message = format!("{}; not re-run: {why}", error.message);
                    return Err(Arc::new(TaskError { message, ..error }));
                }
            },
            // An attempt that a re-run replaced ends with an error of its own: read the new one.
            None => match handle.rerun.later_attempt(context.stage, task, attempt).await {
                Some(again) => again,
                None => return Err(Arc::new(error)),
            },
        };
        attempt = again.attempt;
        for output in &mut outputs {
            output.executor = again.executor.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::TaskContext;
    use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use datafusion::prelude::SessionConfig;

    use super::*;
    use crate::ids::{ExecutorAddr, QueryId};
    use crate::local_outputs::{LocalOutputs, TaskOutputRead};
    use crate::task_rerun::{Rerun, RerunResult, TaskRerun};
    use crate::{ClusterChannels, ClusterSecret, StageReaderExec};

    /// Runs the task again by moving on to the next attempt.
    #[derive(Debug)]
    struct NextAttempt(Arc<AtomicU32>, ExecutorAddr);

    impl TaskRerun for NextAttempt {
        fn rerun(&self, _: StageId, _: TaskId, _: u32, _: &ExecutorAddr, _: u64) -> BoxFuture<'static, RerunResult> {
            let attempt = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            futures::future::ready(Ok(Rerun { executor: self.1.clone(), attempt })).boxed()
        }
    }

    /// A task whose rows 1 and 2 leave by partition 0 in its first run and by partition 1 in
    /// the next (as a `CollectLeft` semi join's do, from whichever partition finishes last), and
    /// whose first run's partition 1 fails with the loss of an executor it read from.
    #[tokio::test]
    async fn a_task_run_again_is_read_whole_from_one_attempt() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let here = ExecutorAddr::parse("127.0.0.1:1").unwrap();
        let attempt = Arc::new(AtomicU32::new(0));
        let open = {
            let (schema, attempt) = (Arc::clone(&schema), Arc::clone(&attempt));
            move |ticket: crate::generated::TaskOutputTicket| {
                let rows = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(vec![1, 2]))])?;
                let lost = || {
                    let error =
                        TaskError::new(TaskFailure::LostExecutor(ExecutorAddr::parse("127.0.0.1:2").unwrap()), "lost");
                    DataFusionError::External(Box::new(error))
                };
                let batches: Vec<Result<RecordBatch>> = match (attempt.load(Ordering::SeqCst), ticket.partition) {
                    (0, 0) => vec![Ok(rows)],
                    (0, _) => vec![Err(lost())],
                    (_, 1) => vec![Ok(rows)],
                    _ => vec![],
                };
                let batches = Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&schema), stream::iter(batches)));
                Ok(TaskOutputRead { batches, trailer: Box::new(crate::stats::TaskStats::default) })
            }
        };
        let config = SessionConfig::new()
            .with_extension(Arc::new(ClusterChannels::new(ClusterSecret::generate())))
            .with_extension(Arc::new(LocalOutputs::new(here.clone(), Arc::new(open))))
            .with_extension(Arc::new(RerunHandle {
                rerun: Arc::new(NextAttempt(Arc::clone(&attempt), here.clone())),
                max_per_source: 4,
                keep_sources: true,
                kept: KeptTasks::default(),
            }));
        let context = Arc::new(TaskContext::default().with_session_config(config));
        let output = |partition| TaskOutput {
            executor: here.clone(),
            task: TaskId(0),
            partition,
            read_token: Default::default(),
        };
        let reader = StageReaderExec::new(
            QueryId::from("q".to_string()),
            StageId(1),
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(2),
            vec![vec![output(0)], vec![output(1)]],
        );
        let mut values = Vec::new();
        for partition in 0..2 {
            let batches: Vec<RecordBatch> =
                reader.execute(partition, Arc::clone(&context)).unwrap().try_collect().await.unwrap();
            for batch in batches {
                let column = batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                values.extend(column.values().iter().copied());
            }
        }
        values.sort_unstable();
        assert_eq!(values, vec![1, 2], "each row once, from the second attempt's partition 1");
        assert_eq!(attempt.load(Ordering::SeqCst), 1, "the task ran again once");
    }
}
