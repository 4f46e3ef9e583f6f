//! A query's tasks, as their executors report them, summed per stage for its page: tasks and
//! where they run, rows and bytes out, bytes scanned, compute time, spills, errors.

use std::collections::BTreeMap;

use glaux_proto::generated::TaskProgress;
use serde_json::{Value, json};

use crate::planner::DistributedPlan;

/// Characters of a plan's rendering kept with its history record; longer ones are cut.
const MAX_PLAN_CHARS: usize = 16 * 1024;

/// One task of a query and the executor that reports it.
#[derive(Clone, Debug)]
pub struct ExecutorTask {
    pub executor: String,
    pub task: TaskProgress,
}

/// A stage's tasks summed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageProgress {
    pub stage: u32,
    pub tasks: u32,
    pub tasks_done: u32,
    pub rows: u64,
    /// Arrow (uncompressed) bytes its tasks sent.
    pub bytes_out: u64,
    pub bytes_scanned: u64,
    pub compute_ms: u64,
    /// The longest of its tasks' run times.
    pub elapsed_ms: u64,
    pub spill_count: u64,
    pub spilled_bytes: u64,
    /// Its tasks per executor.
    pub executors: BTreeMap<String, u32>,
    /// The distinct errors its tasks' reads ended with.
    pub errors: Vec<String>,
}

impl StageProgress {
    /// As a query's page reads it (byte counts also in Athena's units).
    pub fn to_json(&self) -> Value {
        json!({
            "stage": self.stage, "tasks": self.tasks, "tasks_done": self.tasks_done, "rows": self.rows,
            "bytes_out": self.bytes_out, "bytes_out_text": glaux_proto::format_bytes(self.bytes_out),
            "bytes_scanned": self.bytes_scanned, "bytes_scanned_text": glaux_proto::format_bytes(self.bytes_scanned),
            "compute_ms": self.compute_ms, "elapsed_ms": self.elapsed_ms, "spill_count": self.spill_count,
            "spilled_bytes": self.spilled_bytes, "spilled_text": glaux_proto::format_bytes(self.spilled_bytes),
            "executors": self.executors, "errors": self.errors,
        })
    }
}

/// What a query's page shows of how it ran: the stages it ran as (`EXPLAIN`'s rendering, cut at
/// [`MAX_PLAN_CHARS`]) and each stage's numbers, `ended` if its tasks reported them as it ended
/// (otherwise as they were last described while it ran), as JSON.
pub fn how_it_ran(plan: &DistributedPlan, stages: &[StageProgress], ended: bool) -> String {
    let mut rendered = crate::planner::render_distributed_plan(plan, false);
    if let Some((end, _)) = rendered.char_indices().nth(MAX_PLAN_CHARS) {
        rendered.truncate(end);
        rendered.push_str("\n… (cut)");
    }
    let stages: Vec<Value> = stages.iter().map(StageProgress::to_json).collect();
    json!({ "plan": rendered, "stage_progress": stages, "stages_ended": ended }).to_string()
}

/// A running query's progress as its page shows it: `planned` (stages, tasks) and what its tasks
/// report now, summed.
pub fn progress_json(planned: (u64, u64), now: &[StageProgress]) -> Value {
    let (stages, tasks) = planned;
    let sum = |f: fn(&StageProgress) -> u64| now.iter().map(f).sum::<u64>();
    json!({ "tasks": tasks, "tasks_done": sum(|s| u64::from(s.tasks_done)).min(tasks), "stages": stages,
            "rows": sum(|s| s.rows), "data_scanned_bytes": sum(|s| s.bytes_scanned) })
}

/// Sums `tasks` per stage, stages in ascending order.
pub fn by_stage(tasks: &[ExecutorTask]) -> Vec<StageProgress> {
    let mut stages: BTreeMap<u32, StageProgress> = BTreeMap::new();
    for ExecutorTask { executor, task } in tasks {
        let stage = stages
            .entry(task.stage_id)
            .or_insert_with(|| StageProgress { stage: task.stage_id, ..StageProgress::default() });
        stage.tasks += 1;
        stage.tasks_done += u32::from(task.done);
        stage.rows += task.rows_out;
        stage.bytes_out += task.bytes_out;
        stage.bytes_scanned += task.bytes_scanned;
        stage.compute_ms += task.compute_ms;
        stage.elapsed_ms = stage.elapsed_ms.max(task.elapsed_ms);
        stage.spill_count += task.spill_count;
        stage.spilled_bytes += task.spilled_bytes;
        *stage.executors.entry(executor.clone()).or_default() += 1;
        if !task.error.is_empty() && !stage.errors.contains(&task.error) {
            stage.errors.push(task.error.clone());
        }
    }
    stages.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(executor: &str, stage_id: u32, task_id: u32, rows_out: u64, done: bool, error: &str) -> ExecutorTask {
        ExecutorTask {
            executor: executor.into(),
            task: TaskProgress {
                stage_id,
                task_id,
                rows_out,
                bytes_out: rows_out * 8,
                bytes_scanned: 100,
                compute_ms: 3,
                spill_count: u64::from(task_id == 1),
                spilled_bytes: if task_id == 1 { 4096 } else { 0 },
                elapsed_ms: 10 * u64::from(task_id + 1),
                done,
                error: error.into(),
                spooled: false,
            },
        }
    }

    #[test]
    fn sums_each_stage_and_counts_tasks_per_executor() {
        let tasks = [
            task("b:1", 2, 0, 5, true, ""),
            task("a:1", 1, 0, 10, true, ""),
            task("b:1", 1, 1, 20, false, "disk full"),
            task("a:1", 1, 2, 30, false, "disk full"),
        ];
        let stages = by_stage(&tasks);
        assert_eq!(stages.iter().map(|s| s.stage).collect::<Vec<_>>(), [1, 2]);
        let one = &stages[0];
        assert_eq!((one.tasks, one.tasks_done, one.rows, one.bytes_out), (3, 1, 60, 480));
        assert_eq!((one.bytes_scanned, one.compute_ms, one.elapsed_ms), (300, 9, 30));
        assert_eq!((one.spill_count, one.spilled_bytes), (1, 4096));
        assert_eq!(one.executors, BTreeMap::from([("a:1".to_string(), 2), ("b:1".to_string(), 1)]));
        assert_eq!(one.errors, ["disk full"], "one error, however many tasks met it");
        assert_eq!((stages[1].tasks, stages[1].rows, stages[1].errors.len()), (1, 5, 0));
        assert!(by_stage(&[]).is_empty());
    }
}
