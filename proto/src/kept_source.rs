//! A task output read whole before any of its rows goes on (retry policy `task`).
//!
//! The scheduler's final stage passes rows to the client, which cannot take them back. Under retry
//! policy `task` each source of its readers is therefore read to its end first and kept: in memory
//! up to [`IN_MEMORY`] bytes, then in a file of the scheduler's spill directory (DataFusion's
//! `SpillManager`, counted against that directory's limit). If the source's executor is lost while
//! it is read, the task runs again and the source is read again from its start, and no row has
//! gone on twice. Once read, losing the executor changes nothing: the rows are here.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, SpillMetrics};
use datafusion::physical_plan::spill::SpillManager;
use futures::{StreamExt, TryStreamExt, stream};

use crate::task_error::{TaskError, TaskFailure};

/// Bytes of one source kept in memory; beyond this its rows go to a file.
const IN_MEMORY: usize = 4 << 20;

type Batches = futures::stream::BoxStream<'static, Result<RecordBatch, TaskError>>;

/// Reads `source` to its end and returns a stream replaying it.
pub(crate) async fn keep_whole(
    mut source: Batches,
    schema: SchemaRef,
    runtime: Arc<RuntimeEnv>,
) -> Result<Batches, TaskError> {
    let failed = |e: datafusion::error::DataFusionError| {
        TaskError::new(TaskFailure::Failed, format!("keeping a task's output on the scheduler: {e}"))
    };
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
        return Ok(stream::iter(kept.into_iter().map(Ok)).boxed());
    }
    let manager = SpillManager::new(runtime, SpillMetrics::new(&ExecutionPlanMetricsSet::new(), 0), schema);
    let mut file = manager.create_in_progress_file("task output kept for retry policy 'task'").map_err(failed)?;
    for batch in kept {
        file.append_batch(&batch).map_err(failed)?;
    }
    while let Some(batch) = source.next().await {
        file.append_batch(&batch?).map_err(failed)?;
    }
    let Some(file) = file.finish().map_err(failed)? else {
        return Ok(stream::empty().boxed());
    };
    let replay = manager.read_spill_as_stream(file, None).map_err(failed)?;
    Ok(replay.map_err(failed).boxed())
}
