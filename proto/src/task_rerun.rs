//! Re-running a task whose executor was lost, so that the reader of its output carries on.
//!
//! The scheduler puts a [`TaskRerun`] in the session config of the plan it runs itself; a
//! [`crate::StageReaderExec`] whose source executor stops answering asks it to run the task again
//! elsewhere, then reads the new output from there, skipping the rows it already passed on. Whether
//! a task may be re-run (it reads only storage, and yields its rows in the same order every time, or
//! has not yielded any yet) is the scheduler's decision; executors install no `TaskRerun`, so a lost
//! executor ends the reads between executors with an error naming it.

use std::fmt;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::ids::{ExecutorAddr, StageId, TaskId};

/// Where a re-run task serves its output, or why it cannot be re-run.
pub type RerunResult = Result<Rerun, String>;

/// A task's run after a re-run: the executor serving its output, and which attempt it is (the
/// first run is attempt 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rerun {
    pub executor: ExecutorAddr,
    pub attempt: u32,
}

pub trait TaskRerun: Send + Sync + fmt::Debug {
    /// Runs task `task` of `stage` again, its attempt `attempt` having failed because `lost` was
    /// lost (its own executor, or one it read from). The reader asking has already passed on the
    /// first `delivered` rows of its partition of the task's output and will skip them in the new
    /// output, so the task must yield them again in the same order.
    fn rerun(
        &self,
        stage: StageId,
        task: TaskId,
        attempt: u32,
        lost: &ExecutorAddr,
        delivered: u64,
    ) -> BoxFuture<'static, RerunResult>;

    /// A later attempt of the task than `attempt`, if one runs (after any re-run in progress):
    /// a reader whose source failed for another reason than a loss asks, because an attempt that
    /// a re-run replaced ends with an error of its own.
    fn later_attempt(&self, _stage: StageId, _task: TaskId, _attempt: u32) -> BoxFuture<'static, Option<Rerun>> {
        futures::future::ready(None).boxed()
    }
}

/// The session-config extension through which the scheduler offers re-runs to its readers, and
/// how often one reader source may be re-run before its reader gives up (the scheduler's policy).
#[derive(Debug)]
pub struct RerunHandle {
    pub rerun: Arc<dyn TaskRerun>,
    pub max_per_source: usize,
    /// Retry policy `task`: each task is read whole, every partition from one attempt, and kept
    /// (in memory, then on disk) before any of its rows goes on, so a task that runs again is read
    /// again from its start; and a loss relayed from further down (an executor the task read
    /// from) is re-run too (`kept_source.rs`).
    pub keep_sources: bool,
    /// Retry policy `task`: the tasks kept whole so far (`kept_source.rs`).
    pub kept: crate::kept_source::KeptTasks,
}
