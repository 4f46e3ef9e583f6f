//! Cutting a physical plan into a tree of stages at its exchanges.
//!
//! DataFusion marks every place rows move between partitions with an operator, and each becomes
//! an exchange between stages:
//! - `RepartitionExec` (hash or round robin): a **shuffle**. The repartition runs at the end of
//!   the producing stage, in every task over the task's share of the input; partition `j` of the
//!   consumer reads bucket `j` of every task.
//! - `CoalescePartitionsExec` / `SortPreservingMergeExec`: a **gather**. The merge runs in the
//!   consumer, reading each partition of the producing stage whole. When the consumer is an executor
//!   stage with several tasks (the build side of a `CollectLeft` join), each task reads every
//!   partition: a **broadcast**, whose partitions the producer keeps until all have read them.
//!
//! The scheduler runs only the final gather: the merge of the last stage and what follows it on a
//! single partition (limits, projections, the final step of an aggregation, a sort of the merged
//! rows). Subtrees that read no files (`SELECT 1`, `VALUES`, catalog tables) and subtrees that
//! cannot leave the scheduler (scalar subquery results, recursive queries) run there too.
//!
//! Operators that coordinate sibling partitions through shared state inside one plan instance
//! cannot have their partitions split across tasks: a stage holding a `CollectLeft` hash join or a
//! nested-loop join that emits the unmatched rows of its build side runs as a single task.
//!
//! A small query (its scans estimated to produce at most `small_query_bytes`) is not cut at its
//! exchanges: everything below the final gather is one stage, run as one task on one executor,
//! its repartitions and merges inside the task as in one process. Spreading costs a fixed 10-20
//! ms (a plan per task to launch, rows moved between executors, stages waiting on each other)
//! that a query this small cannot win back.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::JoinType;
use datafusion::common::Result;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::work_table::WorkTableExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, replace_children_if_necessary};
use glaux_proto::{
    ExecutorAddr, ForwardedFilter, QueryId, StageId, StageReaderExec, TaskId, TaskOutput, TaskSigner, TokenPurpose,
    filter_ids, partitioned_filters, produced_filters,
};

use super::assign_tasks::assign_tasks;
use super::scan_files::scan_files;
use super::{Exchange, SingleTask, Stage};
use crate::cluster::ExecutorInfo;

/// Cuts `plan` into stages for `executors`: the scheduler's part (stage 0) and the executor
/// stages, inputs before the stages that read them. A small query (`small`: what its scans are
/// estimated to produce, see [`estimated_scan_bytes`](super::estimated_scan_bytes)) runs below
/// its final gather as one task.
pub fn cut_stages(
    query: &QueryId,
    plan: Arc<dyn ExecutionPlan>,
    executors: &[ExecutorInfo],
    signer: &TaskSigner,
    small: Option<u64>,
) -> Result<(Arc<dyn ExecutionPlan>, Vec<Stage>)> {
    // Broadcast joins' filters travel whole; partitioned joins' as shares, which a reader passes on
    // to the stage it reads when its own stage is where the join's shuffle starts.
    let mut produced = produced_filters(&plan);
    produced.extend(partitioned_filters(&plan));
    let small = small.filter(|_| !executors.is_empty());
    let mut cutter = Cutter { query, executors, signer, stages: Vec::new(), produced, small, assigned: HashMap::new() };
    let root = cutter.scheduler_part(plan)?;
    Ok((root, cutter.stages))
}

struct Cutter<'a> {
    query: &'a QueryId,
    executors: &'a [ExecutorInfo],
    /// Signs the read token of every task output a reader fetches.
    signer: &'a TaskSigner,
    stages: Vec<Stage>,
    /// The dynamic filters of the plan's broadcast-build joins, by expression id.
    produced: HashMap<u64, ForwardedFilter>,
    /// A small query: what its scans are estimated to produce. Its stages are not cut at their
    /// exchanges, and run as one task each.
    small: Option<u64>,
    /// The bytes the stages cut so far scan on each executor (`assign_tasks`).
    assigned: HashMap<ExecutorAddr, u64>,
}

impl Cutter<'_> {
    /// The part of the plan the scheduler runs, with the rest cut into executor stages.
    fn scheduler_part(&mut self, plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        if scan_files(&plan).is_none() {
            return Ok(plan);
        }
        if !runs_on_scheduler(&plan) {
            return Ok(self.gather_stage(plan)?.0);
        }
        let gather = is_gather(plan.as_ref());
        let children = plan
            .children()
            .into_iter()
            .map(|child| {
                let child = Arc::clone(child);
                if gather && scan_files(&child).is_some() && !must_stay_local(&child) {
                    Ok(self.gather_stage(child)?.0)
                } else {
                    self.scheduler_part(child)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        replace_children_if_necessary(plan, children)
    }

    /// Makes `root` an executor stage read partition by partition; returns its reader and id.
    fn gather_stage(&mut self, root: Arc<dyn ExecutionPlan>) -> Result<(Arc<dyn ExecutionPlan>, Option<StageId>)> {
        let mut gathered = Vec::new();
        let fragment = self.fragment(root, &mut gathered)?;
        if fragment.is::<StageReaderExec>() {
            // The root was a shuffle: read its buckets directly.
            return Ok((fragment, None));
        }
        if fragment.output_partitioning().partition_count() == 0 {
            return Ok((Arc::new(EmptyExec::new(fragment.schema())), None));
        }
        let id = self.add_stage(fragment, Exchange::Gather, &gathered);
        Ok((self.reader(id), Some(id)))
    }

    /// Makes a `RepartitionExec` the end of an executor stage that shuffles into its partitions.
    fn shuffle_stage(&mut self, repartition: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
        let mut gathered = Vec::new();
        let children = repartition
            .children()
            .into_iter()
            .map(|child| self.fragment(Arc::clone(child), &mut gathered))
            .collect::<Result<Vec<_>>>()?;
        let plan = replace_children_if_necessary(repartition, children)?;
        let id = self.add_stage(plan, Exchange::Shuffle, &gathered);
        Ok(self.reader(id))
    }

    /// `plan` as part of an executor stage: exchanges below it become readers of their own stages.
    /// `gathered` collects the stages it reads whole (gathers), which become broadcasts when the
    /// stage runs as more than one task.
    fn fragment(
        &mut self,
        plan: Arc<dyn ExecutionPlan>,
        gathered: &mut Vec<StageId>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.small.is_some() {
            return Ok(plan);
        }
        if plan.is::<RepartitionExec>() {
            return self.shuffle_stage(plan);
        }
        let gather = is_gather(plan.as_ref());
        let children = plan
            .children()
            .into_iter()
            .map(|child| {
                let child = Arc::clone(child);
                if gather && scan_files(&child).is_some() {
                    let (reader, stage) = self.gather_stage(child)?;
                    gathered.extend(stage);
                    Ok(reader)
                } else {
                    self.fragment(child, gathered)
                }
            })
            .collect::<Result<Vec<_>>>()?;
        replace_children_if_necessary(plan, children)
    }

    /// Assigns the stage's tasks and records it. Stages it gathers become broadcasts if it has
    /// more than one task.
    fn add_stage(&mut self, plan: Arc<dyn ExecutionPlan>, exchange: Exchange, gathered: &[StageId]) -> StageId {
        let id = StageId(self.stages.len() as u32 + 1);
        // A shuffle stage's tasks split the repartition's input; other stages' tasks their output.
        let work = match exchange {
            Exchange::Shuffle => plan.children().first().map_or_else(|| Arc::clone(&plan), |c| Arc::clone(c)),
            _ => Arc::clone(&plan),
        };
        let (single_task, spread) = match self.small {
            // Small queries spread over the cluster by their ids.
            Some(bytes) => (Some(SingleTask::SmallQuery { bytes }), spread_by(self.query)),
            None => (needs_single_task(&plan).then_some(SingleTask::Coordinated), 0),
        };
        let executors = if single_task.is_some() && !self.executors.is_empty() {
            // Spread single-task stages over the cluster.
            let one = spread.wrapping_add(id.0 as usize) % self.executors.len();
            &self.executors[one..=one]
        } else {
            self.executors
        };
        // With no executor alive the stage has no tasks: EXPLAIN shows it so, and running it is
        // refused before anything is launched.
        let assignment = assign_tasks(&work, executors, &mut self.assigned);
        let readers = assignment.tasks.len();
        if readers > 1 {
            for stage in &mut self.stages {
                if gathered.contains(&stage.id) {
                    stage.exchange = Exchange::Broadcast { readers };
                }
            }
        }
        self.stages.push(Stage {
            id,
            plan,
            exchange,
            tasks: assignment.tasks,
            files: assignment.files,
            bytes: assignment.bytes,
            single_task,
        });
        id
    }

    /// The node that reads stage `id`'s output.
    fn reader(&self, id: StageId) -> Arc<dyn ExecutionPlan> {
        let stage = &self.stages[id.0 as usize - 1];
        let count = stage.plan.output_partitioning().partition_count();
        let tokens: std::collections::HashMap<TaskId, bytes::Bytes> = stage
            .tasks
            .iter()
            .map(|task| (task.id, self.signer.sign(TokenPurpose::Read, self.query, id, task.id).into()))
            .collect();
        let token = |task: TaskId| tokens.get(&task).cloned().unwrap_or_default();
        let partitions: Vec<Vec<TaskOutput>> = match stage.exchange {
            Exchange::Shuffle => (0..count as u32)
                .map(|bucket| {
                    stage
                        .tasks
                        .iter()
                        .map(|task| TaskOutput {
                            executor: task.executor.clone(),
                            task: task.id,
                            partition: bucket,
                            read_token: token(task.id),
                        })
                        .collect()
                })
                .collect(),
            Exchange::Gather | Exchange::Broadcast { .. } => {
                let mut owners: Vec<Vec<TaskOutput>> = vec![Vec::new(); count];
                for task in &stage.tasks {
                    for &partition in &task.partitions {
                        if let Some(owner) = owners.get_mut(partition as usize) {
                            owner.push(TaskOutput {
                                executor: task.executor.clone(),
                                task: task.id,
                                partition,
                                read_token: token(task.id),
                            });
                        }
                    }
                }
                owners
            }
        };
        let reader = StageReaderExec::new(
            self.query.clone(),
            id,
            stage.plan.equivalence_properties().clone(),
            stage.plan.output_partitioning().clone(),
            partitions,
        );
        Arc::new(reader.with_dynamic_filters(self.forwarded(&stage.plan)))
    }

    /// The filters of joins outside `stage_plan` that were pushed into it (or into a stage it
    /// reads): the reader of the stage sends their values when it opens the stage's outputs.
    fn forwarded(&self, stage_plan: &Arc<dyn ExecutionPlan>) -> Vec<ForwardedFilter> {
        let own = produced_filters(stage_plan);
        filter_ids(stage_plan)
            .into_iter()
            .filter(|id| !own.contains_key(id))
            .filter_map(|id| self.produced.get(&id).cloned())
            .collect()
    }
}

/// A number that spreads queries over executors by their ids.
fn spread_by(query: &QueryId) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    query.hash(&mut hasher);
    hasher.finish() as usize
}

/// Merges of all partitions into one: the consumer reads each producer partition whole.
fn is_gather(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>()
}

/// True if the scheduler runs `plan`'s root node: the final gather and the single-partition
/// steps after it, and whatever must stay local.
fn runs_on_scheduler(plan: &Arc<dyn ExecutionPlan>) -> bool {
    must_stay_local(plan) || (plan.output_partitioning().partition_count() == 1 && after_gather(plan.as_ref()))
}

/// A gather, or a chain of cheap single-input steps on top of one.
fn after_gather(plan: &dyn ExecutionPlan) -> bool {
    if is_gather(plan) {
        return true;
    }
    let light = plan.is::<GlobalLimitExec>()
        || plan.is::<LocalLimitExec>()
        || plan.is::<ProjectionExec>()
        || plan.is::<FilterExec>()
        || plan.is::<SortExec>()
        || plan.downcast_ref::<AggregateExec>().is_some_and(|a| *a.mode() == AggregateMode::Final);
    match plan.children().as_slice() {
        [child] => light && after_gather(child.as_ref()),
        _ => false,
    }
}

/// Subtrees that cannot run on executors: they evaluate scalar subquery results (computed by a
/// `ScalarSubqueryExec` above them, on the scheduler) or run a recursive query.
fn must_stay_local(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if plan.is::<RecursiveQueryExec>() || plan.is::<WorkTableExec>() {
        return true;
    }
    let mut found = false;
    // The closures never fail, so neither do the traversals.
    let _ = plan.apply_expressions(&mut |expr| {
        found = expr.exists(|e| Ok(e.is::<ScalarSubqueryExpr>())).unwrap_or(true);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found || plan.children().into_iter().any(must_stay_local)
}

/// True if a stage holding `plan` must run every partition in one plan instance: joins that emit
/// the build-side rows no probe partition matched do so in whichever partition finishes last.
fn needs_single_task(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let coordinates = if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        *join.partition_mode() == PartitionMode::CollectLeft && emits_unmatched_build_rows(join.join_type())
    } else if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
        emits_unmatched_build_rows(join.join_type())
    } else {
        false
    };
    // Stop at readers: what lies below them is another stage.
    coordinates || plan.children().into_iter().any(needs_single_task)
}

/// Join types whose output depends on which build-side rows no probe partition matched.
fn emits_unmatched_build_rows(join_type: &JoinType) -> bool {
    matches!(join_type, JoinType::Left | JoinType::Full | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark)
}
