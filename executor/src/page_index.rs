//! Parquet scans keep the page indexes they read in the executor's metadata cache.
//!
//! DataFusion's Parquet opener asks for a file's footer without its page index (so the metadata
//! cache holds the footer alone), prunes row groups with the footer's statistics, and only then,
//! for a file whose surviving row groups a predicate may thin out further, reads the page index,
//! outside the cache: every query read and decoded each such file's page index again (TPC-DS q32's
//! two `catalog_sales` scans read 77 KB each, per query). Asking for the page index with the footer
//! instead would also read it for files whose row groups are all pruned, one more request per
//! pruned file on a cold cache. So a scan that may prune pages reads through [`PageIndexKeeper`]:
//! when the opener fetches exactly the page index of the footer it was just given, the keeper
//! decodes those bytes too and puts the footer with its page index back in the cache, where the
//! opener finds it next time and reads nothing. Only the entry DataFusion itself cached is
//! upgraded (same file, same size and modification time), and the cache's size limit still bounds
//! what it holds.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use datafusion::datasource::physical_plan::{FileScanConfig, FileScanConfigBuilder, FileSource, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::object_store::ObjectMeta;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::{AsyncFileReader, MetadataFetch};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;

/// `plan` with each Parquet scan that may prune pages reading through a [`PageIndexKeeper`] into
/// `cache` (the metadata cache the scan's own readers use).
pub fn keep_page_indexes(
    plan: Arc<dyn ExecutionPlan>,
    cache: &Arc<FileMetadataCache>,
) -> Result<Arc<dyn ExecutionPlan>> {
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
        let factory = Arc::new(KeepPageIndexes { inner: Arc::clone(inner), cache: Arc::clone(cache) });
        let source = source.clone().with_parquet_file_reader_factory(factory);
        let config = FileScanConfigBuilder::from(config.clone()).with_source(Arc::new(source)).build();
        Ok(Transformed::yes(Arc::new(DataSourceExec::new(Arc::new(config))) as Arc<dyn ExecutionPlan>))
    })
    .map(|done| done.data)
}

/// The readers of the factory it wraps, each in a [`PageIndexKeeper`].
#[derive(Debug)]
struct KeepPageIndexes {
    inner: Arc<dyn ParquetFileReaderFactory>,
    cache: Arc<FileMetadataCache>,
}

impl ParquetFileReaderFactory for KeepPageIndexes {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let file = partitioned_file.object_meta.clone();
        let inner = self.inner.create_reader(partition_index, partitioned_file, metadata_size_hint, metrics)?;
        Ok(Box::new(PageIndexKeeper { inner, file, cache: Arc::clone(&self.cache), footer: None }))
    }
}

/// A reader that, when the page index of the footer it returned is fetched through it, caches
/// that footer with its page index.
struct PageIndexKeeper {
    inner: Box<dyn AsyncFileReader + Send>,
    file: ObjectMeta,
    cache: Arc<FileMetadataCache>,
    /// The footer this reader returned, while it has no page index, and where its page index is.
    footer: Option<(Arc<ParquetMetaData>, Range<u64>)>,
}

/// Cache `footer` of `file` with the page index decoded from `bytes` (the file's `range`), in place
/// of the cache's entry for the file if that entry is still `footer` itself.
async fn keep(
    cache: &FileMetadataCache,
    file: &ObjectMeta,
    footer: Arc<ParquetMetaData>,
    range: Range<u64>,
    bytes: Bytes,
) {
    let Some(cached) = cache.get(&file.location).filter(|cached| cached.is_valid_for(file)) else {
        return;
    };
    let same = cached
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()
        .is_some_and(|cached| Arc::ptr_eq(cached.parquet_metadata(), &footer));
    if !same {
        return;
    }
    let mut reader =
        ParquetMetaDataReader::new_with_metadata((*footer).clone()).with_page_index_policy(PageIndexPolicy::Optional);
    let decoded = match reader.load_page_index(Fetched { range, bytes }).await.and_then(|()| reader.finish()) {
        Ok(decoded) => decoded,
        Err(error) => {
            // The opener decodes the same bytes and reports what is wrong with them.
            tracing::debug!(file = %file.location, %error, "page index not cached");
            return;
        }
    };
    let entry = CachedFileMetadataEntry::new(file.clone(), Arc::new(CachedParquetMetaData::new(Arc::new(decoded))));
    cache.put(&file.location, entry);
}

impl AsyncFileReader for PageIndexKeeper {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        async move {
            let bytes = self.inner.get_bytes(range.clone()).await?;
            if let Some((footer, _)) = self.footer.take_if(|(_, index)| *index == range) {
                keep(self.cache.as_ref(), &self.file, footer, range, bytes.clone()).await;
            }
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = self.inner.get_metadata(options).await?;
            let has_page_index = metadata.column_index().is_some() && metadata.offset_index().is_some();
            self.footer = if has_page_index {
                None
            } else {
                page_index_range(&metadata).map(|range| (Arc::clone(&metadata), range))
            };
            Ok(metadata)
        }
        .boxed()
    }
}

/// The bytes holding every column and offset index of the file `metadata` is the footer of: what
/// the Parquet reader fetches, in one request, to load a page index.
fn page_index_range(metadata: &ParquetMetaData) -> Option<Range<u64>> {
    let indexes = metadata.row_groups().iter().flat_map(|group| group.columns()).flat_map(|column| {
        [
            (column.column_index_offset(), column.column_index_length()),
            (column.offset_index_offset(), column.offset_index_length()),
        ]
    });
    indexes
        .filter_map(|(offset, length)| {
            let start = u64::try_from(offset?).ok()?;
            Some(start..start.checked_add(u64::try_from(length?).ok()?)?)
        })
        .reduce(|all, one| all.start.min(one.start)..all.end.max(one.end))
}

/// The one range a page index load asks for, already fetched.
struct Fetched {
    range: Range<u64>,
    bytes: Bytes,
}

impl MetadataFetch for Fetched {
    fn fetch(&mut self, range: Range<u64>) -> BoxFuture<'_, datafusion::parquet::errors::Result<Bytes>> {
        let bytes = if range == self.range {
            Ok(self.bytes.clone())
        } else {
            Err(ParquetError::General(format!("page index range {range:?}, fetched {:?}", self.range)))
        };
        futures::future::ready(bytes).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionContext};

    /// What the executor's metadata cache holds after `query` ran once on a fresh executor
    /// session, decoded as a task arrives, with or without the keeper.
    async fn page_index_cached(
        query: &str,
        rows: usize,
        keep: bool,
    ) -> Result<(usize, usize), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("t.parquet");
        let planner = SessionContext::new();
        // Two row groups: a in 1..=4 and 5..=8.
        let values = "SELECT column1 AS a, column2 AS b FROM (VALUES (1, 'p'), (2, 'q'), (3, 'r'), (4, 's'), \
                      (5, 't'), (6, 'u'), (7, 'v'), (8, 'w'))";
        let copy = format!("COPY ({values}) TO '{}' STORED AS PARQUET OPTIONS (max_row_group_size 4)", file.display());
        planner.sql(&copy).await?.collect().await?;
        planner.register_parquet("t", file.to_string_lossy().as_ref(), ParquetReadOptions::default()).await?;
        let plan = planner.sql(query).await?.create_physical_plan().await?;
        let encoded = glaux_proto::encode_plan(plan)?;

        let executor = SessionContext::new();
        let task = executor.task_ctx();
        let cache = executor.runtime_env().cache_manager.get_file_metadata_cache();
        let mut plan = glaux_proto::decode_plan(&encoded, &task)?;
        if keep {
            plan = keep_page_indexes(plan, &cache)?;
        }
        let found: usize = collect(plan, task).await?.iter().map(|batch| batch.num_rows()).sum();
        assert_eq!(found, rows, "{query}");
        // Files the cache holds metadata of, and of those, how many with their page index.
        let entries = cache.list_entries();
        let with_index = entries
            .values()
            .filter(|entry| entry.value.file_metadata.extra_info().get("page_index").is_some_and(|has| has == "true"));
        Ok((entries.len(), with_index.count()))
    }

    #[tokio::test]
    async fn scans_that_read_a_page_index_leave_it_in_the_cache() -> Result<(), Box<dyn std::error::Error>> {
        let prunes_pages = "SELECT b FROM t WHERE a > 2";
        assert_eq!(page_index_cached(prunes_pages, 6, true).await?, (1, 1));
        // What DataFusion's opener alone leaves there: the footer, so every query reads the page
        // index again.
        assert_eq!(page_index_cached(prunes_pages, 6, false).await?, (1, 0));
        // Statistics prune the file (or both its row groups) whole: no page index is read, none
        // is cached.
        assert_eq!(page_index_cached("SELECT b FROM t WHERE a > 100", 0, true).await?.1, 0);
        Ok(())
    }
}
