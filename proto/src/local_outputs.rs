//! Reading a task output that lives in the same executor without going through Flight.
//!
//! With N executors, about 1/N of every shuffle stays on the executor that produced it. An
//! executor registers [`LocalOutputs`] in its session config; a [`crate::StageReaderExec`] whose
//! source is that executor's own endpoint takes the batches straight from the task (same
//! statistics, same errors) instead of encoding them to Arrow IPC and back over loopback.

use std::fmt;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::execution::SendableRecordBatchStream;

use crate::generated::TaskOutputTicket;
use crate::ids::ExecutorAddr;
use crate::stats::TaskStats;

/// One read of a task output partition: its batches, then the statistics to report after them.
pub struct TaskOutputRead {
    pub batches: SendableRecordBatchStream,
    /// Called once the batches are exhausted.
    pub trailer: Box<dyn FnOnce() -> TaskStats + Send>,
}

type Open = dyn Fn(TaskOutputTicket) -> Result<TaskOutputRead> + Send + Sync;

/// The task outputs of the executor this session runs in, and its address.
pub struct LocalOutputs {
    executor: ExecutorAddr,
    open: Arc<Open>,
}

impl LocalOutputs {
    pub fn new(executor: ExecutorAddr, open: Arc<Open>) -> Self {
        Self { executor, open }
    }

    /// Opens the output `ticket` names if it is served by `executor`, this one; `None` if it
    /// lives elsewhere.
    pub fn open(&self, executor: &ExecutorAddr, ticket: TaskOutputTicket) -> Option<Result<TaskOutputRead>> {
        (*executor == self.executor).then(|| (self.open)(ticket))
    }
}

impl fmt::Debug for LocalOutputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOutputs").field("executor", &self.executor).finish_non_exhaustive()
    }
}
