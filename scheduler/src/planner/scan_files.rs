//! The file scans of a plan subtree: where it reads storage, and how much.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_plan::ExecutionPlan;

/// The file scans of a subtree: `Some` with each scan's config if there is at least one.
pub(super) fn scan_files(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<FileScanConfig>> {
    let mut scans = Vec::new();
    for_each_scan(plan, |config| scans.push(config.clone()));
    (!scans.is_empty()).then_some(scans)
}

/// Calls `f` with the config of each file scan in the subtree.
fn for_each_scan(plan: &Arc<dyn ExecutionPlan>, mut f: impl FnMut(&FileScanConfig)) {
    // The closure never fails, so neither does the traversal.
    let _ = plan.apply(|node| {
        if let Some(source) = node.downcast_ref::<DataSourceExec>()
            && let Some(config) = source.data_source().downcast_ref::<FileScanConfig>()
        {
            f(config);
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

/// What the subtree's file scans are expected to produce, in bytes: per scan, the Arrow size of
/// the columns it reads from its files' statistics (Parquet footers: a fixed-width column's width
/// times its rows, another column's uncompressed size), or the bytes of its files (or byte
/// ranges) where the scan has no row count (CSV, JSON, partitioned tables, whose footers are not
/// read while planning). `None` if the subtree reads no files.
pub fn estimated_scan_bytes(plan: &Arc<dyn ExecutionPlan>) -> Option<u64> {
    let mut total = None;
    for_each_scan(plan, |config| *total.get_or_insert(0u64) += scan_output_bytes(config));
    total
}

fn scan_output_bytes(config: &FileScanConfig) -> u64 {
    // The table's statistics (unprojected), from the files' footers where they were read.
    let statistics = config.statistics();
    let Some(rows) = statistics.num_rows.get_value().copied() else {
        return config.file_groups.iter().flat_map(|group| group.files()).map(file_bytes).sum();
    };
    read_columns(config)
        .into_iter()
        .filter_map(|index| statistics.column_statistics.get(index))
        // A column without a size (a partition value) is taken as 8 bytes a row.
        .map(|column| column.byte_size.get_value().copied().unwrap_or(rows.saturating_mul(8)) as u64)
        .sum()
}

/// The table columns a scan reads: those it produces and those its pushed-down filter reads
/// (`count(*) ... WHERE x > 0` produces no column but reads `x`).
fn read_columns(config: &FileScanConfig) -> BTreeSet<usize> {
    let source = config.file_source();
    let mut columns: BTreeSet<usize> = match source.projection() {
        Some(projection) => projection.column_indices().into_iter().collect(),
        None => (0..source.table_schema().table_schema().fields().len()).collect(),
    };
    if let Some(filter) = source.filter() {
        columns.extend(collect_columns(&filter).iter().map(|column| column.index()));
    }
    columns
}

/// The bytes of a file, or of the range of it a scan reads.
pub(super) fn file_bytes(file: &datafusion::datasource::listing::PartitionedFile) -> u64 {
    match &file.range {
        Some(range) => (range.end - range.start).max(0) as u64,
        None => file.object_meta.size,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    use super::estimated_scan_bytes;

    async fn estimate(ctx: &SessionContext, sql: &str) -> datafusion::common::Result<Option<u64>> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        Ok(estimated_scan_bytes(&plan))
    }

    /// A Parquet scan is sized by the columns it reads, from the footer's statistics; a CSV scan
    /// by its file.
    #[tokio::test]
    async fn scans_are_sized_by_the_columns_they_read() -> datafusion::common::Result<()> {
        let dir = tempfile::tempdir()?;
        // As Glaux's sessions: filters are pushed into the Parquet reader, out of the projection.
        let mut config = datafusion::prelude::SessionConfig::new();
        config.options_mut().execution.parquet.pushdown_filters = true;
        let ctx = SessionContext::new_with_config(config);
        let rows = concat!(
            "SELECT CAST(v AS INT) AS a, CAST(v AS BIGINT) AS b, repeat(md5(CAST(v AS VARCHAR)), 3) AS c ",
            "FROM range(10000) t(v)"
        );
        let (parquet, csv) = (dir.path().join("t.parquet"), dir.path().join("t.csv"));
        ctx.sql(&format!("COPY ({rows}) TO '{}' STORED AS PARQUET", parquet.display())).await?.collect().await?;
        ctx.sql(&format!("COPY ({rows}) TO '{}' STORED AS CSV", csv.display())).await?.collect().await?;
        ctx.register_parquet("t", parquet.to_str().unwrap_or_default(), ParquetReadOptions::default()).await?;
        ctx.register_csv("c", csv.to_str().unwrap_or_default(), Default::default()).await?;
        // Fixed-width columns: their width times the rows, whatever the file's encoding.
        assert_eq!(estimate(&ctx, "SELECT a FROM t").await?, Some(40_000));
        assert_eq!(estimate(&ctx, "SELECT a, b FROM t").await?, Some(120_000));
        // A filter's columns are read even where the scan produces none of them.
        assert_eq!(estimate(&ctx, "SELECT count(*) FROM t WHERE b % 2 = 0").await?, Some(80_000));
        assert_eq!(estimate(&ctx, "SELECT a FROM t WHERE b > 5").await?, Some(120_000));
        // Read twice (a self-join), counted twice.
        assert_eq!(estimate(&ctx, "SELECT x.a FROM t x JOIN t y ON x.a = y.a").await?, Some(80_000));
        // A string column: its uncompressed size in the file (96 bytes a row, and their lengths).
        let with_strings = estimate(&ctx, "SELECT a, c FROM t").await?.unwrap_or_default();
        assert!((900_000..1_500_000).contains(&with_strings), "{with_strings}");
        // No statistics: the file's bytes.
        let file = std::fs::metadata(&csv)?.len();
        assert_eq!(estimate(&ctx, "SELECT a FROM c").await?, Some(file));
        assert_eq!(estimate(&ctx, "SELECT 1").await?, None);
        Ok(())
    }
}
