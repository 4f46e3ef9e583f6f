//! What a task reports about its work, carried in the app_metadata after its last batch.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::generated::TaskProgress;

/// Counters of one task, or summed over many. Additive: `merge` is the only way they combine.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// In the trailer of the read that finished a task: its own account and those of the tasks
    /// below it that its readers received ([`EndedTask`]). Never merged: it is not a counter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<EndedTask>,
}

/// A finished task's account of itself, made by its executor when the read that finished the
/// task ended. It travels down the query's trailers to the final stage: a task's own goes with
/// its last read, together with those its readers received from the tasks below it, so the
/// scheduler holds every task's account when the results end, without asking the executors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndedTask {
    /// The executor that ran it, set by the reader that received the account from there (a task
    /// does not know the address it is reached at).
    #[serde(default)]
    pub executor: String,
    pub progress: TaskProgress,
    /// Its own work (its `reports` too, under `EXPLAIN ANALYZE`).
    pub stats: TaskStats,
}

/// Where the accounts of finished tasks wait ([`EndedTask`]): registered in the session of a
/// task (its readers put there what they receive, and the read that finishes the task takes it
/// all along) and of a query's final stage on the scheduler.
#[derive(Debug, Default)]
pub struct EndedTasks(Mutex<Vec<EndedTask>>);

impl EndedTasks {
    /// Keeps the accounts a trailer read from `executor` carries, naming that executor where the
    /// account is the reporting task's own.
    pub fn receive(&self, executor: &str, accounts: &[EndedTask]) {
        if accounts.is_empty() {
            return;
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.extend(accounts.iter().map(|account| match account.executor.is_empty() {
            true => EndedTask { executor: executor.to_string(), ..account.clone() },
            false => account.clone(),
        }));
    }

    /// Every account received so far, taken.
    pub fn take(&self) -> Vec<EndedTask> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_accounts_name_the_executor_they_came_from_once() {
        let own = EndedTask { progress: TaskProgress { stage_id: 2, ..Default::default() }, ..Default::default() };
        let below = EndedTask { executor: "10.0.0.2:50051".into(), ..Default::default() };
        let kept = EndedTasks::default();
        kept.receive("10.0.0.1:50051", &[below, own]);
        let stats = TaskStats { ended: kept.take(), ..Default::default() };
        let sent = TaskStats::from_json(&stats.to_json()).expect("a trailer");
        let executors: Vec<&str> = sent.ended.iter().map(|a| a.executor.as_str()).collect();
        assert_eq!(executors, ["10.0.0.2:50051", "10.0.0.1:50051"]);
        assert_eq!(sent.ended[1].progress.stage_id, 2);
        assert!(kept.take().is_empty(), "taken once");
        let query = QueryStats { scan: TaskStats::default(), ..Default::default() };
        assert!(!String::from_utf8(query.to_json()).unwrap().contains("ended"), "clients never see accounts");
    }
}
