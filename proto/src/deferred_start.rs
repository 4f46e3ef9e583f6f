//! `DeferredStartExec`: its input executed when its stream is first polled, not before.
//!
//! DataFusion executes a whole plan at once, a join's probe side included, before the join has
//! built its table; and `CoalescePartitionsExec` starts its inputs the moment it is executed. A
//! scan under such a coalesce, in a join's probe side, then opens its file before the join has
//! completed the dynamic filter pushed into it, and takes the filter as it finds it at the open:
//! empty. In one process this is a race DataFusion usually wins; in a task it was lost (TPC-DS
//! q54's small-query task: its `customer_address` scan read 50,000 rows where 18 pass the store
//! join's filter, so 1,480 customers and 40,000 `store_sales` rows went on instead of 1 and 41;
//! 67.9 ms against DataFusion's 44.7).
//!
//! [`defer_filtered_starts`] puts this node over every coalesce with a scan under it holding a
//! dynamic filter that a join outside the coalesce, in the same plan, produces. That join has the
//! coalesce in its probe side, which it polls only once its table is built: the scans open with
//! the filter whole. Coalesces that wait for no filter keep starting at once, and so do those
//! over stage readers only: a reader waits for its filters itself before it asks for its rows
//! (`dynamic_filters::completed`). So do those whose scans' filters read no column: a join on a
//! constant key (Glaux's `NOT IN` plan joins the subquery's counts so, `session/not_in.rs`)
//! pushes down a filter that keeps every row or none, and waiting for it would only keep the
//! scan from starting alongside the join's build (TPC-H q16: its `part` scan waited for both
//! `supplier` scans, 2-3 ms).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_err};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::TryStreamExt;

use crate::dynamic_filters::{filter_ids_where, join_filters};

/// `plan` with a [`DeferredStartExec`] over every `CoalescePartitionsExec` with a scan under it
/// holding a dynamic filter a hash join of `plan` outside it produces (see the module's
/// documentation).
pub fn defer_filtered_starts(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    let produced: HashSet<u64> = join_filters(&plan).into_keys().collect();
    if produced.is_empty() {
        return Ok(plan);
    }
    plan.transform_up(|node| {
        if !node.is::<CoalescePartitionsExec>() {
            return Ok(Transformed::no(node));
        }
        let inside: HashSet<u64> = join_filters(&node).into_keys().collect();
        let mut waits = false;
        node.apply(|below| {
            if below.is::<DataSourceExec>() {
                waits |= filter_ids_where(below, reads_a_column)
                    .iter()
                    .any(|id| produced.contains(id) && !inside.contains(id));
            }
            Ok(if waits { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
        })?;
        Ok(if waits {
            Transformed::yes(Arc::new(DeferredStartExec { input: node }) as _)
        } else {
            Transformed::no(node)
        })
    })
    .map(|t| t.data)
}

/// Whether a dynamic filter reads at least one column (one on a constant key reads none).
fn reads_a_column(filter: &Arc<dyn PhysicalExpr>) -> bool {
    filter.children().into_iter().any(|key| !collect_columns(key).is_empty())
}

#[derive(Debug)]
pub struct DeferredStartExec {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for DeferredStartExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "DeferredStartExec")
    }
}

impl ExecutionPlan for DeferredStartExec {
    fn name(&self) -> &str {
        "DeferredStartExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
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

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    #[allow(deprecated)] // DataFusion 55 still requires this deprecated method of every node
    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        match <[_; 1]>::try_from(children) {
            Ok([input]) => Ok(Arc::new(Self { input })),
            Err(children) => internal_err!("DeferredStartExec has one input, got {}", children.len()),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = Arc::clone(&self.input);
        let schema = input.schema();
        let started = futures::stream::once(async move { input.execute(partition, context) }).try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, started)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::WriterProperties;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
    use futures::StreamExt;

    use super::*;

    /// A Parquet file holding `values` (column `k`), one row group per row.
    fn parquet(path: &std::path::Path, values: Vec<i64>) {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(values))]).unwrap();
        let file = std::fs::File::create(path).unwrap();
        let properties = WriterProperties::builder().set_max_row_group_row_count(Some(1)).build();
        let mut writer = ArrowWriter::try_new(file, schema, Some(properties)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    /// Tables `one` (7), `wide` (0..100 in two files) and `many` (0..1000), in a context of two
    /// partitions that pushes filters into Parquet scans; the directory lives as long as its guard.
    async fn three_tables() -> (tempfile::TempDir, SessionContext) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("wide")).unwrap();
        parquet(&dir.path().join("one.parquet"), vec![7]);
        for part in 0..2 {
            parquet(&dir.path().join(format!("wide/{part}.parquet")), (0..50).map(|i| i * 2 + part).collect());
        }
        parquet(&dir.path().join("many.parquet"), (0..1000).collect());
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().execution.parquet.pushdown_filters = true;
        let ctx = SessionContext::new_with_config(config);
        let path = |name: &str| dir.path().join(name).display().to_string();
        ctx.register_parquet("one", &path("one.parquet"), ParquetReadOptions::default()).await.unwrap();
        ctx.register_parquet("wide", &format!("{}/", path("wide")), ParquetReadOptions::default()).await.unwrap();
        ctx.register_parquet("many", &path("many.parquet"), ParquetReadOptions::default()).await.unwrap();
        (dir, ctx)
    }

    /// The build side of a join, two partitions coalesced, in the probe side of a join whose
    /// filter reaches its scan: deferred, that scan opens once the outer join has built its
    /// table, and reads only the row its filter lets through.
    #[tokio::test]
    async fn a_coalesce_waiting_for_a_filter_starts_once_the_filter_is_whole() {
        let (_dir, ctx) = three_tables().await;
        // `one` builds the outer join; its filter on `k` reaches `wide`, which builds the inner one.
        let sql = "SELECT count(*) FROM one o JOIN (SELECT w.k FROM wide w JOIN many m ON w.k = m.k) j ON o.k = j.k";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let deferred = defer_filtered_starts(Arc::clone(&plan)).unwrap();
        let shown = displayable(deferred.as_ref()).indent(true).to_string();
        let under = shown.lines().skip_while(|l| !l.contains("DeferredStartExec")).nth(1).unwrap_or_default();
        assert!(under.contains("CoalescePartitionsExec"), "the coalesce over the wide scan is deferred:\n{shown}");
        assert_eq!(shown.matches("DeferredStartExec").count(), 1, "{shown}");

        let mut stream = deferred.execute(0, ctx.task_ctx()).unwrap();
        let mut counted = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            counted.extend(batch.column(0).as_any().downcast_ref::<Int64Array>().unwrap().iter().flatten());
        }
        assert_eq!(counted, vec![1], "7 is in all three tables");
        let mut wide_rows = None;
        deferred
            .apply(|node| {
                if node.children().is_empty() && displayable(node.as_ref()).one_line().to_string().contains("wide") {
                    wide_rows = node.metrics().and_then(|m| m.output_rows());
                }
                Ok(TreeNodeRecursion::Continue)
            })
            .unwrap();
        assert_eq!(wide_rows, Some(1), "the wide scan passed only the row the filter lets through:\n{shown}");
    }

    /// A join on a constant key (as Glaux plans `NOT IN`'s counts) pushes a filter reading no
    /// column into the scans of its probe side: no coalesce waits for it.
    #[tokio::test]
    async fn a_filter_on_a_constant_key_defers_nothing() {
        let (_dir, ctx) = three_tables().await;
        let sql = "SELECT count(*) FROM (SELECT count(*) AS n, true AS on_counts FROM one) o \
                   JOIN (SELECT w.k, true AS on_rows FROM wide w JOIN many m ON w.k = m.k) j ON o.on_counts = j.on_rows";
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let shown = displayable(plan.as_ref()).indent(true).to_string();
        let wide = shown.lines().find(|l| l.contains("DataSourceExec") && l.contains("wide")).unwrap_or_default();
        assert!(wide.contains("DynamicFilter"), "the constant key's filter reaches the wide scan:\n{shown}");
        let deferred = defer_filtered_starts(Arc::clone(&plan)).unwrap();
        let shown = displayable(deferred.as_ref()).indent(true).to_string();
        assert!(!shown.contains("DeferredStartExec"), "{shown}");
    }
}
