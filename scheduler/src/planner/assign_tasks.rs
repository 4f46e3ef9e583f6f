//! Balancing a stage's partitions over executors by the bytes they will scan.

use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use glaux_proto::TaskId;

use super::Task;
use super::scan_files::{file_bytes, scan_files};
use crate::cluster::ExecutorInfo;

/// What assigning a stage produced.
pub struct Assignment {
    pub tasks: Vec<Task>,
    pub files: usize,
    pub bytes: u64,
}

/// Gives each executor one task holding its share of the stage's output partitions. Partitions go,
/// largest first, to the executor with the least bytes per task slot so far.
pub fn assign_tasks(stage: &Arc<dyn ExecutionPlan>, executors: &[ExecutorInfo]) -> Assignment {
    let scans = scan_files(stage).unwrap_or_default();
    let partitions = stage.output_partitioning().partition_count();
    let weights = partition_bytes(&scans, partitions);
    let files = scans.iter().map(|s| s.file_groups.iter().map(|g| g.len()).sum::<usize>()).sum();
    let bytes = scans.iter().map(scan_bytes).sum();

    let mut order: Vec<usize> = (0..partitions).collect();
    order.sort_by_key(|&p| std::cmp::Reverse(weights[p]));
    let mut load: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); executors.len()];
    for partition in order {
        let Some(target) = (0..executors.len()).min_by_key(|&e| {
            let slots = u64::from(executors[e].task_slots.max(1));
            (load[e].0 / slots, load[e].1.len() as u64 / slots, e)
        }) else {
            break;
        };
        load[target].0 += weights[partition];
        load[target].1.push(partition as u32);
    }
    let tasks = load
        .into_iter()
        .zip(executors)
        .filter(|((_, partitions), _)| !partitions.is_empty())
        .enumerate()
        .map(|(i, ((bytes, mut partitions), executor))| {
            partitions.sort_unstable();
            Task { id: TaskId(i as u32), executor: executor.addr.clone(), partitions, bytes }
        })
        .collect();
    Assignment { tasks, files, bytes }
}

/// Expected bytes per output partition: exact when the stage is one scan whose file groups are
/// its partitions, an even split of the total otherwise.
fn partition_bytes(scans: &[FileScanConfig], partitions: usize) -> Vec<u64> {
    if let [scan] = scans
        && scan.file_groups.len() == partitions
    {
        return scan.file_groups.iter().map(|group| group.files().iter().map(file_bytes).sum()).collect();
    }
    let total: u64 = scans.iter().map(scan_bytes).sum();
    vec![total / partitions.max(1) as u64; partitions]
}

fn scan_bytes(scan: &FileScanConfig) -> u64 {
    scan.file_groups.iter().flat_map(|g| g.files()).map(file_bytes).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use glaux_proto::{ExecutorAddr, ExecutorId};

    #[test]
    fn balances_by_bytes_over_slots() {
        let executors: Vec<ExecutorInfo> = (0..2)
            .map(|i| ExecutorInfo {
                id: ExecutorId::from(format!("e{i}")),
                addr: ExecutorAddr::parse(&format!("127.0.0.1:{i}")).unwrap(),
                task_slots: 2,
            })
            .collect();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema).with_partitions(4));
        let assignment = assign_tasks(&plan, &executors);
        assert_eq!(assignment.tasks.len(), 2);
        let mut all: Vec<u32> = assignment.tasks.iter().flat_map(|t| t.partitions.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        assert!(assignment.tasks.iter().all(|t| t.partitions.len() == 2));
    }
}
