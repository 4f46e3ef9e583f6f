//! A task's statistics read off its executed plan: the scan counters of its own operators (not
//! the stages it read, which report for themselves) and, for `EXPLAIN ANALYZE`, its report.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;

use crate::stage_reader::StageReaderExec;
use crate::stats::{TaskReport, TaskStats};

/// Sums the scan metrics of a task's executed plan: its own work only, not what the stages it
/// read did (each task reports for itself, so nothing is counted twice).
pub fn collect_task_stats(plan: &Arc<dyn ExecutionPlan>) -> TaskStats {
    let mut stats = TaskStats::default();
    visit(plan.as_ref(), &mut stats);
    stats
}

fn visit(plan: &dyn ExecutionPlan, stats: &mut TaskStats) {
    if plan.is::<StageReaderExec>() {
        return;
    }
    if let Some(metrics) = plan.metrics() {
        for metric in metrics.iter() {
            let value = metric.value();
            let n = value.as_usize() as u64;
            match value {
                MetricValue::PruningMetrics { name, pruning_metrics } => {
                    let (pruned, matched) = (pruning_metrics.pruned() as u64, pruning_metrics.matched() as u64);
                    match name.as_ref() {
                        "row_groups_pruned_statistics" => {
                            stats.row_groups_pruned += pruned;
                            stats.row_groups_matched += matched;
                        }
                        "row_groups_pruned_bloom_filter" => stats.row_groups_pruned += pruned,
                        "page_index_rows_pruned" => stats.page_rows_pruned += pruned,
                        "files_ranges_pruned_statistics" => stats.files_scanned += pruned + matched,
                        _ => {}
                    }
                }
                _ => {
                    if value.name() == "pushdown_rows_pruned" {
                        stats.pushdown_rows_pruned += n;
                    }
                }
            }
        }
    }
    for child in plan.children() {
        visit(child.as_ref(), stats);
    }
}

/// A task's report on its executed plan: its operators' compute time and spills, and the plan
/// annotated with their metrics.
pub fn task_report(
    plan: &Arc<dyn ExecutionPlan>,
    stage: u32,
    task: u32,
    output_rows: u64,
    bytes_scanned: u64,
) -> TaskReport {
    let work = operator_work(plan);
    let mut report = TaskReport {
        stage,
        task,
        output_rows,
        bytes_scanned,
        compute_ms: work.compute_ms,
        spill_count: work.spill_count,
        spilled_bytes: work.spilled_bytes,
        ..Default::default()
    };
    report.plan = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
        .indent(true)
        .to_string();
    report
}

/// What a task's operators have done so far (their metrics count while they run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperatorWork {
    /// CPU time its operators report (`elapsed_compute`), summed.
    pub compute_ms: u64,
    pub spill_count: u64,
    pub spilled_bytes: u64,
}

/// Sums the compute time and spills of every operator of `plan` (the stages it reads excluded:
/// their readers report no work of their own).
pub fn operator_work(plan: &Arc<dyn ExecutionPlan>) -> OperatorWork {
    let mut work = OperatorWork::default();
    let mut nodes = vec![Arc::clone(plan)];
    while let Some(node) = nodes.pop() {
        if let Some(metrics) = node.metrics() {
            work.compute_ms += metrics.elapsed_compute().unwrap_or(0) as u64 / 1_000_000;
            work.spill_count += metrics.spill_count().unwrap_or(0) as u64;
            work.spilled_bytes += metrics.spilled_bytes().unwrap_or(0) as u64;
        }
        nodes.extend(node.children().into_iter().cloned());
    }
    work
}
