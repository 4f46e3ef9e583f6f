//! Distributed planning: from DataFusion's physical plan to stages of tasks.
//!
//! ```text
//!   CoalescePartitionsExec            <- stage 0: runs on the scheduler
//!     AggregateExec(FinalPartitioned)
//!       RepartitionExec(Hash)         <- exchange
//!         StageReaderExec(stage 1)    <- reads stage 1's task outputs over Flight
//!
//!   stage 1 (executors)
//!     AggregateExec(Partial)
//!       DataSourceExec(parquet)       <- partitions balanced over executors by bytes
//! ```
//!
//! A stage is a fragment whose output another fragment reads through an exchange. Today every
//! executor stage is a *leaf* stage (scans and everything up to the first exchange) read by a
//! gather; hash shuffles and broadcasts between executors add [`Exchange`] kinds and stages whose
//! inputs are other stages, without changing these types.

mod assign_tasks;
mod cut_stages;
mod explain;
mod restrict_to_task;

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use glaux_proto::{QueryId, StageId, TaskId};

use crate::catalog::TableScanReport;

pub use assign_tasks::assign_tasks;
pub use cut_stages::cut_stages;
pub use explain::render_distributed_plan;
pub use restrict_to_task::restrict_to_task;

/// A query cut into stages.
#[derive(Debug)]
pub struct DistributedPlan {
    pub query: QueryId,
    /// The final fragment. It runs on the scheduler and reads executor stages through
    /// `StageReaderExec` nodes.
    pub root: Arc<dyn ExecutionPlan>,
    /// Executor stages, inputs before the stages that read them.
    pub stages: Vec<Stage>,
    /// The partitions and files chosen by each scan of a partitioned table.
    pub scans: Vec<TableScanReport>,
}

impl DistributedPlan {
    /// Executors this plan runs tasks on (their endpoints, deduplicated).
    pub fn executor_endpoints(&self) -> Vec<String> {
        let mut endpoints: Vec<String> =
            self.stages.iter().flat_map(|s| s.tasks.iter().map(|t| t.endpoint.clone())).collect();
        endpoints.sort();
        endpoints.dedup();
        endpoints
    }
}

/// How a stage's output reaches its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Each output partition is read whole by one partition of the consumer.
    Gather,
}

#[derive(Debug)]
pub struct Stage {
    pub id: StageId,
    /// The fragment every task of the stage runs (each task its own partitions of it).
    pub plan: Arc<dyn ExecutionPlan>,
    pub exchange: Exchange,
    pub tasks: Vec<Task>,
    /// Files (or byte ranges) the stage scans, and their bytes.
    pub files: usize,
    pub bytes: u64,
}

/// The share of one stage that one executor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    /// `host:port` of the executor that runs it.
    pub endpoint: String,
    /// Output partitions of the stage plan that this task produces.
    pub partitions: Vec<u32>,
    /// Bytes its scans are expected to read.
    pub bytes: u64,
}
