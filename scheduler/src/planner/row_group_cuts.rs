//! Moving the cuts DataFusion makes inside Parquet files onto row-group boundaries.
//!
//! DataFusion spreads a scan over `target_partitions` by cutting its files, in order, into byte
//! ranges of equal size. A Parquet range reads the row groups whose first page starts inside it,
//! so a cut a few bytes into a file gives that file's first row group, whole, to the partition
//! before the cut. With TPC-H's `lineitem` at SF 1 (four files of two row groups) over two
//! partitions, the first cut lands 34 KB into the third file: one partition reads five row groups,
//! the other three, and the query waits for the larger. Moving each cut to the row-group start
//! nearest to it makes that four and four.
//!
//! A partition left with no row group to read is dropped from the scan of a distributed plan (a
//! small dimension table of one row group, cut in two by DataFusion, is one partition, so one
//! task). A small query's plan, which runs whole as one task, keeps it as DataFusion does: an
//! operator above a scan of two partitions starts both when it starts (a `CoalescePartitionsExec`
//! spawns each), so both sides of a cross join run at once; with one partition they run one
//! after the other (TPC-DS q90: 1.4x -> 2.0x of DataFusion when it was dropped).
//!
//! DataFusion's cuts are contiguous, so a scan has at most `partitions - 1` cut files: only their
//! footers are read, through the scheduler's file-metadata cache (the footers of unpartitioned
//! tables are already there, read for their statistics). A footer that cannot be read leaves
//! DataFusion's cut as it was; the executor reading the file reports what is wrong with it.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::SessionState;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::object_store::ObjectMeta;
use datafusion::object_store::path::Path;
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::physical_plan::ExecutionPlan;

/// `plan` with every cut inside a Parquet file moved to the nearest row-group start; where
/// `drop_empty`, without the partitions left with nothing to read.
pub async fn cut_at_row_groups(
    plan: Arc<dyn ExecutionPlan>,
    state: &SessionState,
    drop_empty: bool,
) -> Result<Arc<dyn ExecutionPlan>> {
    // By location: a table read twice (a self-join) has its footers read once.
    let mut cut_files: HashMap<Path, (ObjectStoreUrl, ObjectMeta)> = HashMap::new();
    plan.apply(|node| {
        if let Some(config) = parquet_scan(node.as_ref()) {
            for meta in cut_files_of(config) {
                cut_files.insert(meta.location.clone(), (config.object_store_url.clone(), meta));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if cut_files.is_empty() {
        return Ok(plan);
    }
    let starts = row_group_starts(&cut_files, state).await;
    if starts.is_empty() {
        return Ok(plan);
    }
    plan.transform_up(|node| {
        let Some(config) = parquet_scan(node.as_ref()) else { return Ok(Transformed::no(node)) };
        match recut(config, &starts, drop_empty) {
            Some(groups) => {
                let config = FileScanConfigBuilder::from(config.clone()).with_file_groups(groups).build();
                Ok(Transformed::yes(Arc::new(DataSourceExec::new(Arc::new(config))) as Arc<dyn ExecutionPlan>))
            }
            None => Ok(Transformed::no(node)),
        }
    })
    .map(|t| t.data)
}

fn parquet_scan(node: &dyn ExecutionPlan) -> Option<&FileScanConfig> {
    let config = node.downcast_ref::<DataSourceExec>()?.data_source().downcast_ref::<FileScanConfig>()?;
    (config.file_source().file_type() == "parquet").then_some(config)
}

/// Files of the scan that appear in more than one piece.
fn cut_files_of(config: &FileScanConfig) -> Vec<ObjectMeta> {
    let mut pieces: HashMap<&Path, (usize, &ObjectMeta)> = HashMap::new();
    for file in config.file_groups.iter().flat_map(|g| g.files()) {
        pieces.entry(&file.object_meta.location).or_insert((0, &file.object_meta)).0 += 1;
    }
    pieces.into_values().filter(|(count, _)| *count > 1).map(|(_, meta)| meta.clone()).collect()
}

/// Where each row group of each file starts (the offset DataFusion tests against a range: its
/// first column's dictionary page, else its first data page), ascending.
async fn row_group_starts(
    files: &HashMap<Path, (ObjectStoreUrl, ObjectMeta)>,
    state: &SessionState,
) -> HashMap<Path, Vec<u64>> {
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let reads = files.values().map(|(url, meta)| {
        let cache = Arc::clone(&cache);
        async move {
            let store = state.runtime_env().object_store(url)?;
            let metadata = DFParquetMetadata::new(store.as_ref(), meta)
                .with_file_metadata_cache(Some(cache))
                .with_page_index_policy(Some(PageIndexPolicy::Skip))
                .fetch_metadata()
                .await?;
            let mut starts: Vec<u64> = metadata
                .row_groups()
                .iter()
                .filter(|group| group.num_columns() > 0)
                .map(|group| {
                    let column = group.column(0);
                    column.dictionary_page_offset().unwrap_or_else(|| column.data_page_offset()).max(0) as u64
                })
                .collect();
            starts.sort_unstable();
            Result::<_>::Ok((meta.location.clone(), starts))
        }
    });
    let mut starts = HashMap::new();
    for read in futures::future::join_all(reads).await {
        match read {
            Ok((location, offsets)) => {
                starts.insert(location, offsets);
            }
            Err(e) => tracing::debug!(error = %e, "a cut file's footer could not be read; its cut stays"),
        }
    }
    starts
}

/// The scan's file groups with each cut in a file of `starts` moved to the row-group start
/// nearest to it, and without the groups left with nothing to read where `drop_empty`; `None`
/// if nothing moved.
fn recut(config: &FileScanConfig, starts: &HashMap<Path, Vec<u64>>, drop_empty: bool) -> Option<Vec<FileGroup>> {
    let mut groups: Vec<Vec<Option<PartitionedFile>>> =
        config.file_groups.iter().map(|g| g.files().iter().cloned().map(Some).collect()).collect();
    let mut pieces_of: HashMap<Path, Vec<(usize, usize)>> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        for (i, file) in group.iter().flatten().enumerate() {
            if starts.contains_key(&file.object_meta.location) {
                pieces_of.entry(file.object_meta.location.clone()).or_default().push((g, i));
            }
        }
    }
    let mut moved = false;
    for (location, mut pieces) in pieces_of {
        if pieces.len() < 2 {
            continue;
        }
        let range = |&(g, i): &(usize, usize)| groups[g][i].as_ref().map(PartitionedFile::range).unwrap_or_default();
        pieces.sort_by_key(|piece| range(piece).0);
        let ranges: Vec<(u64, u64)> = pieces.iter().map(range).collect();
        let Some(new_ranges) = snap(&ranges, &starts[&location]) else { continue };
        for (&(g, i), (start, end)) in pieces.iter().zip(new_ranges) {
            let slot = &mut groups[g][i];
            let reads_something = starts[&location].iter().any(|&s| start <= s && s < end);
            let file = slot.as_mut().expect("each piece is visited once");
            if !reads_something && drop_empty {
                *slot = None;
            } else if file.range() != (start, end) {
                file.range = Some(datafusion::datasource::listing::FileRange { start: start as i64, end: end as i64 });
            }
        }
        moved = true;
    }
    if !moved {
        return None;
    }
    let groups: Vec<FileGroup> =
        groups.into_iter().map(|g| FileGroup::new(g.into_iter().flatten().collect())).collect();
    // A group left with nothing to read goes: its partition would read nothing, yet as part of
    // an executor stage it would still be a task to launch and a stream to read. Nothing above a
    // scan needs its partition count (operators that need inputs partitioned alike require hash
    // partitioning, which a scan does not have).
    let reading: Vec<FileGroup> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    Some(if reading.is_empty() || !drop_empty { groups } else { reading })
}

/// Ranges that tile the same bytes as `ranges` (which tile a file contiguously, in order), with
/// each inner boundary moved to the nearest of `starts` or to the end. `None` if `ranges` do
/// not tile contiguously or nothing would move.
fn snap(ranges: &[(u64, u64)], starts: &[u64]) -> Option<Vec<(u64, u64)>> {
    if ranges.windows(2).any(|w| w[0].1 != w[1].0) {
        return None;
    }
    let (first, last) = (ranges.first()?.0, ranges.last()?.1);
    let candidates: Vec<u64> =
        starts.iter().copied().filter(|&s| first <= s && s < last).chain(std::iter::once(last)).collect();
    let mut boundaries = Vec::with_capacity(ranges.len() + 1);
    boundaries.push(first);
    for &(_, end) in &ranges[..ranges.len() - 1] {
        let nearest = candidates.iter().copied().min_by_key(|&c| (c.abs_diff(end), c)).unwrap_or(end);
        boundaries.push(nearest.max(*boundaries.last().expect("starts with first")));
    }
    boundaries.push(last);
    let snapped: Vec<(u64, u64)> = boundaries.windows(2).map(|w| (w[0], w[1])).collect();
    (snapped != ranges).then_some(snapped)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::physical_plan::FileScanConfig;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::physical_plan::ExecutionPlanProperties;

    use super::{cut_at_row_groups, snap};

    /// A file of one row group that DataFusion cut in two is read by one partition, and the
    /// other partition, which would read nothing, is gone, unless the plan keeps it (a small
    /// query's).
    #[tokio::test]
    async fn a_partition_left_with_nothing_to_read_is_dropped() -> Result<(), Box<dyn std::error::Error>> {
        let (_dir, ctx) = crate::planner::one_file_table("SELECT v AS a FROM range(20000) t(v)").await?;
        let plan = ctx.sql("SELECT a FROM t WHERE a % 3 = 0").await?.create_physical_plan().await?;
        assert_eq!(plan.output_partitioning().partition_count(), 2, "DataFusion cuts the file in two");
        let kept = cut_at_row_groups(Arc::clone(&plan), &ctx.state(), false).await?;
        assert_eq!(kept.output_partitioning().partition_count(), 2);
        let batches = datafusion::physical_plan::collect(kept, ctx.task_ctx()).await?;
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6667);
        let cut = cut_at_row_groups(plan, &ctx.state(), true).await?;
        assert_eq!(cut.output_partitioning().partition_count(), 1);
        let mut scans = 0;
        cut.apply(|node| {
            if let Some(config) = node
                .downcast_ref::<DataSourceExec>()
                .and_then(|source| source.data_source().downcast_ref::<FileScanConfig>())
            {
                scans += 1;
                assert_eq!(config.file_groups.len(), 1);
                assert_eq!(config.file_groups[0].files().len(), 1);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        assert_eq!(scans, 1);
        let batches = datafusion::physical_plan::collect(cut, ctx.task_ctx()).await?;
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6667);
        Ok(())
    }

    #[test]
    fn a_cut_moves_to_the_nearest_row_group_start() {
        // TPC-H lineitem's third file at SF 1: cut 34 KB in, row groups at 4 and 26 MB.
        let file = 52_469_182;
        assert_eq!(snap(&[(0, 34_000), (34_000, file)], &[4, 26_000_000]), Some(vec![(0, 4), (4, file)]));
        // Cut past the middle of the second row group: the end is nearer than any start.
        assert_eq!(snap(&[(0, 50_000_000), (50_000_000, file)], &[4, 26_000_000]), Some(vec![(0, file), (file, file)]));
        // Already on a boundary: nothing moves.
        assert_eq!(snap(&[(0, 26_000_000), (26_000_000, file)], &[4, 26_000_000]), None);
        // Two cuts that snap to the same start keep the tiling: the middle piece becomes empty.
        assert_eq!(
            snap(&[(0, 100), (100, 200), (200, 1000)], &[4, 150, 600]),
            Some(vec![(0, 150), (150, 150), (150, 1000)])
        );
        // A piece of a range that does not tile contiguously is left alone.
        assert_eq!(snap(&[(0, 100), (150, 1000)], &[4, 120]), None);
    }
}
