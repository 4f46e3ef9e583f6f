//! What a task reports about its work, carried in the app_metadata after its last batch.

use serde::{Deserialize, Serialize};

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
