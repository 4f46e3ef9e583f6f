//! `PartitionSubsetExec`: some partitions of its input, renumbered from 0.
//!
//! A shuffle stage's plan is a `RepartitionExec` over the stage's fragment. Every task runs that
//! repartition, each over its own share of the fragment's partitions: the scheduler puts this node
//! between the two, so a task's repartition reads partitions `{1, 3}` of the fragment as its inputs
//! 0 and 1, and never executes the partitions other tasks run.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{Partitioning, PhysicalExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};

#[derive(Debug)]
pub struct PartitionSubsetExec {
    input: Arc<dyn ExecutionPlan>,
    partitions: Vec<u32>,
    properties: Arc<PlanProperties>,
}

impl PartitionSubsetExec {
    /// Partitions `partitions` of `input`, which must exist.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, partitions: Vec<u32>) -> Result<Self> {
        let count = input.output_partitioning().partition_count();
        if let Some(missing) = partitions.iter().find(|&&p| p as usize >= count) {
            return internal_err!("PartitionSubsetExec: partition {missing} of an input with {count}");
        }
        let properties = PlanProperties::new(
            input.equivalence_properties().clone(),
            Partitioning::UnknownPartitioning(partitions.len()),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Ok(Self { input, partitions, properties: Arc::new(properties) })
    }

    pub fn partitions(&self) -> &[u32] {
        &self.partitions
    }
}

impl DisplayAs for PartitionSubsetExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PartitionSubsetExec: partitions={:?}", self.partitions)
    }
}

impl ExecutionPlan for PartitionSubsetExec {
    fn name(&self) -> &str {
        "PartitionSubsetExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)] // DataFusion 55 still requires this deprecated method of every node
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self::try_new(input, self.partitions.clone())?)),
            Err(children) => internal_err!("PartitionSubsetExec has one input, got {}", children.len()),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        match self.partitions.get(partition) {
            Some(&input) => self.input.execute(input as usize, context),
            None => internal_err!("PartitionSubsetExec has no partition {partition}"),
        }
    }
}
