//! Rendering a distributed plan for `EXPLAIN`.

use std::fmt::Write;

use datafusion::physical_plan::{ExecutionPlanProperties, displayable};

use glaux_proto::format_bytes as human_bytes;

use super::DistributedPlan;

/// Stage 0 (the scheduler's) first, then each executor stage with its tasks and plan.
pub fn render_distributed_plan(plan: &DistributedPlan) -> String {
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
    indent(&mut out, &displayable(plan.root.as_ref()).indent(true).to_string());
    for stage in &plan.stages {
        let executors = {
            let mut e: Vec<&str> = stage.tasks.iter().map(|t| t.endpoint.as_str()).collect();
            e.dedup();
            e.len()
        };
        let _ = writeln!(
            out,
            "Stage {} (executors: {executors}, tasks: {}, partitions: {}, files: {}, bytes: {}, output: {:?})",
            stage.id,
            stage.tasks.len(),
            stage.plan.output_partitioning().partition_count(),
            stage.files,
            human_bytes(stage.bytes),
            stage.exchange,
        );
        for task in &stage.tasks {
            let _ = writeln!(
                out,
                "  task {} on {}: partitions {:?}, {}",
                task.id,
                task.endpoint,
                task.partitions,
                human_bytes(task.bytes)
            );
        }
        indent(&mut out, &displayable(stage.plan.as_ref()).indent(true).to_string());
    }
    out
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(out, "  {line}");
    }
}
