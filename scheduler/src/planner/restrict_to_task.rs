//! Giving each task a plan of its own share of the stage.
//!
//! Where the stage's fragment is partition-wise throughout (every node's partition `i` comes from
//! its inputs' partitions `i`, as DataFusion plans between exchanges are), the task's plan holds
//! only its partitions: its file scans keep only their file groups, its stage readers only their
//! partitions, so partitions {0, 2} of the stage are partitions {0, 1} of the task's plan. Inside
//! such a plan every partition that exists also runs, which is what a hash join's dynamic filter
//! needs: it waits for every partition of its plan before it filters the probe-side scan.
//!
//! A union is narrowed input by input (its partitions are its inputs' one after another), so
//! the sales channels of a `UNION ALL` each keep their dynamic filters.
//!
//! Otherwise (a leaf we cannot narrow, a node that mixes partitions) the task gets the whole
//! fragment with the other partitions' file groups emptied, and runs only its partitions;
//! dynamic filters stay off there.
//! Either way the plan sent over the wire names only the task's files.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::joins::{CrossJoinExec, HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, replace_children_if_necessary};

use datafusion::common::internal_err;
use glaux_proto::{PartitionSubsetExec, StageReaderExec};

use super::scan_files::scan_files;
use super::{Exchange, Stage, Task};

/// What one task runs.
pub struct TaskPlan {
    pub plan: Arc<dyn ExecutionPlan>,
    /// For each partition the task serves, the partition of `plan` that produces it.
    pub plan_partitions: Vec<u32>,
    /// The plan runs every partition it has, so hash joins may filter their probe side's scan.
    pub dynamic_filters: bool,
}

/// The plan one task of `stage` runs. A shuffle task runs the stage's repartition over its share
/// of the input.
pub fn task_plan(stage: &Stage, task: &Task) -> Result<TaskPlan> {
    let plan = unchecked_task_plan(stage, task)?;
    // Debug builds (every test) check every task's plan; a release build checks the first task
    // of each stage, whose plan is built as the others' (they differ in their files and
    // partitions), and saves the rest: rebuilding and drawing each plan twice cost a small query
    // about 1.5 ms of CPU (TPC-DS q41, 7 tasks).
    if !cfg!(debug_assertions) && stage.tasks.first().is_some_and(|first| first.id != task.id) {
        return Ok(plan);
    }
    match super::invariants::check_task(stage, &plan.plan) {
        Ok(()) => Ok(plan),
        Err(broken) => internal_err!("task {} of stage {}: {broken}", task.id, stage.id),
    }
}

fn unchecked_task_plan(stage: &Stage, task: &Task) -> Result<TaskPlan> {
    let (served, _) = stage.served_partitions(task);
    if stage.exchange != Exchange::Shuffle {
        return Ok(match narrowed(&stage.plan, &task.partitions)? {
            Some(plan) => TaskPlan { plan, plan_partitions: (0..served.len() as u32).collect(), dynamic_filters: true },
            None => TaskPlan {
                plan: restrict_to_task(&stage.plan, &task.partitions)?,
                plan_partitions: served,
                dynamic_filters: false,
            },
        });
    }
    let Some(input) = stage.plan.children().first().map(|c| Arc::clone(c)) else {
        return internal_err!("shuffle stage {} has no input", stage.id);
    };
    let (input, dynamic_filters) = match narrowed(&input, &task.partitions)? {
        Some(input) => (input, true),
        None => {
            let input = restrict_to_task(&input, &task.partitions)?;
            (Arc::new(PartitionSubsetExec::try_new(input, task.partitions.clone())?) as Arc<dyn ExecutionPlan>, false)
        }
    };
    let plan = replace_children_if_necessary(Arc::clone(&stage.plan), vec![input])?;
    Ok(TaskPlan { plan, plan_partitions: served, dynamic_filters })
}

/// `plan` with only `partitions`, in order, if it is partition-wise throughout; `None` if not.
fn narrowed(plan: &Arc<dyn ExecutionPlan>, partitions: &[u32]) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let count = plan.output_partitioning().partition_count();
    if partitions.len() == count && partitions.iter().enumerate().all(|(i, &p)| i == p as usize) {
        return Ok(Some(Arc::clone(plan)));
    }
    narrow(plan, partitions, count)
}

fn narrow(plan: &Arc<dyn ExecutionPlan>, partitions: &[u32], count: usize) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if plan.output_partitioning().partition_count() != count {
        return Ok(None);
    }
    if let Some(reader) = plan.downcast_ref::<StageReaderExec>() {
        return Ok(Some(Arc::new(reader.subset(partitions)?)));
    }
    if let Some(config) =
        plan.downcast_ref::<DataSourceExec>().and_then(|source| source.data_source().downcast_ref::<FileScanConfig>())
    {
        if config.file_groups.len() != count {
            return Ok(None);
        }
        let groups = partitions.iter().map(|&p| config.file_groups[p as usize].clone()).collect();
        let config = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups).build();
        return Ok(Some(Arc::new(DataSourceExec::new(Arc::new(config)))));
    }
    if let Some(union) = plan.downcast_ref::<UnionExec>() {
        return narrow_union(union, partitions, &plan.schema());
    }
    let children = plan.children();
    if children.is_empty() {
        return Ok(None);
    }
    let whole = consumed_whole(plan.as_ref());
    let mut narrowed_children = Vec::with_capacity(children.len());
    for (i, child) in children.into_iter().enumerate() {
        if whole == Some(i) {
            // A join's build side: every task reads all of it.
            narrowed_children.push(Arc::clone(child));
            continue;
        }
        match narrow(child, partitions, count)? {
            Some(child) => narrowed_children.push(child),
            None => return Ok(None),
        }
    }
    replace_children_if_necessary(Arc::clone(plan), narrowed_children).map(Some)
}

/// A union's partitions are its inputs' one after another: each input keeps those of the task's
/// that are its own, and an input with none is left out. `None` where the partitions are out of
/// order, an input cannot be narrowed, or leaving inputs out would change the union's schema.
fn narrow_union(union: &UnionExec, partitions: &[u32], schema: &SchemaRef) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !partitions.is_sorted() {
        return Ok(None);
    }
    let mut inputs = Vec::new();
    let mut first = 0;
    for input in union.inputs() {
        let end = first + input.output_partitioning().partition_count() as u32;
        let own: Vec<u32> = partitions.iter().filter(|&&p| (first..end).contains(&p)).map(|&p| p - first).collect();
        first = end;
        if own.is_empty() {
            continue;
        }
        match narrowed(input, &own)? {
            Some(input) => inputs.push(input),
            None => return Ok(None),
        }
    }
    if inputs.is_empty() {
        return Ok(None);
    }
    // Inputs of the union's own schema make a union of it; if not, the task runs it whole.
    let Ok(union) = UnionExec::try_new(inputs) else { return Ok(None) };
    Ok((union.schema() == *schema).then_some(union))
}

/// The input a join collects whole in every partition (its build side), if it has one.
fn consumed_whole(plan: &dyn ExecutionPlan) -> Option<usize> {
    let collects_left =
        plan.downcast_ref::<HashJoinExec>().is_some_and(|join| *join.partition_mode() == PartitionMode::CollectLeft)
            || plan.is::<NestedLoopJoinExec>()
            || plan.is::<CrossJoinExec>();
    collects_left.then_some(0)
}

/// `stage` with the file groups of partitions outside `partitions` emptied, when the stage is a
/// single scan whose file groups are its partitions; `stage` itself otherwise.
fn restrict_to_task(stage: &Arc<dyn ExecutionPlan>, partitions: &[u32]) -> Result<Arc<dyn ExecutionPlan>> {
    let count = stage.output_partitioning().partition_count();
    let single_scan = scan_files(stage).is_some_and(|scans| scans.len() == 1 && scans[0].file_groups.len() == count);
    if !single_scan {
        return Ok(Arc::clone(stage));
    }
    let restricted = Arc::clone(stage).transform_up(|plan| {
        let Some(config) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|source| source.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(Transformed::no(plan));
        };
        let mut config = config.clone();
        for (i, group) in config.file_groups.iter_mut().enumerate() {
            if !partitions.contains(&(i as u32)) {
                *group = FileGroup::default();
            }
        }
        let restricted: Arc<dyn ExecutionPlan> = Arc::new(DataSourceExec::new(Arc::new(config)));
        Ok(Transformed::yes(restricted))
    })?;
    Ok(restricted.data)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::physical_plan::{ExecutionPlanProperties, collect_partitioned};
    use glaux_proto::{ExecutorAddr, StageId, TaskId};

    use super::task_plan;
    use crate::planner::scan_files::scan_files;
    use crate::planner::{Exchange, Stage, Task};

    fn rows(batches: &[Vec<datafusion::arrow::array::RecordBatch>]) -> usize {
        batches.iter().flatten().map(|b| b.num_rows()).sum()
    }

    /// A task of a stage holding a union gets each input's share of its partitions, so its plan
    /// runs every partition it has (hash joins may filter scans), and the tasks together read
    /// each row once.
    #[tokio::test]
    async fn a_union_is_narrowed_input_by_input() -> Result<(), Box<dyn std::error::Error>> {
        // Two byte ranges of the one file per scan: two partitions per union input.
        let (_dir, ctx) = crate::planner::one_file_table("SELECT v AS a FROM range(100000) t(v)").await?;
        let sql = "SELECT a FROM t WHERE a >= 10 UNION ALL SELECT a + 1 AS a FROM t WHERE a < 50000";
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        assert_eq!(plan.output_partitioning().partition_count(), 4, "{plan:?}");
        let expected = 99_990 + 50_000;
        assert_eq!(rows(&collect_partitioned(Arc::clone(&plan), ctx.task_ctx()).await?), expected);
        let executor = ExecutorAddr::parse("127.0.0.1:1")?;
        for split in [[vec![0, 2], vec![1, 3]], [vec![0, 1], vec![2, 3]], [vec![0], vec![1, 2, 3]]] {
            let tasks: Vec<Task> = split
                .iter()
                .enumerate()
                .map(|(i, p)| Task {
                    id: TaskId(i as u32),
                    executor: executor.clone(),
                    partitions: p.clone(),
                    bytes: 0,
                })
                .collect();
            let stage = Stage {
                id: StageId(1),
                plan: Arc::clone(&plan),
                exchange: Exchange::Gather,
                tasks: tasks.clone(),
                files: 0,
                bytes: 0,
                single_task: None,
            };
            let mut read = 0;
            for task in &tasks {
                let task_plan = task_plan(&stage, task)?;
                assert!(task_plan.dynamic_filters, "{split:?}");
                let narrowed = task_plan.plan.output_partitioning().partition_count();
                assert_eq!(narrowed, task.partitions.len(), "{split:?}");
                let groups: usize =
                    scan_files(&task_plan.plan).into_iter().flatten().map(|s| s.file_groups.len()).sum();
                assert_eq!(groups, task.partitions.len(), "{split:?}: only the task's file groups");
                read += rows(&collect_partitioned(task_plan.plan, ctx.task_ctx()).await?);
            }
            assert_eq!(read, expected, "{split:?}");
        }
        Ok(())
    }
}
