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
use crate::stats::TaskStats;

/// One read of a task output partition: its batches, then the statistics to report after them.
pub struct TaskOutputRead {
    pub batches: SendableRecordBatchStream,
    /// Called once the batches are exhausted.
    pub trailer: Box<dyn FnOnce() -> TaskStats + Send>,
}

type Open = dyn Fn(TaskOutputTicket) -> Result<TaskOutputRead> + Send + Sync;

/// The task outputs of the executor this session runs in, and its endpoint.
pub struct LocalOutputs {
    endpoint: String,
    open: Arc<Open>,
}

impl LocalOutputs {
    pub fn new(endpoint: String, open: Arc<Open>) -> Self {
        Self { endpoint, open }
    }

    /// Opens the output `ticket` names if it is served at `endpoint`, this executor; `None` if it
    /// lives elsewhere.
    pub fn open(&self, endpoint: &str, ticket: TaskOutputTicket) -> Option<Result<TaskOutputRead>> {
        (endpoint == self.endpoint).then(|| (self.open)(ticket))
    }
}

impl fmt::Debug for LocalOutputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalOutputs").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}
