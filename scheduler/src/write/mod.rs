//! Publishing what a write's tasks staged.
//!
//! A statement that writes (`CREATE TABLE AS`, ...) runs its query with a `TableWriteExec` on top
//! (`query/run.rs`): each partition writes files into a directory of its own under the
//! statement's staging location, `<table location>_glaux_staging/<query id>/`, and reports that
//! directory. Names starting with `_` are side files to every reader (Hive's, Athena's, Glaux's), and
//! no table is registered over its files yet, so nothing staged is visible.
//!
//! [`StagedWrite::publish`] then renames each reported file to its place in the table
//! (`<location>[k=v/...]/<query id>_<file name>`: unique per statement and task attempt), and
//! [`StagedWrite::discard`] removes the staging location, and on failure every file it had moved.
//! Directories no partition reported (an attempt run again) are never published.
//!
//! A write that replaces files (`OPTIMIZE`) names them first ([`StagedWrite::replacing`]): its
//! commit hides them in the same step that shows the new files, and they are deleted once the
//! queries planned before the commit have ended (`cleanup.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{StreamExt, TryStreamExt, stream};
use glaux_catalog::{Catalog, Partition, PendingWrite};
use glaux_proto::{QueryId, TableWriteExec, WriteCompression, WriteFormat, WriteSpec};
use glaux_storage::{ListingCache, Visibility};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryRunner, QueryStatsHandle};

mod cleanup;
mod logged;

pub(crate) use cleanup::{hide_unfinished, recover};
use cleanup::{remove, remove_failed, retire, sweep_failed};

/// The column a bucketed write's rows carry their bucket in (`statement/bucketing.rs`): written
/// as the first partition directory, published as the start of the file's name.
pub(crate) const BUCKET_COLUMN: &str = "__bucket";

/// The column a write's rows are shuffled by before its writers: its bucket, if bucketed.
pub(crate) fn bucket_column(spec: &WriteSpec) -> Option<&str> {
    spec.partition_columns.first().map(String::as_str).filter(|c| *c == BUCKET_COLUMN)
}

/// The directory under a table's location where statements stage their files.
pub(crate) const STAGING_DIR: &str = "_glaux_staging";

/// The size written files aim at (`SchedulerConfig::target_file_size`), in the session's config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TargetFileSize(pub u64);

/// The target for a write planned in `state`.
fn target_file_bytes(state: &SessionState) -> u64 {
    state.config().get_extension::<TargetFileSize>().map_or(0, |t| t.0)
}

/// How many objects are renamed or deleted at once.
const CONCURRENCY: usize = 16;

/// What a write published.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    /// Each partition that received files, once: its values (in partition-column order) and
    /// its directory under the location (`k=v/...`, as written in paths).
    pub partitions: Vec<(Vec<String>, String)>,
    /// Each file where it now is, with its size and partition values.
    pub placed: Vec<glaux_catalog::NewFile>,
}

/// One statement's staged files under a location.
pub(crate) struct StagedWrite {
    store: Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    /// What the scheduler's listings show: moved files stay hidden until the write commits.
    visibility: Option<Arc<Visibility>>,
    /// Partitions the table has already, by values: their files go to their own location.
    registered: HashMap<Vec<String>, ListingTableUrl>,
    location: ListingTableUrl,
    staging: ListingTableUrl,
    query: QueryId,
    partition_columns: Vec<String>,
    /// Whether its rows carry their bucket before the partition columns.
    bucketed: bool,
    /// Files moved into the location so far (removed again if the write fails).
    moved: Vec<Path>,
    /// The table's files it replaces, and once it committed, the epoch whose queries may read them.
    retired: Vec<Path>,
    committed: Option<u64>,
    /// Discarded (or published and cleaned): nothing is left to remove when it is dropped.
    done: bool,
}

impl StagedWrite {
    /// A write of `query` under `location` (a URL ending in `/`).
    ///
    /// It is recorded in the catalog's journal of writes first: if the scheduler dies before it
    /// ends, the next start removes what it staged or moved ([`recover`]).
    pub fn begin(
        state: &SessionState,
        catalog: &Arc<dyn Catalog>,
        location: &str,
        query: &QueryId,
        partition_columns: Vec<String>,
    ) -> Result<Self, SchedulerError> {
        let location = ListingTableUrl::parse(location).map_err(SchedulerError::plan)?;
        let staging = ListingTableUrl::parse(format!("{}{STAGING_DIR}/{query}/", location.as_str()))
            .map_err(SchedulerError::plan)?;
        let store = state.runtime_env().object_store(location.object_store()).map_err(SchedulerError::plan)?;
        let record =
            PendingWrite { id: query.to_string(), staging: staging.as_str().to_string(), ..Default::default() };
        let visibility = state.config().get_extension::<ListingCache>().map(|c| Arc::clone(c.visibility()));
        catalog.begin_write(&record)?;
        Ok(Self {
            store,
            catalog: Arc::clone(catalog),
            visibility,
            registered: HashMap::new(),
            location,
            staging,
            query: query.clone(),
            partition_columns,
            bucketed: false,
            moved: Vec::new(),
            retired: Vec::new(),
            committed: None,
            done: false,
        })
    }

    /// Its rows carry their bucket ([`BUCKET_COLUMN`]) before the partition columns: each
    /// writer's file of a bucket is named after it.
    pub fn bucketed(mut self, bucketed: bool) -> Self {
        self.bucketed = bucketed;
        self
    }

    /// What the tasks write, where: the location's format and codec, its partition columns
    /// (after the bucket, if bucketed), files sized toward the target (one per bucket, if
    /// bucketed).
    fn spec(&self, state: &SessionState, (format, compression): (WriteFormat, WriteCompression)) -> WriteSpec {
        let bucket = self.bucketed.then(|| BUCKET_COLUMN.to_string());
        WriteSpec {
            staging: self.staging_url(),
            format,
            compression,
            partition_columns: bucket.into_iter().chain(self.partition_columns.iter().cloned()).collect(),
            target_file_bytes: if self.bucketed { 0 } else { target_file_bytes(state) },
        }
    }

    /// The write replaces `files` (in its location's store): they disappear for readers when it
    /// commits. Refused if another write is replacing any of them.
    pub fn replacing(mut self, files: Vec<Path>) -> Result<Self, SchedulerError> {
        if let Some(visibility) = &self.visibility {
            let urls: Vec<String> = files.iter().map(|f| self.object_url(f)).collect();
            if let Err(taken) = visibility.claim(&self.id(), &urls) {
                return Err(SchedulerError::refused(
                    ErrorKind::Unsupported,
                    format!("another statement is rewriting {taken}; try again when it has finished"),
                ));
            }
        }
        self.retired = files;
        Ok(self)
    }

    /// `path`'s object URL in the location's store.
    fn object_url(&self, path: &Path) -> String {
        format!("{}{path}", self.location.object_store().as_str())
    }

    /// Files of partitions the table has already (`(values, location)`) go to their location.
    pub fn with_registered_partitions(mut self, partitions: &[Partition]) -> Result<Self, SchedulerError> {
        for partition in partitions {
            let url = ListingTableUrl::parse(&partition.location).map_err(SchedulerError::plan)?;
            self.registered.insert(partition.values.clone(), url);
        }
        Ok(self)
    }

    /// Its id in the catalog's journal of writes.
    pub fn id(&self) -> String {
        self.query.to_string()
    }

    /// Where the tasks write: a URL ending in `/`.
    pub fn staging_url(&self) -> String {
        self.staging.as_str().to_string()
    }

    /// Whether anything but staged files lies under the location.
    pub async fn location_is_empty(&self) -> Result<bool, SchedulerError> {
        let mut listed = self.store.list(Some(self.location.prefix()));
        while let Some(meta) = listed.next().await {
            match meta {
                Ok(meta) if !is_staged(&meta.location, self.location.prefix()) => return Ok(false),
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => return Ok(true),
                Err(e) => return Err(storage_error(e)),
            }
        }
        Ok(true)
    }

    /// Refuses the write (and removes its journal record) unless the location holds nothing but
    /// staged files: Athena's rule for a new table's and an UNLOAD's location.
    pub async fn require_empty_location(&mut self, statement: &str) -> Result<(), SchedulerError> {
        if self.location_is_empty().await? {
            return Ok(());
        }
        self.discard().await;
        Err(SchedulerError::refused(
            ErrorKind::Unsupported,
            format!("the location {} is not empty: {statement} writes only into an empty location", self.location),
        ))
    }

    /// Moves the files of the directories the write's partitions reported (`reports`, as
    /// `TableWriteExec` returns them) into the location.
    pub async fn publish(&mut self, reports: &[RecordBatch]) -> Result<Published, SchedulerError> {
        let mut published = Published::default();
        let mut directories = Vec::new();
        for batch in reports {
            let (Some(names), Some(rows)) =
                (batch.column(0).as_string_opt::<i32>(), batch.column(1).as_primitive_opt::<UInt64Type>())
            else {
                return Err(SchedulerError::Internal("a write's report has the wrong columns".into()));
            };
            for (name, rows) in names.iter().zip(rows.iter()) {
                directories.push(name.unwrap_or_default().to_string());
                published.rows += rows.unwrap_or_default();
            }
        }
        let mut moves = Vec::new();
        for directory in directories {
            let url = ListingTableUrl::parse(&directory).map_err(SchedulerError::plan)?;
            // Reports come from executors: only directories under this statement's staging
            // location are published.
            if url.object_store() != self.staging.object_store()
                || url.prefix().prefix_match(self.staging.prefix()).is_none()
            {
                return Err(SchedulerError::Internal(format!(
                    "a write reported {directory}, outside its staging location"
                )));
            }
            let files: Vec<_> = self.store.list(Some(url.prefix())).try_collect().await.map_err(storage_error)?;
            for file in files {
                let Some(relative) = file.location.prefix_match(url.prefix()) else { continue };
                let parts: Vec<String> = relative.map(|p| p.as_ref().to_string()).collect();
                let Some((name, mut directories)) = parts.split_last() else { continue };
                // A bucket's file is named after it, as Hive names it (`000005_0`).
                let mut name = format!("{}_{name}", self.query.short());
                if self.bucketed {
                    let bucket = directories.first().map(|d| percent_decoded(d));
                    let bucket = bucket.as_deref().and_then(|d| d.strip_prefix(BUCKET_COLUMN)?.strip_prefix('='));
                    let Some(bucket) = bucket.and_then(|b| b.parse::<u32>().ok()) else {
                        return Err(SchedulerError::Internal(format!(
                            "a bucketed file at {} has no bucket",
                            file.location
                        )));
                    };
                    name = format!("{bucket:06}_0_{name}");
                    directories = &directories[1..];
                }
                let values = self.partition_values(directories, &file.location)?;
                let target = match self.registered.get(&values) {
                    Some(partition) if partition.object_store() != self.location.object_store() => {
                        return Err(SchedulerError::refused(
                            ErrorKind::Unsupported,
                            format!("partition at {partition} is in another store than the table's location"),
                        ));
                    }
                    Some(partition) => partition.prefix().clone(),
                    None => {
                        if !values.is_empty() && !published.partitions.iter().any(|(v, _)| v == &values) {
                            published.partitions.push((values.clone(), directories.join("/")));
                        }
                        directories.iter().fold(self.location.prefix().clone(), |path, d| path.join(d.as_str()))
                    }
                };
                let target = target.join(name);
                published.files += 1;
                published.bytes += file.size;
                published.placed.push(glaux_catalog::NewFile { path: target.clone(), size: file.size, values });
                moves.push((file.location, target));
            }
        }
        // Journaled before any file moves: a crash from here until the table is stored leaves
        // files the next start removes.
        let targets: Vec<String> = moves.iter().map(|(_, to)| self.object_url(to)).collect();
        let retired: Vec<String> = self.retired.iter().map(|f| self.object_url(f)).collect();
        self.catalog.record_write_targets(&self.id(), &targets, &retired)?;
        if let Some(visibility) = &self.visibility {
            visibility.hide(&self.id(), targets);
        }
        let store = Arc::clone(&self.store);
        let mut renames = stream::iter(moves)
            .map(|(from, to)| {
                let store = Arc::clone(&store);
                async move { store.rename(&from, &to).await.map(|()| to) }
            })
            .buffer_unordered(CONCURRENCY);
        let mut failed = None;
        while let Some(renamed) = renames.next().await {
            match renamed {
                Ok(to) => self.moved.push(to),
                Err(e) => failed = failed.or(Some(storage_error(e))),
            }
        }
        match failed {
            Some(error) => Err(error),
            None => Ok(published),
        }
    }

    /// Publishes what `reports` name and commits with `register` (given the new partitions);
    /// the rows written.
    async fn publish_and_commit(
        &mut self,
        reports: &[RecordBatch],
        register: impl FnOnce(&[Partition]) -> Result<(), SchedulerError>,
    ) -> Result<u64, SchedulerError> {
        let published = self.publish(reports).await?;
        let location = self.location.as_str().to_string();
        let partitions: Vec<Partition> = published
            .partitions
            .iter()
            .map(|(values, directory)| Partition {
                values: values.clone(),
                location: format!("{location}{directory}/"),
            })
            .collect();
        self.commit(|| register(&partitions)).await?;
        Ok(published.rows)
    }

    /// Makes the published files visible: `register` (storing the table or its new partitions,
    /// which marks the files as the table's in the journal) runs while no query plans, and the
    /// files are shown (and the files it replaces hidden) at once after it.
    pub async fn commit(
        &mut self,
        register: impl FnOnce() -> Result<(), SchedulerError>,
    ) -> Result<(), SchedulerError> {
        let Some(visibility) = self.visibility.clone() else {
            register()?;
            self.committed = Some(0);
            return Ok(());
        };
        let _committing = visibility.committing().await;
        register()?;
        visibility.reveal(&self.id());
        let retired: Vec<String> = self.retired.iter().map(|f| self.object_url(f)).collect();
        // Epoch 0 has no queries before it: a write that replaces nothing waits for none.
        self.committed = Some(if retired.is_empty() { 0 } else { visibility.retire(&self.id(), retired) });
        Ok(())
    }

    /// Runs `plan` with its rows written into this write's staging location in `format`,
    /// publishes the files, and commits with `register` (given the new partitions, it stores
    /// what the catalog must know; it marks the files published in the journal). The write is
    /// discarded either way. Returns the rows written and the query's statistics.
    pub async fn run(
        mut self,
        queries: &QueryRunner,
        state: &SessionState,
        plan: &LogicalPlan,
        format: (WriteFormat, WriteCompression),
        progress: &ProgressSlot,
        register: impl FnOnce(&[Partition]) -> Result<(), SchedulerError>,
    ) -> Result<(u64, QueryStatsHandle), SchedulerError> {
        let written = async {
            let (reports, stats) = self.reports(queries, state, plan, format, progress).await?;
            Ok((self.publish_and_commit(&reports, register).await?, stats))
        }
        .await;
        self.discard().await;
        written
    }

    /// Runs `plan` with its rows written into the staging location: the writers' reports.
    async fn reports(
        &self,
        queries: &QueryRunner,
        state: &SessionState,
        plan: &LogicalPlan,
        format: (WriteFormat, WriteCompression),
        progress: &ProgressSlot,
    ) -> Result<(Vec<RecordBatch>, QueryStatsHandle), SchedulerError> {
        let spec = self.spec(state, format);
        let result = queries.run_write(state, self.query.clone(), plan, &spec, progress).await?;
        let failed = result.query.clone();
        let reports =
            result.batches.try_collect().await.map_err(|source| SchedulerError::Execute { query: failed, source })?;
        Ok((reports, result.stats))
    }

    /// Writes `rows` (one stream, from a client) here, on the scheduler, then publishes and
    /// commits as [`Self::run`] does.
    pub async fn run_local(
        mut self,
        state: &SessionState,
        rows: SendableRecordBatchStream,
        format: (WriteFormat, WriteCompression),
        register: impl FnOnce(&[Partition]) -> Result<(), SchedulerError>,
    ) -> Result<u64, SchedulerError> {
        let spec = self.spec(state, format);
        let written = async {
            let source = OneStream { schema: rows.schema(), rows: std::sync::Mutex::new(Some(rows)) };
            let source =
                StreamingTableExec::try_new(source.schema.clone(), vec![Arc::new(source)], None, [], false, None)
                    .map_err(SchedulerError::plan)?;
            let writer = TableWriteExec::try_new(Arc::new(source), spec).map_err(SchedulerError::plan)?;
            let reports: Vec<RecordBatch> = writer
                .execute(0, state.task_ctx())
                .map_err(SchedulerError::plan)?
                .try_collect()
                .await
                .map_err(SchedulerError::plan)?;
            self.publish_and_commit(&reports, register).await
        }
        .await;
        self.discard().await;
        written
    }

    /// The values of `directories` (`k=v` for each partition column, in order).
    fn partition_values(&self, directories: &[String], file: &Path) -> Result<Vec<String>, SchedulerError> {
        if directories.len() != self.partition_columns.len() {
            return Err(SchedulerError::Internal(format!(
                "a written file at {file} is not under one directory per partition column"
            )));
        }
        directories
            .iter()
            .zip(&self.partition_columns)
            .map(|(directory, column)| {
                let decoded = percent_decoded(directory);
                match decoded.split_once('=') {
                    Some((key, value)) if key == column => Ok(value.to_string()),
                    _ => Err(SchedulerError::Internal(format!("a written file at {file} is not under {column}=..."))),
                }
            })
            .collect()
    }

    /// Removes the staging location, and, unless the write committed, every file it moved (and
    /// sweeps the staging location again in the background, for tasks still ending). What a
    /// committed write replaced is removed in the background once no query reads it.
    pub async fn discard(&mut self) {
        self.done = true;
        let parts = (Arc::clone(&self.store), Arc::clone(&self.catalog), self.visibility.clone());
        match self.committed {
            Some(epoch) if !self.retired.is_empty() => self.retire_in_background(epoch),
            Some(_) => remove(parts, self.staging.clone(), Vec::new(), self.query.clone()).await,
            None => {
                let moved = std::mem::take(&mut self.moved);
                remove_failed(&parts, &self.staging, moved, &self.query).await;
                // The statement's error is answered while later sweeps wait; the journal
                // covers a scheduler that stops meanwhile.
                spawn_detached(sweep_failed(parts, self.staging.clone(), self.query.clone()));
            }
        }
    }

    /// Removes the staging location and, once the queries of epochs before `epoch` ended, the
    /// files the write replaced.
    fn retire_in_background(&mut self, epoch: u64) {
        let parts = (Arc::clone(&self.store), Arc::clone(&self.catalog), self.visibility.clone());
        let retired = std::mem::take(&mut self.retired);
        // The statement is answered; the journal covers a scheduler that stops before this ends
        // (the next start deletes what the write replaced).
        spawn_detached(retire(parts, self.staging.clone(), retired, epoch, self.query.clone()));
    }
}

/// A write dropped before it finished (its statement was cancelled, or its client went away)
/// removes its files in the background.
impl Drop for StagedWrite {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(epoch) = self.committed {
            self.retire_in_background(epoch);
            return;
        }
        let parts = (Arc::clone(&self.store), Arc::clone(&self.catalog), self.visibility.clone());
        let (staging, moved) = (self.staging.clone(), std::mem::take(&mut self.moved));
        // The statement that owned the write is gone, and its files must go too; the journal
        // covers a scheduler that stops before this ends.
        tracing::info!(query = %self.query, "a write ended before it finished; removing its files");
        let query = self.query.clone();
        spawn_detached(async move {
            remove_failed(&parts, &staging, moved, &query).await;
            sweep_failed(parts, staging, query).await;
        });
    }
}

/// Runs `cleanup` on its own, past the statement that started it: a write's files must go even
/// when its statement is gone. Detached on purpose; every such cleanup is journaled first, so
/// a scheduler that stops (or has no runtime left) removes the files at its next start.
fn spawn_detached(cleanup: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn(cleanup));
    }
}

/// Whether `file` is under `<location>_glaux_staging/`.
fn is_staged(file: &Path, location: &Path) -> bool {
    file.prefix_match(location).and_then(|mut parts| parts.next()).is_some_and(|first| first.as_ref() == STAGING_DIR)
}

/// A path segment with its `%XX` escapes decoded (object_store escapes characters it does not
/// allow in a segment).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn storage_error(error: object_store::Error) -> SchedulerError {
    SchedulerError::plan(datafusion::error::DataFusionError::ObjectStore(Box::new(error)))
}

/// A client's stream of rows as a source of one partition, read once.
struct OneStream {
    schema: arrow::datatypes::SchemaRef,
    rows: std::sync::Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OneStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneStream")
    }
}

impl PartitionStream for OneStream {
    fn schema(&self) -> &arrow::datatypes::SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<datafusion::execution::TaskContext>) -> SendableRecordBatchStream {
        let taken = self.rows.lock().unwrap_or_else(|e| e.into_inner()).take();
        taken.unwrap_or_else(|| Box::pin(RecordBatchStreamAdapter::new(Arc::clone(&self.schema), stream::empty())))
    }
}

#[cfg(test)]
mod tests;
