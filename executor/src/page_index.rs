//! Parquet scans keep their files' page indexes in the executor's metadata cache.
//!
//! DataFusion's Parquet opener asks for a file's footer without its page index (the metadata
//! cache then holds the footer alone), and reads the page index on its own when it prunes pages,
//! outside the cache: every query read and decoded each file's page index again (TPC-DS q32's two
//! `catalog_sales` scans read 77 KB each, per query, that single-process DataFusion, whose
//! statistics had put whole metadata in its cache, did not). A scan that may prune pages (page
//! index on, a predicate) here asks for the page index with the footer: the cache keeps both, and
//! the opener finds it there. What the cache holds stays bounded by its size limit.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;

/// `plan` with each Parquet scan that may prune pages reading through [`WithPageIndex`].
pub fn keep_page_indexes(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(config) =
            node.downcast_ref::<DataSourceExec>().and_then(|scan| scan.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(Transformed::no(node));
        };
        let Some(source) = config.file_source().downcast_ref::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        let prunes_pages = source.filter().is_some() && source.table_parquet_options().global.enable_page_index;
        let Some(inner) = source.parquet_file_reader_factory().filter(|_| prunes_pages) else {
            return Ok(Transformed::no(node));
        };
        let factory = Arc::new(WithPageIndex(Arc::clone(inner)));
        let source = source.clone().with_parquet_file_reader_factory(factory);
        let config = FileScanConfigBuilder::from(config.clone()).with_source(Arc::new(source)).build();
        Ok(Transformed::yes(Arc::new(DataSourceExec::new(Arc::new(config))) as Arc<dyn ExecutionPlan>))
    })
    .map(|done| done.data)
}

/// Readers of the factory it wraps that ask for the page index with every footer.
#[derive(Debug)]
struct WithPageIndex(Arc<dyn ParquetFileReaderFactory>);

impl ParquetFileReaderFactory for WithPageIndex {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let reader = self.0.create_reader(partition_index, partitioned_file, metadata_size_hint, metrics)?;
        Ok(Box::new(PageIndexReader(reader)))
    }
}

struct PageIndexReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for PageIndexReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        // `Optional`: a file written without a page index still opens.
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    /// Whether the executor's metadata cache holds each file's page index, after a scan that
    /// prunes pages ran once on a fresh executor session (through the codec, as a task arrives).
    async fn page_index_cached(keep: bool) -> Result<bool, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("t.parquet");
        let planner = SessionContext::new();
        let values = "SELECT column1 AS a, column2 AS b FROM (VALUES (1, 'x'), (2, 'y'), (3, 'z'))";
        planner.sql(&format!("COPY ({values}) TO '{}' STORED AS PARQUET", file.display())).await?.collect().await?;
        planner.register_parquet("t", file.to_string_lossy().as_ref(), ParquetReadOptions::default()).await?;
        let plan = planner.sql("SELECT b FROM t WHERE a > 1").await?.create_physical_plan().await?;
        let encoded = glaux_proto::encode_plan(plan)?;

        let executor = SessionContext::new();
        let task = executor.task_ctx();
        let mut plan = glaux_proto::decode_plan(&encoded, &task)?;
        if keep {
            plan = keep_page_indexes(plan)?;
        }
        let rows: usize = collect(plan, task).await?.iter().map(|batch| batch.num_rows()).sum();
        assert_eq!(rows, 2);
        let entries = executor.runtime_env().cache_manager.get_file_metadata_cache().list_entries();
        assert_eq!(entries.len(), 1, "the scan's one file is cached");
        Ok(entries
            .values()
            .all(|entry| entry.value.file_metadata.extra_info().get("page_index").is_some_and(|has| has == "true")))
    }

    #[tokio::test]
    async fn pruning_scans_leave_their_page_index_in_the_cache() -> Result<(), Box<dyn std::error::Error>> {
        assert!(page_index_cached(true).await?);
        // What DataFusion's opener alone leaves there: the footer, so every query reads the
        // page index again.
        assert!(!page_index_cached(false).await?);
        Ok(())
    }
}
