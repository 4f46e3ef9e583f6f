//! Rendering a distributed plan for `EXPLAIN`: the stage tree, each stage under the one that reads it.

use std::fmt::Write;
use std::sync::Arc;

use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, displayable};
use glaux_proto::{ExecutorAddr, StageId, StageReaderExec, TaskReport, format_bytes as human_bytes};

use super::{DistributedPlan, Exchange, SingleTask, Stage};

mod file_groups;
use file_groups::{summarized, summarized_text};

/// The scans' partition pruning, then stage 0 (the scheduler's) with the stages it reads nested
/// below it, each with its exchange, tasks and plan.
/// Unless `verbose`, each scan's file groups are summarized (`files: 33 (3.10 MB) in 4 groups`)
/// instead of listing every path.
pub fn render_distributed_plan(plan: &DistributedPlan, verbose: bool) -> String {
    render(plan, None, verbose)
}

/// `EXPLAIN ANALYZE`: the same tree after running it, with stage 0's operators' metrics and each
/// task's rows, compute time, spills, bytes scanned and plan with metrics, as its executor reported.
pub fn render_analyzed_plan(plan: &DistributedPlan, reports: &[TaskReport], verbose: bool) -> String {
    render(plan, Some(reports), verbose)
}

fn render(plan: &DistributedPlan, reports: Option<&[TaskReport]>, verbose: bool) -> String {
    let mut out = String::new();
    for scan in &plan.scans {
        let total = scan.partitions_total.map_or_else(|| "?".to_string(), |t| t.to_string());
        let how = if scan.projected { "projected" } else { "catalog" };
        let _ = writeln!(
            out,
            "Scan {}: partitions {} of {total} ({how}), files {}, {}",
            scan.table,
            scan.partitions,
            scan.files,
            human_bytes(scan.bytes)
        );
    }
    let _ = writeln!(out, "Stage 0 (scheduler)");
    let root = match reports {
        Some(_) => DisplayableExecutionPlan::with_metrics(plan.root.as_ref()).indent(true).to_string(),
        None => displayable(plan.root.as_ref()).indent(true).to_string(),
    };
    indent(&mut out, 1, &summarized(&plan.root, root, verbose));
    let shown = Shown { plan, reports, verbose };
    for input in read_stages(&plan.root) {
        render_stage(&mut out, &shown, input, 1);
    }
    out
}

/// What a stage tree is drawn from.
struct Shown<'a> {
    plan: &'a DistributedPlan,
    reports: Option<&'a [TaskReport]>,
    verbose: bool,
}

fn render_stage(out: &mut String, shown: &Shown, id: StageId, depth: usize) {
    let Shown { plan, reports, verbose } = *shown;
    let Some(stage) = plan.stages.iter().find(|s| s.id == id) else { return };
    let mut executors: Vec<&ExecutorAddr> = stage.tasks.iter().map(|t| &t.executor).collect();
    executors.sort_unstable();
    executors.dedup();
    let header = format!(
        "Stage {id}: {}, {} task{} on {} executor{}{}, files: {}, bytes: {}",
        exchange(stage),
        stage.tasks.len(),
        plural(stage.tasks.len()),
        executors.len(),
        plural(executors.len()),
        match stage.single_task {
            Some(SingleTask::Coordinated) => " (single task: its join coordinates all partitions)".to_string(),
            Some(SingleTask::SmallQuery { bytes }) =>
                format!(" (single task: a small query, its scans produce about {})", human_bytes(bytes)),
            None => String::new(),
        },
        stage.files,
        human_bytes(stage.bytes),
    );
    indent(out, depth, &header);
    if stage.tasks.is_empty() {
        indent(out, depth + 1, "no tasks: no executor is alive");
    }
    for task in &stage.tasks {
        let line = format!(
            "task {} on {}: partitions {:?}, {}",
            task.id,
            task.executor,
            task.partitions,
            human_bytes(task.bytes)
        );
        indent(out, depth + 1, &line);
        let Some(reports) = reports else { continue };
        match reports.iter().find(|r| r.stage == id.0 && r.task == task.id.0) {
            Some(r) => {
                let line = format!(
                    "output rows {}, compute {} ms, spilled {} in {} files, scanned {}",
                    r.output_rows,
                    r.compute_ms,
                    human_bytes(r.spilled_bytes),
                    r.spill_count,
                    human_bytes(r.bytes_scanned)
                );
                indent(out, depth + 2, &line);
                let text = if verbose { r.plan.clone() } else { summarized_text(&r.plan) };
                indent(out, depth + 2, &text);
            }
            None => indent(out, depth + 2, "(no report: the task did not finish)"),
        }
    }
    if reports.is_none() {
        let text = displayable(stage.plan.as_ref()).indent(true).to_string();
        indent(out, depth + 1, &summarized(&stage.plan, text, verbose));
    }
    for input in read_stages(&stage.plan) {
        render_stage(out, shown, input, depth + 1);
    }
}

fn exchange(stage: &Stage) -> String {
    let partitions = stage.plan.output_partitioning().partition_count();
    match stage.exchange {
        Exchange::Gather => format!("gather of {partitions} partition{}", plural(partitions)),
        Exchange::Shuffle => format!("shuffle into {partitions} partition{}", plural(partitions)),
        Exchange::Broadcast { readers } => {
            format!("broadcast of {partitions} partition{} to {readers} tasks", plural(partitions))
        }
    }
}

/// The stages a fragment reads, in plan order.
fn read_stages(plan: &Arc<dyn ExecutionPlan>) -> Vec<StageId> {
    let mut stages = Vec::new();
    let mut visit = vec![Arc::clone(plan)];
    while let Some(node) = visit.pop() {
        if let Some(reader) = node.downcast_ref::<StageReaderExec>() {
            stages.push(reader.stage());
        }
        visit.extend(node.children().into_iter().rev().cloned());
    }
    stages
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn indent(out: &mut String, depth: usize, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "{}{line}", "  ".repeat(depth));
    }
}
