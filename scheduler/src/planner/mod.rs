//! Distributed planning: from DataFusion's physical plan to a tree of stages of tasks.
//!
//! ```text
//!   SortPreservingMergeExec                 <- stage 0: the final gather, on the scheduler
//!     StageReaderExec(stage 2)
//!
//!   stage 2 (executors; gathered)
//!     SortExec
//!       AggregateExec(FinalPartitioned)
//!         StageReaderExec(stage 1)          <- bucket j of every stage 1 task
//!
//!   stage 1 (executors; hash shuffle)
//!     RepartitionExec(Hash)                 <- each task over its own input partitions
//!       AggregateExec(Partial)
//!         DataSourceExec(parquet)           <- partitions balanced over executors by bytes
//! ```
//!
//! Before cutting, `cut_at_row_groups` moves DataFusion's byte-range cuts inside Parquet files to
//! row-group starts, so partitions read equal work. `cut_stages` cuts at exchanges (see there for
//! the rules), `assign_tasks` spreads each stage's partitions over executors, `restrict_to_task`
//! gives each task a plan naming only its files, `attach_join_filters` gives the readers under a
//! hash join its dynamic filter, and `render_distributed_plan` draws the tree for
//! `EXPLAIN`; `invariants` checks the contracts between stages on every plan before it runs.

mod assign_tasks;
mod attach_join_filters;
mod cut_stages;
mod explain;
mod invariants;
mod restrict_to_task;
mod row_group_cuts;
mod scan_files;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use glaux_catalog::TableScanReport;
use glaux_proto::{ExecutorAddr, QueryId, StageId, StageReaderExec, TaskId};

use attach_join_filters::attach_join_filters;

pub use cut_stages::cut_stages;
pub use explain::{render_analyzed_plan, render_distributed_plan};
pub use restrict_to_task::{TaskPlan, task_plan};
pub use row_group_cuts::cut_at_row_groups;
pub use scan_files::estimated_scan_bytes;

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
    /// Signs its tasks' run tokens (and, re-run, again).
    pub signer: Arc<glaux_proto::TaskSigner>,
    /// Retry policy `task`: every task keeps its output in a spool on its executor.
    pub spool: bool,
}

impl DistributedPlan {
    /// Cuts `plan` into stages for `executors` and checks the contracts between them.
    pub fn cut(
        query: QueryId,
        plan: Arc<dyn ExecutionPlan>,
        executors: &[crate::cluster::ExecutorInfo],
        scans: Vec<TableScanReport>,
        signer: &Arc<glaux_proto::TaskSigner>,
        small: Option<u64>,
    ) -> Result<Self, CutError> {
        let (root, mut stages) = cut_stages(&query, plan, executors, signer, small)?;
        for stage in &mut stages {
            stage.plan = attach_join_filters(Arc::clone(&stage.plan))?;
        }
        // The final stage is not decoded as the executors' are, so it is given here what decoding
        // gives theirs: its joins keep their build keys for the readers to send (TPC-H q22: the
        // 6,400 customers' keys reach the orders scan as a Bloom filter), and its readers route
        // its partitioned joins' shares to the tasks they read.
        let root = glaux_proto::share_producers(attach_join_filters(root)?)?;
        invariants::check(&root, &stages).map_err(CutError::Broken)?;
        Ok(Self { query, root, stages, scans, signer: Arc::clone(signer), spool: false })
    }

    /// This plan with each task that `moved` names run on its new executor, and every reader of
    /// such a task reading it there (a task run again, retry policy `task`). The final stage's
    /// readers are left as they are: they learn where a task moved when they ask for it again.
    pub fn relocated(&self, moved: &HashMap<(StageId, TaskId), ExecutorAddr>) -> Result<Self> {
        let stages = self
            .stages
            .iter()
            .map(|stage| {
                let plan = Arc::clone(&stage.plan).transform_up(|node| {
                    let Some(reader) = node.downcast_ref::<StageReaderExec>() else {
                        return Ok(Transformed::no(node));
                    };
                    let from = reader.stage();
                    let relocated = reader.relocated(&|task| moved.get(&(from, task)).cloned());
                    Ok(Transformed::yes(Arc::new(relocated) as Arc<dyn ExecutionPlan>))
                })?;
                let tasks = (stage.tasks.iter())
                    .map(|task| match moved.get(&(stage.id, task.id)) {
                        Some(executor) => Task { executor: executor.clone(), ..task.clone() },
                        None => task.clone(),
                    })
                    .collect();
                Ok(Stage { plan: plan.data, tasks, ..stage.clone() })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            query: self.query.clone(),
            root: Arc::clone(&self.root),
            stages,
            scans: self.scans.clone(),
            signer: Arc::clone(&self.signer),
            spool: self.spool,
        })
    }

    /// The tasks whose output `task` of `stage` reads.
    pub fn inputs_of(&self, stage: &Stage, task: &Task) -> Result<Vec<(StageId, TaskId)>> {
        let plan = task_plan(stage, task)?.plan;
        let mut inputs = Vec::new();
        plan.apply(|node| {
            if let Some(reader) = node.downcast_ref::<StageReaderExec>() {
                inputs.extend(reader.partitions().iter().flatten().map(|output| (reader.stage(), output.task)));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        inputs.sort_unstable();
        inputs.dedup();
        Ok(inputs)
    }

    /// Executors this plan runs tasks on, each once.
    pub fn executors(&self) -> Vec<ExecutorAddr> {
        let mut executors: Vec<ExecutorAddr> =
            self.stages.iter().flat_map(|s| s.tasks.iter().map(|t| t.executor.clone())).collect();
        executors.sort();
        executors.dedup();
        executors
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CutError {
    #[error(transparent)]
    Plan(#[from] datafusion::error::DataFusionError),
    /// A contract between stages does not hold: a bug in Glaux, reported rather than run.
    #[error("the distributed plan is inconsistent: {0}")]
    Broken(String),
}

/// How a stage's output reaches its consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// Each output partition is read whole, once, by one partition of the consumer.
    Gather,
    /// The stage ends in a `RepartitionExec` that every task runs over its share of the input:
    /// partition `j` of the consumer reads bucket `j` of every task.
    Shuffle,
    /// Each output partition is read whole by each of `readers` consumer tasks (the build side of
    /// a `CollectLeft` join), so the producer keeps it until all have.
    Broadcast { readers: usize },
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub id: StageId,
    /// The fragment every task of the stage runs (each task its own partitions of it).
    pub plan: Arc<dyn ExecutionPlan>,
    pub exchange: Exchange,
    pub tasks: Vec<Task>,
    /// Files (or byte ranges) the stage scans, and their bytes.
    pub files: usize,
    pub bytes: u64,
    /// Why all partitions run in one task, if they do.
    pub single_task: Option<SingleTask>,
}

/// Why a stage runs as one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SingleTask {
    /// A join in it coordinates all partitions through shared state.
    Coordinated,
    /// The whole query is small (its scans produce about `bytes`): it runs on one executor,
    /// exchanges and all, as one process would run it.
    SmallQuery { bytes: u64 },
}

impl Stage {
    /// The partitions each consumer reads and how often: what the stage's tasks must serve.
    pub fn served_partitions(&self, task: &Task) -> (Vec<u32>, u32) {
        match self.exchange {
            Exchange::Gather => (task.partitions.clone(), 1),
            Exchange::Broadcast { readers } => (task.partitions.clone(), readers as u32),
            Exchange::Shuffle => ((0..self.plan.output_partitioning().partition_count() as u32).collect(), 1),
        }
    }
}

/// The share of one stage that one executor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    /// The executor that runs it.
    pub executor: ExecutorAddr,
    /// Partitions of the stage's work this task runs: of the stage plan's output, or for a
    /// shuffle, of the repartition's input.
    pub partitions: Vec<u32>,
    /// Bytes its scans are expected to read.
    pub bytes: u64,
}

/// Table `t` of column `a` (the values of `written`, which names its column `a`) in one Parquet
/// file, in a session that cuts any file over 2 partitions; the directory holds the file.
#[cfg(test)]
pub(crate) async fn one_file_table(
    written: &str,
) -> Result<(tempfile::TempDir, datafusion::prelude::SessionContext), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("t.parquet");
    let mut config = datafusion::prelude::SessionConfig::new().with_target_partitions(2);
    config.options_mut().optimizer.repartition_file_min_size = 1;
    let ctx = datafusion::prelude::SessionContext::new_with_config(config);
    ctx.sql(&format!("COPY ({written}) TO '{}' STORED AS PARQUET", file.display())).await?.collect().await?;
    ctx.register_parquet("t", file.to_str().unwrap_or_default(), Default::default()).await?;
    Ok((dir, ctx))
}
