//! Giving the stage readers below a hash join that join's dynamic filter.
//!
//! DataFusion pushed the filter down to the scans, which now run in other stages. There a
//! partitioned join's filter cannot be applied at all, and a broadcast join's only in part (its
//! bounds and small key sets travel, its hash table does not): see `glaux_proto`'s
//! `join_filter_shares.rs` and `dynamic_filters.rs`. The reader that hands those rows to the join
//! can apply all of it. Here the filter is pushed once more, from the join's probe side down to the
//! readers of the join's own stage, with DataFusion's own rules for each node in between
//! (`gather_filters_for_pushdown`: a projection renames, a join passes it to the side with its
//! columns), and only through nodes whose partition `i` is made of their inputs' partitions `i`,
//! so that partition `i` of the reader feeds partition `i` of the join.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::filter_pushdown::{FilterPushdownPhase, PushedDown};
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use glaux_proto::StageReaderExec;

/// `plan` (a stage's fragment) with each of its readers on the probe side of a hash join carrying
/// that join's filter in the reader's columns.
pub fn attach_join_filters(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let config = ConfigOptions::default();
    // Reader nodes by address (they are not rebuilt until the rewrite below), with their filters.
    let mut found: HashMap<usize, Vec<Arc<dyn PhysicalExpr>>> = HashMap::new();
    plan.apply(|node| {
        if let Some(join) = node.downcast_ref::<HashJoinExec>() {
            for filter in node.dynamic_expressions_produced() {
                push_down(join.right(), filter, &config, &mut found)?;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if found.is_empty() {
        return Ok(plan);
    }
    let attached = plan.transform_up(|node| {
        let Some(filters) = found.remove(&address(&node)) else { return Ok(Transformed::no(node)) };
        let Some(reader) = node.downcast_ref::<StageReaderExec>() else { return Ok(Transformed::no(node)) };
        let mut all = reader.join_filters().to_vec();
        all.extend(filters);
        Ok(Transformed::yes(Arc::new(reader.clone().with_join_filters(all)) as Arc<dyn ExecutionPlan>))
    })?;
    Ok(attached.data)
}

fn address(node: &Arc<dyn ExecutionPlan>) -> usize {
    Arc::as_ptr(node) as *const () as usize
}

/// Follows `filter` (in `node`'s columns) down to the readers it can reach partition-wise.
fn push_down(
    node: &Arc<dyn ExecutionPlan>,
    filter: Arc<dyn PhysicalExpr>,
    config: &ConfigOptions,
    found: &mut HashMap<usize, Vec<Arc<dyn PhysicalExpr>>>,
) -> Result<()> {
    if node.is::<StageReaderExec>() {
        found.entry(address(node)).or_default().push(filter);
        return Ok(());
    }
    // A repartition mixes partitions; an input with another number of partitions than the node
    // (a broadcast join's build side, a union's inputs) feeds more than one of them or not `i`.
    if node.is::<RepartitionExec>() {
        return Ok(());
    }
    let partitions = node.output_partitioning().partition_count();
    let description = node.gather_filters_for_pushdown(FilterPushdownPhase::Post, vec![filter], config)?;
    for (child, mut pushed) in node.children().into_iter().zip(description.parent_filters()) {
        if let Some(pushed) = pushed.pop()
            && matches!(pushed.discriminant, PushedDown::Yes)
            && child.output_partitioning().partition_count() == partitions
        {
            push_down(child, pushed.predicate, config, found)?;
        }
    }
    Ok(())
}
