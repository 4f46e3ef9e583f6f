//! Giving each task a plan that names only its own files.
//!
//! A stage plan lists every file group of its scan, one per partition. The task that runs
//! partitions {0, 2} gets a copy whose other groups are empty: the plan sent over the wire shrinks
//! with the number of tasks, and no executor can read files it was not assigned.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, replace_children_if_necessary};

use datafusion::common::internal_err;
use glaux_proto::PartitionSubsetExec;

use super::cut_stages::scan_files;
use super::{Exchange, Stage, Task};

/// The plan one task of `stage` runs. For a shuffle, the stage's repartition over only the task's
/// partitions of its input (`PartitionSubsetExec`).
pub fn task_plan(stage: &Stage, task: &Task) -> Result<Arc<dyn ExecutionPlan>> {
    if stage.exchange != Exchange::Shuffle {
        return restrict_to_task(&stage.plan, &task.partitions);
    }
    let Some(input) = stage.plan.children().first().map(|c| Arc::clone(c)) else {
        return internal_err!("shuffle stage {} has no input", stage.id);
    };
    let input = restrict_to_task(&input, &task.partitions)?;
    let subset = Arc::new(PartitionSubsetExec::try_new(input, task.partitions.clone())?);
    replace_children_if_necessary(Arc::clone(&stage.plan), vec![subset])
}

/// `stage` with the file groups of partitions outside `partitions` emptied, when the stage is a
/// single scan whose file groups are its partitions; `stage` itself otherwise.
fn restrict_to_task(stage: &Arc<dyn ExecutionPlan>, partitions: &[u32]) -> Result<Arc<dyn ExecutionPlan>> {
    let count = stage.output_partitioning().partition_count();
    let single_scan = scan_files(stage).is_some_and(|scans| scans.len() == 1 && scans[0].file_groups.len() == count);
    if !single_scan {
        return Ok(Arc::clone(stage));
    }
    let restricted = Arc::clone(stage).transform_up(|plan| {
        let Some(config) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|source| source.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(Transformed::no(plan));
        };
        let mut config = config.clone();
        for (i, group) in config.file_groups.iter_mut().enumerate() {
            if !partitions.contains(&(i as u32)) {
                *group = FileGroup::default();
            }
        }
        let restricted: Arc<dyn ExecutionPlan> = Arc::new(DataSourceExec::new(Arc::new(config)));
        Ok(Transformed::yes(restricted))
    })?;
    Ok(restricted.data)
}
