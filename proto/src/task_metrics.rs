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
    let mut report = TaskReport { stage, task, output_rows, bytes_scanned, ..Default::default() };
    let mut nodes = vec![Arc::clone(plan)];
    while let Some(node) = nodes.pop() {
        if let Some(metrics) = node.metrics() {
            report.compute_ms += metrics.elapsed_compute().unwrap_or(0) as u64 / 1_000_000;
            report.spill_count += metrics.spill_count().unwrap_or(0) as u64;
            report.spilled_bytes += metrics.spilled_bytes().unwrap_or(0) as u64;
        }
        nodes.extend(node.children().into_iter().cloned());
    }
    report.plan = datafusion::physical_plan::display::DisplayableExecutionPlan::with_metrics(plan.as_ref())
        .indent(true)
        .to_string();
    report
}
