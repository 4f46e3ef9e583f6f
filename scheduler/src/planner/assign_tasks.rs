//! Balancing a stage's partitions over executors by the bytes they will scan.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use glaux_proto::{ExecutorAddr, TaskId};

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
/// largest first, to the executor with the least bytes per task slot so far in this stage; between
/// executors equal in this stage, to the one the query's earlier stages gave the fewest bytes
/// (`assigned`, which this adds to). A query's stages run at once, waiting only for their inputs:
/// two fact scans of one query, each cut in a small and a large task, would otherwise both put
/// their large task on the same executor (TPC-DS q61, `store_sales` at SF 1 being three row groups).
pub fn assign_tasks(
    stage: &Arc<dyn ExecutionPlan>,
    executors: &[ExecutorInfo],
    assigned: &mut HashMap<ExecutorAddr, u64>,
) -> Assignment {
    let scans = scan_files(stage).unwrap_or_default();
    let partitions = stage.output_partitioning().partition_count();
    let weights = partition_bytes(stage, &scans, partitions);
    let files = scans.iter().map(|s| s.file_groups.iter().map(|g| g.len()).sum::<usize>()).sum();
    let bytes = scans.iter().map(scan_bytes).sum();

    let mut order: Vec<usize> = (0..partitions).collect();
    order.sort_by_key(|&p| std::cmp::Reverse(weights[p]));
    let mut load: Vec<(u64, Vec<u32>)> = vec![(0, Vec::new()); executors.len()];
    for partition in order {
        let Some(target) = (0..executors.len()).min_by_key(|&e| {
            let slots = u64::from(executors[e].task_slots.max(1));
            let before = assigned.get(&executors[e].addr).copied().unwrap_or(0);
            (load[e].0 / slots, load[e].1.len() as u64 / slots, before / slots, e)
        }) else {
            break;
        };
        load[target].0 += weights[partition];
        load[target].1.push(partition as u32);
    }
    let tasks: Vec<Task> = load
        .into_iter()
        .zip(executors)
        .filter(|((_, partitions), _)| !partitions.is_empty())
        .enumerate()
        .map(|(i, ((bytes, mut partitions), executor))| {
            partitions.sort_unstable();
            Task { id: TaskId(i as u32), executor: executor.addr.clone(), partitions, bytes }
        })
        .collect();
    for task in &tasks {
        *assigned.entry(task.executor.clone()).or_default() += task.bytes;
    }
    Assignment { tasks, files, bytes }
}

/// Expected bytes per output partition: the file groups of the scans that produce the stage's
/// partitions (reached from its root through nodes with as many partitions: not a broadcast
/// join's build side under its coalesce), each group its partition's; the other scans' bytes (read
/// by every partition, or by a union's inputs) split evenly.
fn partition_bytes(stage: &Arc<dyn ExecutionPlan>, scans: &[FileScanConfig], partitions: usize) -> Vec<u64> {
    let total: u64 = scans.iter().map(scan_bytes).sum();
    let mut weights = vec![0u64; partitions];
    let mut aligned = 0u64;
    let mut pending = vec![Arc::clone(stage)];
    while let Some(node) = pending.pop() {
        if let Some(config) =
            node.downcast_ref::<DataSourceExec>().and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
        {
            if config.file_groups.len() == partitions {
                for (weight, group) in weights.iter_mut().zip(&config.file_groups) {
                    let bytes: u64 = group.files().iter().map(file_bytes).sum();
                    *weight += bytes;
                    aligned += bytes;
                }
            }
            continue;
        }
        pending.extend(
            node.children().into_iter().filter(|c| c.output_partitioning().partition_count() == partitions).cloned(),
        );
    }
    let spread = total.saturating_sub(aligned) / partitions.max(1) as u64;
    weights.iter_mut().for_each(|weight| *weight += spread);
    weights
}

fn scan_bytes(scan: &FileScanConfig) -> u64 {
    scan.file_groups.iter().flat_map(|g| g.files()).map(file_bytes).sum()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::listing::PartitionedFile;
    use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
    use datafusion::execution::object_store::ObjectStoreUrl;
    use datafusion::physical_plan::joins::CrossJoinExec;
    use glaux_proto::ExecutorId;

    use super::*;

    fn executors(task_slots: u32) -> Vec<ExecutorInfo> {
        (0..2)
            .map(|i| ExecutorInfo {
                id: ExecutorId::from(format!("e{i}")),
                addr: ExecutorAddr::parse(&format!("127.0.0.1:{i}")).unwrap(),
                task_slots,
            })
            .collect()
    }

    #[test]
    fn balances_by_bytes_over_slots() {
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema).with_partitions(4));
        let assignment = assign_tasks(&plan, &executors(2), &mut HashMap::new());
        assert_eq!(assignment.tasks.len(), 2);
        let mut all: Vec<u32> = assignment.tasks.iter().flat_map(|t| t.partitions.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2, 3]);
        assert!(assignment.tasks.iter().all(|t| t.partitions.len() == 2));
    }

    /// A Parquet scan of `groups`, each a list of (path, start, end) byte ranges.
    fn scan(groups: &[&[(&str, i64, i64)]]) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let groups = groups
            .iter()
            .map(|ranges| {
                let files = ranges.iter().map(|&(path, start, end)| {
                    PartitionedFile::new_with_range(path.to_string(), 120 << 20, start, end)
                });
                FileGroup::new(files.collect())
            })
            .collect();
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(ParquetSource::new(schema)))
                .with_file_groups(groups)
                .build();
        DataSourceExec::from_data_source(config)
    }

    /// Two stages of one query each scan a fact file cut into a 40 MB and an 80 MB partition, with
    /// a dimension every partition reads: each partition weighs its own range (plus its share of
    /// the dimension), and the second stage's large partition goes to the executor the first
    /// stage gave the small one.
    #[test]
    fn a_querys_large_partitions_go_to_different_executors() {
        const MB: i64 = 1 << 20;
        let stage = || -> Arc<dyn ExecutionPlan> {
            let dimension = scan(&[&[("dim.parquet", 0, 10 * MB)]]);
            let fact = scan(&[&[("fact.parquet", 0, 40 * MB)], &[("fact.parquet", 40 * MB, 120 * MB)]]);
            Arc::new(CrossJoinExec::new(dimension, fact))
        };
        let executors = executors(1);
        let mut assigned = HashMap::new();
        let first = assign_tasks(&stage(), &executors, &mut assigned);
        let second = assign_tasks(&stage(), &executors, &mut assigned);
        let weights = |a: &Assignment| {
            let mut tasks: Vec<(u32, u64, String)> =
                a.tasks.iter().map(|t| (t.partitions[0], t.bytes, t.executor.to_string())).collect();
            tasks.sort();
            tasks
        };
        let (first, second) = (weights(&first), weights(&second));
        assert_eq!(first.iter().map(|t| t.1).collect::<Vec<_>>(), vec![45 << 20, 85 << 20], "{first:?}");
        assert_eq!(second.iter().map(|t| t.1).collect::<Vec<_>>(), vec![45 << 20, 85 << 20], "{second:?}");
        assert_ne!(first[1].2, second[1].2, "the large partitions on different executors: {first:?} {second:?}");
        assert!(assigned.values().all(|&bytes| bytes == 130 << 20), "{assigned:?}");
    }
}
