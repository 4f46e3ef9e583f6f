//! Cutting a physical plan into stages at exchanges.
//!
//! An executor stage is a maximal subtree that contains a file scan and no stage boundary.
//! Boundaries are the exchanges, `RepartitionExec`, `CoalescePartitionsExec` and
//! `SortPreservingMergeExec`, which move rows between partitions, and the joins whose partitions
//! coordinate through shared state: a `CollectLeft` hash join or a nested-loop join that must emit
//! the unmatched rows of its build side does so in whichever partition finishes last, which only
//! works when one plan instance runs every partition. Each cut subtree is handed to `make_stage`, which turns it into the
//! stage and returns the node that reads it (a `StageReaderExec`). Subtrees without a file scan
//! (`SELECT 1`, `VALUES`, catalog tables) stay on the scheduler.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::common::JoinType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_expr::scalar_subquery::ScalarSubqueryExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, replace_children_if_necessary};

/// Rewrites `plan`, replacing each executor stage by what `make_stage` returns for it.
pub fn cut_stages(
    plan: Arc<dyn ExecutionPlan>,
    make_stage: &mut dyn FnMut(Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if !contains_exchange(&plan) && !uses_subquery_results(&plan) {
        return if scan_files(&plan).is_some() { make_stage(plan) } else { Ok(plan) };
    }
    let children = plan
        .children()
        .into_iter()
        .map(|child| cut_stages(Arc::clone(child), make_stage))
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(plan, children)
}

pub fn is_stage_boundary(plan: &dyn ExecutionPlan) -> bool {
    if let Some(join) = plan.downcast_ref::<HashJoinExec>() {
        return *join.partition_mode() == PartitionMode::CollectLeft && emits_unmatched_build_rows(join.join_type());
    }
    if let Some(join) = plan.downcast_ref::<NestedLoopJoinExec>() {
        return emits_unmatched_build_rows(join.join_type());
    }
    plan.is::<RepartitionExec>() || plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>()
}

/// Join types whose output depends on which build-side rows no probe partition matched.
fn emits_unmatched_build_rows(join_type: &JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left | JoinType::Full | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark
    )
}

fn contains_exchange(plan: &Arc<dyn ExecutionPlan>) -> bool {
    is_stage_boundary(plan.as_ref()) || plan.children().into_iter().any(contains_exchange)
}

/// True if the subtree evaluates scalar subquery results. Those are computed by a
/// `ScalarSubqueryExec` above it, on the scheduler, so the subtree cannot move to executors yet.
fn uses_subquery_results(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut found = false;
    // The closures never fail, so neither do the traversals.
    let _ = plan.apply_expressions(&mut |expr| {
        found = expr.exists(|e| Ok(e.is::<ScalarSubqueryExpr>())).unwrap_or(true);
        Ok(if found { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
    });
    found || plan.children().into_iter().any(uses_subquery_results)
}

/// The file scans of a subtree: `Some` with each scan's config if there is at least one.
pub fn scan_files(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<FileScanConfig>> {
    let mut scans = Vec::new();
    collect_scans(plan, &mut scans);
    (!scans.is_empty()).then_some(scans)
}

fn collect_scans(plan: &Arc<dyn ExecutionPlan>, scans: &mut Vec<FileScanConfig>) {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>()
        && let Some(config) = source.data_source().downcast_ref::<FileScanConfig>()
    {
        scans.push(config.clone());
    }
    for child in plan.children() {
        collect_scans(child, scans);
    }
}
