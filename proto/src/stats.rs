//! What a task reports about its work, carried in the app_metadata after its last batch.

use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::MetricValue;
use serde::{Deserialize, Serialize};

use crate::StageReaderExec;

/// Counters of one task, or summed over many. Additive: `merge` is the only way they combine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// Rows the task sent downstream.
    pub output_rows: u64,
    /// Bytes read from object storage (counted at the store, so every format alike).
    pub bytes_scanned: u64,
    /// Files (or byte ranges of files) the task's scans were given.
    pub files_scanned: u64,
    /// Parquet row groups skipped by statistics (min/max) or bloom filters.
    pub row_groups_pruned: u64,
    /// Parquet row groups that had to be read.
    pub row_groups_matched: u64,
    /// Rows skipped by the Parquet page index.
    pub page_rows_pruned: u64,
    /// Rows removed by filters pushed into the Parquet decoder (late materialization).
    pub pushdown_rows_pruned: u64,
    /// For `EXPLAIN ANALYZE`: what each task of this one and of the stages below it did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<TaskReport>,
}

/// One task's account of its run, for `EXPLAIN ANALYZE`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub stage: u32,
    pub task: u32,
    /// Rows the task sent to its consumers, over all its partitions.
    pub output_rows: u64,
    /// Bytes its scans read from object storage.
    pub bytes_scanned: u64,
    /// CPU time its operators report (`elapsed_compute`), summed.
    pub compute_ms: u64,
    pub spill_count: u64,
    pub spilled_bytes: u64,
    /// Its plan with each operator's metrics.
    pub plan: String,
}

impl TaskStats {
    pub fn merge(&mut self, other: &TaskStats) {
        self.output_rows += other.output_rows;
        self.bytes_scanned += other.bytes_scanned;
        self.files_scanned += other.files_scanned;
        self.row_groups_pruned += other.row_groups_pruned;
        self.row_groups_matched += other.row_groups_matched;
        self.page_rows_pruned += other.page_rows_pruned;
        self.pushdown_rows_pruned += other.pushdown_rows_pruned;
        self.reports.extend(other.reports.iter().cloned());
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a trailer; `None` for anything that is not one (it is only ever advisory).
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

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

/// What the client learns about a query after its last batch (the trailer of a Flight SQL `DoGet`,
/// as JSON in `app_metadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryStats {
    pub query_id: String,
    pub elapsed_ms: u64,
    /// Rows returned to the client.
    pub rows: u64,
    /// Executor stages and tasks the query ran.
    pub stages: u64,
    pub tasks: u64,
    /// Files (or byte ranges) the plan assigned to tasks after partition pruning, and their bytes.
    pub files_planned: u64,
    pub bytes_planned: u64,
    /// Partitions of partitioned tables the scans chose, and how many those tables have.
    #[serde(default)]
    pub partitions_read: u64,
    #[serde(default)]
    pub partitions_total: u64,
    /// Tasks run a second time because their executor was lost mid-query.
    #[serde(default)]
    pub tasks_rerun: u64,
    #[serde(flatten)]
    pub scan: TaskStats,
}

impl QueryStats {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// How far a running query is (JSON, the answer to the scheduler's `GlauxQueryProgress` Flight
/// action), for clients' progress lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryProgress {
    pub stages: u64,
    pub tasks: u64,
    /// Tasks whose output has been read whole.
    pub tasks_done: u64,
    /// Rows the query's tasks have produced, and rows returned to the client.
    pub task_rows: u64,
    pub rows: u64,
    pub bytes_scanned: u64,
    pub elapsed_ms: u64,
}

/// Bytes in decimal units, as Athena reports "Data scanned": `4.19 MB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.2} {}", UNITS[unit]) }
}
