//! The contracts between stages, checked on every distributed plan before anything runs, so that
//! a new operator or a change to the cutting cannot break them silently (TPC-DS q33, q70 and q47
//! each broke one before these checks existed):
//! - every reader reads an earlier stage, with exactly that stage's schema (names, types,
//!   nullability) and partitioning (a shuffle's hash columns survive the cut, so operators above
//!   that rely on it, such as `InterleaveExec` and partitioned joins, still hold);
//! - every fragment still satisfies the distribution and ordering its operators require of their
//!   inputs (DataFusion's own sanity check, run on each fragment);
//! - every partition of a stage's work belongs to exactly one of its tasks;
//! - each task's plan (the stage's fragment narrowed to the task's share) still writes the stage's
//!   schema and satisfies its operators' input requirements, and is built the same on the
//!   executor: rebuilt over its readers as the executor decodes them, it draws the same plan
//!   (checked as each task is planned: every task in debug builds, the first of each stage in
//!   release builds).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::sanity_checker::SanityCheckPlan;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning, displayable};
use glaux_proto::{StageId, StageReaderExec, reader_as_sent};

use super::{Exchange, Stage};

/// The first broken contract of the plan made of `root` (the scheduler's fragment) and `stages`.
pub(super) fn check(root: &Arc<dyn ExecutionPlan>, stages: &[Stage]) -> Result<(), String> {
    for (position, stage) in stages.iter().enumerate() {
        check_fragment(&stage.plan, &format!("stage {}", stage.id), &stages[..position])?;
        check_tasks(stage)?;
    }
    check_fragment(root, "stage 0", stages)
}

/// The plan one task of `stage` runs: it writes the stage's schema, satisfies its operators'
/// input requirements, and is the same plan once its readers are as the executor decodes them
/// (what a reader knows of its rows decides how operators above it are built).
pub(super) fn check_task(stage: &Stage, plan: &Arc<dyn ExecutionPlan>) -> Result<(), String> {
    let (written, stage_writes) = (plan.schema(), stage.plan.schema());
    if written.fields() != stage_writes.fields() {
        return Err(format!("writes {written:?}, but its stage writes {stage_writes:?}"));
    }
    sanity_check(plan, "the task's plan")?;
    let sent = Arc::clone(plan)
        .transform_up(|node| match node.downcast_ref::<StageReaderExec>() {
            Some(reader) => Ok(Transformed::yes(Arc::new(reader_as_sent(reader)?) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .map_err(|e| format!("the task's plan cannot be rebuilt as an executor decodes it: {e}"))?;
    if !sent.transformed {
        // No reader: the executor decodes the very plan (a small query's one task).
        return Ok(());
    }
    let sent = sent.data;
    // The short form: operators and their modes, not every file of every scan (the same on both).
    let (planned, decoded) = (displayable(plan.as_ref()).indent(false), displayable(sent.as_ref()).indent(false));
    if planned.to_string() != decoded.to_string() {
        return Err(format!("an executor would decode the task's plan\n{planned}as\n{decoded}"));
    }
    Ok(())
}

/// `plan`'s readers against the stages before it, and its operators' input requirements.
fn check_fragment(plan: &Arc<dyn ExecutionPlan>, name: &str, earlier: &[Stage]) -> Result<(), String> {
    let mut broken = Ok(());
    // The closure stops at the first broken contract; the traversal itself never fails.
    let _ = plan.apply(|node| {
        if let Some(reader) = node.downcast_ref::<StageReaderExec>() {
            broken = check_reader(reader, name, earlier);
        }
        Ok(if broken.is_err() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    broken?;
    sanity_check(plan, name)
}

/// Every operator's inputs are distributed and ordered as it requires (DataFusion's check).
fn sanity_check(plan: &Arc<dyn ExecutionPlan>, name: &str) -> Result<(), String> {
    SanityCheckPlan::new()
        .optimize(Arc::clone(plan), &ConfigOptions::default())
        .map(|_| ())
        .map_err(|e| format!("{name} breaks an operator's input requirement: {e}"))
}

fn check_reader(reader: &StageReaderExec, name: &str, earlier: &[Stage]) -> Result<(), String> {
    let id: StageId = reader.stage();
    let Some(stage) = earlier.iter().find(|s| s.id == id) else {
        return Err(format!("{name} reads stage {id}, which does not run before it"));
    };
    let (read, written) = (reader.schema(), stage.plan.schema());
    if read.fields() != written.fields() {
        return Err(format!("{name} reads stage {id} as {read:?}, but it writes {written:?}"));
    }
    let (read, written) = (reader.properties().output_partitioning(), stage.plan.output_partitioning());
    if !same_partitioning(read, written) {
        return Err(format!("{name} reads stage {id} partitioned as {read}, but it writes {written}"));
    }
    Ok(())
}

/// Same kind, same count, and for a hash the same expressions (`Partitioning`'s own equality
/// never holds for unknown partitionings, and compares expressions by identity).
fn same_partitioning(read: &Partitioning, written: &Partitioning) -> bool {
    match (read, written) {
        (Partitioning::Hash(read, n), Partitioning::Hash(written, m)) => {
            n == m
                && read.len() == written.len()
                && read.iter().zip(written).all(|(r, w)| r.to_string() == w.to_string())
        }
        (Partitioning::Hash(..), _) | (_, Partitioning::Hash(..)) => false,
        _ => {
            std::mem::discriminant(read) == std::mem::discriminant(written)
                && read.partition_count() == written.partition_count()
        }
    }
}

/// Each partition of the stage's work is run by exactly one task.
fn check_tasks(stage: &Stage) -> Result<(), String> {
    if stage.tasks.is_empty() {
        // No executor alive: running it is refused before anything launches.
        return Ok(());
    }
    let work = match stage.exchange {
        Exchange::Shuffle => stage.plan.children().first().map_or(0, |c| c.output_partitioning().partition_count()),
        Exchange::Gather | Exchange::Broadcast { .. } => stage.plan.output_partitioning().partition_count(),
    };
    let mut runs = vec![0usize; work];
    for task in &stage.tasks {
        for &partition in &task.partitions {
            match runs.get_mut(partition as usize) {
                Some(count) => *count += 1,
                None => {
                    return Err(format!("stage {}: task {} runs partition {partition} of {work}", stage.id, task.id));
                }
            }
        }
    }
    match runs.iter().position(|&count| count != 1) {
        Some(p) => Err(format!("stage {}: partition {p} is run by {} tasks", stage.id, runs[p])),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
    use datafusion::physical_expr::expressions::col;
    use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
    use datafusion::physical_plan::empty::EmptyExec;
    use datafusion::physical_plan::repartition::RepartitionExec;
    use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
    use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
    use glaux_proto::{ExecutorAddr, QueryId, StageId, StageReaderExec, TaskId};

    use super::{check, check_task};
    use crate::planner::{Exchange, Stage, Task};

    fn schema(nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, nullable)]))
    }

    /// Stage 1: rows of `schema(true)` hash-shuffled on `a` into 2 partitions, by 2 tasks.
    fn shuffle_stage(task_partitions: [Vec<u32>; 2]) -> Stage {
        let input = Arc::new(EmptyExec::new(schema(true)).with_partitions(2));
        let hash = Partitioning::Hash(vec![col("a", &schema(true)).expect("column")], 2);
        let plan = Arc::new(RepartitionExec::try_new(input, hash).expect("repartition"));
        let executor = ExecutorAddr::parse("127.0.0.1:1").expect("address");
        let tasks = task_partitions
            .into_iter()
            .enumerate()
            .map(|(i, partitions)| Task { id: TaskId(i as u32), executor: executor.clone(), partitions, bytes: 0 })
            .collect();
        Stage { id: StageId(1), plan, exchange: Exchange::Shuffle, tasks, files: 0, bytes: 0, single_task: None }
    }

    fn reader(stage: &Stage, schema: SchemaRef, partitioning: Partitioning) -> Arc<dyn ExecutionPlan> {
        let partitions = vec![Vec::new(); partitioning.partition_count()];
        let eq = EquivalenceProperties::new(schema);
        Arc::new(StageReaderExec::new(QueryId::random(), stage.id, eq, partitioning, partitions))
    }

    #[test]
    fn a_faithful_reader_passes() {
        let stage = shuffle_stage([vec![0], vec![1]]);
        let root = reader(&stage, schema(true), stage.plan.output_partitioning().clone());
        assert_eq!(check(&root, &[stage]), Ok(()));
    }

    #[test]
    fn a_reader_that_forgets_the_hash_or_the_schema_is_caught() {
        let stage = shuffle_stage([vec![0], vec![1]]);
        let root = reader(&stage, schema(true), Partitioning::UnknownPartitioning(2));
        let error = check(&root, std::slice::from_ref(&stage)).expect_err("lost hash partitioning");
        assert!(error.contains("partitioned as UnknownPartitioning(2)"), "{error}");

        let root = reader(&stage, schema(false), stage.plan.output_partitioning().clone());
        let error = check(&root, std::slice::from_ref(&stage)).expect_err("schema differs");
        assert!(error.contains("reads stage 1 as"), "{error}");

        let error = check_task(&stage, &reader(&stage, schema(false), Partitioning::UnknownPartitioning(2)))
            .expect_err("task schema differs");
        assert!(error.contains("but its stage writes"), "{error}");
    }

    #[test]
    fn a_reader_of_a_stage_that_does_not_run_first_is_caught() {
        let stage = shuffle_stage([vec![0], vec![1]]);
        let root = reader(&stage, schema(true), stage.plan.output_partitioning().clone());
        let error = check(&root, &[]).expect_err("no stage 1");
        assert!(error.contains("does not run before it"), "{error}");
    }

    #[test]
    fn work_run_twice_or_never_is_caught() {
        let stage = shuffle_stage([vec![0, 1], vec![1]]);
        let root = reader(&stage, schema(true), stage.plan.output_partitioning().clone());
        let error = check(&root, std::slice::from_ref(&stage)).expect_err("partition 1 twice");
        assert!(error.contains("partition 1 is run by 2 tasks"), "{error}");
        let stage = shuffle_stage([vec![0], vec![]]);
        let error = check(&root, std::slice::from_ref(&stage)).expect_err("partition 1 never");
        assert!(error.contains("partition 1 is run by 0 tasks"), "{error}");
    }

    #[test]
    fn an_operator_whose_input_lost_its_order_is_caught() {
        // A merge of sorted partitions over a reader that does not say its partitions are sorted.
        let stage = shuffle_stage([vec![0], vec![1]]);
        let input = reader(&stage, schema(true), stage.plan.output_partitioning().clone());
        let order = LexOrdering::new([PhysicalSortExpr::new_default(col("a", &schema(true)).expect("column"))])
            .expect("an ordering");
        let root = Arc::new(SortPreservingMergeExec::new(order, input));
        let error = check(&(root as Arc<dyn ExecutionPlan>), &[stage]).expect_err("unsorted input");
        assert!(error.contains("stage 0 breaks an operator's input requirement"), "{error}");
    }
}
