//! [`DeltaTableProvider`]: one snapshot of a Delta table as a DataFusion table.
//!
//! At scan time the snapshot's files (from the log, with their partition values and statistics)
//! are pruned by the query's predicates — partition values count as exact bounds, so one
//! pruning decides partitions and data skipping alike — and what is left becomes an ordinary
//! Parquet scan whose rows carry their file's partition values. The scan's pieces are what the
//! scheduler spreads over executor tasks, as for any other table. What was chosen goes to the
//! query's [`PruningReport`].

use std::sync::Arc;

use async_trait::async_trait;
use std::collections::HashSet;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::pruning::PrunableStatistics;
use datafusion::common::{
    DataFusionError, Result, ScalarValue, ToDFSchema, plan_datafusion_err, plan_err, project_schema,
};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, PartitionedFile};
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use delta_kernel::actions::deletion_vector::DeletionVectorDescriptor as KernelVector;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::{DeletionVectorDescriptor, LogicalFileView};
use futures::TryStreamExt;
use glaux_functions::{deletion_vector_type, deletion_vector_value};
use object_store::ObjectMeta;
use object_store::path::Path;

use super::scan::{DELETION_VECTOR_COLUMN, ROW_COLUMN, Shape};
use super::stats::file_statistics;
use super::{mapping, store_and_path};
use crate::lake_table::{PruningReport, TableScanReport, file_scan};

#[derive(Clone, Debug)]
pub struct DeltaTableProvider {
    /// `database.table`.
    name: String,
    location: String,
    table: DeltaTable,
    file_schema: SchemaRef,
    keys: Vec<FieldRef>,
    /// Data columns, then partition keys (then [`FILE_COLUMN`], if asked for).
    schema: SchemaRef,
    /// The names the files (and the log's statistics and partition values) give those columns
    /// ([`ROW_COLUMN`], read from no file, has none).
    physical_names: Vec<String>,
    /// The table may have deletion vectors (its protocol allows them): the scan carries each
    /// file's and leaves out the rows it deletes.
    deletion_vectors: bool,
    options: ListingOptions,
    /// Rows carry the path of their file (relative to the table) in [`FILE_COLUMN`].
    file_column: bool,
    /// Only these files (relative paths) are scanned.
    only: Option<HashSet<String>>,
    /// The scan's partitions, as given (each a group of relative paths), not split by size.
    groups: Option<Vec<Vec<String>>>,
}

/// The column that names each row's file, for statements that rewrite files
/// ([`DeltaTableProvider::with_file_column`]).
pub const FILE_COLUMN: &str = "__glaux_delta_file";

impl DeltaTableProvider {
    /// The loaded snapshot of `table` (at `location`) as the table `name`, its columns named as
    /// the table names them (under column mapping, its files name them otherwise).
    pub fn try_new(name: String, location: String, table: DeltaTable, parquet: &TableParquetOptions) -> Result<Self> {
        let state = table.snapshot().map_err(external)?;
        let mapped = mapping::is_mapped(state.metadata().configuration())?;
        // Without the log's field metadata (column mapping ids and names): the table's columns
        // are plain columns to a query, whose projections then pass through the scan.
        let original = state.snapshot().arrow_schema();
        let fields = original.fields().iter().map(|f| f.as_ref().clone().with_metadata(Default::default()));
        let logical = Schema::new(fields.collect::<Vec<_>>());
        // Under column mapping the files name columns by their physical names.
        let physical = mapping::physical_schema(&original, mapped)?;
        let key_names: Vec<String> = state.metadata().partition_columns().to_vec();
        let is_key = |f: &FieldRef| key_names.contains(f.name());
        let mut keys = Vec::new();
        let mut key_fields = Vec::new();
        for key in &key_names {
            let (i, field) = logical.fields().find(key).ok_or_else(|| {
                DataFusionError::Plan(format!("the Delta table {name} has no partition column {key}"))
            })?;
            key_fields.push(Arc::new(field.as_ref().clone().with_nullable(true)));
            keys.push(Arc::new(physical.field(i).clone().with_nullable(true)));
        }
        let data: Vec<usize> = (0..logical.fields().len()).filter(|i| !is_key(&logical.fields()[*i])).collect();
        let file_schema = Arc::new(Schema::new(data.iter().map(|i| physical.fields()[*i].clone()).collect::<Vec<_>>()));
        let logical_data = data.iter().map(|i| logical.fields()[*i].clone());
        let schema = Arc::new(Schema::new(logical_data.chain(key_fields).collect::<Vec<_>>()));
        let physical_names =
            file_schema.fields().iter().chain(keys.iter()).map(|f| f.name().clone()).collect::<Vec<_>>();
        let protocol = serde_json::to_value(state.protocol()).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let listed =
            |features: &str| protocol[features].as_array().is_some_and(|f| f.iter().any(|f| f == "deletionVectors"));
        let deletion_vectors = listed("readerFeatures") || listed("writerFeatures");
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet.clone())))
            .with_file_extension("");
        Ok(Self {
            name,
            location,
            table,
            file_schema,
            keys,
            schema,
            physical_names,
            deletion_vectors,
            options,
            file_column: false,
            only: None,
            groups: None,
        })
    }

    /// The Parquet scan's table columns: the table's as its files name them (they differ under
    /// column mapping), then the deletion vector column; `logical` keeps the table's names.
    fn scan_schema(&self, logical: bool) -> SchemaRef {
        let fields = self.schema.fields().iter().zip(&self.physical_names);
        let mut fields: Vec<Field> = fields
            .map(|(f, name)| if logical { f.as_ref().clone() } else { f.as_ref().clone().with_name(name) })
            .collect();
        if self.deletion_vectors {
            fields.push(Field::new(DELETION_VECTOR_COLUMN, deletion_vector_type(), true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Rows carry their file's path (relative to the table, as the log names it) in a last
    /// column, [`FILE_COLUMN`].
    pub fn with_file_column(mut self) -> Self {
        let file = Arc::new(Field::new(FILE_COLUMN, DataType::Utf8, false));
        let mut fields: Vec<FieldRef> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::clone(&file));
        self.keys.push(file);
        self.schema = Arc::new(Schema::new(fields));
        self.physical_names.push(FILE_COLUMN.to_string());
        self.file_column = true;
        self
    }

    /// Rows carry their position in their file (0-based) in a last column, [`ROW_COLUMN`] (after
    /// [`FILE_COLUMN`]: ask for that first).
    pub fn with_row_column(mut self) -> Self {
        let mut fields: Vec<FieldRef> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(Field::new(ROW_COLUMN, DataType::Int64, true)));
        self.schema = Arc::new(Schema::new(fields));
        self
    }

    /// Scans only `files` (relative paths, as [`FILE_COLUMN`] names them).
    pub fn restricted_to(mut self, files: HashSet<String>) -> Self {
        self.only = Some(files);
        self
    }

    /// Scans only the files of `groups` (relative paths), each group one partition of the scan,
    /// kept whole: one task reads it (what a compaction writes as one file).
    pub fn grouped(mut self, groups: Vec<Vec<String>>) -> Self {
        self.only = Some(groups.iter().flatten().cloned().collect());
        self.groups = Some(groups);
        self
    }

    /// The table's columns (data columns, then partition keys), without [`FILE_COLUMN`] and
    /// [`ROW_COLUMN`].
    pub fn schema_without_file_column(&self) -> SchemaRef {
        let fields = self.schema.fields().iter().filter(|f| f.name() != FILE_COLUMN && f.name() != ROW_COLUMN);
        let fields = fields.cloned().collect::<Vec<_>>();
        Arc::new(Schema::new(fields))
    }

    /// The snapshot's files the `filters` may hold rows of (partition values and log statistics
    /// decide; a filter that does not convert keeps every file), each with its partition values
    /// (and its path, with [`Self::with_file_column`]). Recorded in the query's [`PruningReport`].
    pub async fn candidates(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<PartitionedFile>> {
        let (_, _, table_path) = store_and_path(&self.location)?;
        let views: Vec<LogicalFileView> =
            self.table.get_active_add_actions_by_predicate(None).try_collect().await.map_err(external)?;
        let chosen = views.iter().filter(|v| self.only.as_ref().is_none_or(|only| only.contains(v.path().as_ref())));
        let mut files = Vec::new();
        let mut vectors = Vec::new();
        for view in chosen {
            files.push(self.file(&table_path, view)?);
            vectors.push(view.deletion_vector_descriptor());
        }
        let partitions_total = partitions(&files);
        // A predicate that does not convert (or prune) keeps every file: the rows are checked.
        // The statistics are over the scan's columns, under the table's names.
        let schema = self.scan_schema(true);
        let pruning = conjunction(filters.iter().cloned())
            .and_then(|p| state.create_physical_expr(p, &self.schema.clone().to_dfschema().ok()?).ok())
            .and_then(|p| PruningPredicateBuilder::new().with_file_schema(Arc::clone(&schema)).build(p));
        if let Some(pruning) = pruning
            && !files.is_empty()
        {
            let statistics = files.iter().map(|f| f.statistics.clone().unwrap_or_default()).collect();
            let keep = pruning.prune(&PrunableStatistics::new(statistics, schema))?;
            let (mut keep, mut again) = (keep.clone().into_iter(), keep.into_iter());
            files.retain(|_| keep.next().unwrap_or(true));
            vectors.retain(|_| again.next().unwrap_or(true));
        }
        if self.deletion_vectors {
            self.with_deletion_vectors(&mut files, vectors).await?;
        }
        if let Some(report) = state.config().get_extension::<PruningReport>() {
            report.record(TableScanReport {
                table: self.name.clone(),
                partitions: partitions(&files),
                partitions_total: Some(partitions_total),
                files: files.len(),
                bytes: files.iter().map(|f| f.object_meta.size).sum(),
                projected: false,
            });
        }
        Ok(files)
    }

    /// Gives each file whose rows a deletion vector deletes that vector, read from the log
    /// (inline) or its file, as the value of its deletion vector column.
    async fn with_deletion_vectors(
        &self,
        files: &mut [PartitionedFile],
        vectors: Vec<Option<DeletionVectorDescriptor>>,
    ) -> Result<()> {
        let wanted: Vec<(usize, DeletionVectorDescriptor)> =
            vectors.into_iter().enumerate().filter_map(|(i, v)| Some((i, v?))).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let (_, url, _) = store_and_path(&self.location)?;
        let engine = self.table.log_store().engine(None);
        // The kernel reads them with blocking calls.
        let read = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(i, vector)| {
                    let vector = KernelVector::try_from(vector)
                        .map_err(|e| deltalake_core::DeltaTableError::Generic(e.to_string()))?;
                    let bitmap = vector
                        .read(engine.storage_handler(), &url)
                        .map_err(|e| deltalake_core::DeltaTableError::Generic(e.to_string()))?;
                    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
                    bitmap
                        .serialize_into(&mut bytes)
                        .map_err(|e| deltalake_core::DeltaTableError::Generic(e.to_string()))?;
                    Ok((i, bytes))
                })
                .collect::<std::result::Result<Vec<_>, deltalake_core::DeltaTableError>>()
        });
        let read = read.await.map_err(|e| DataFusionError::External(Box::new(e)))?;
        for (i, bytes) in read.map_err(|e| plan_datafusion_err!("reading a deletion vector of {}: {e}", self.name))? {
            if let Some(value) = files[i].partition_values.last_mut() {
                *value = deletion_vector_value(Some(bytes));
            }
        }
        Ok(())
    }

    /// The snapshot this provider reads.
    pub fn table(&self) -> &DeltaTable {
        &self.table
    }

    /// One file of the snapshot with its partition values and statistics over the table's schema.
    fn file(&self, table_path: &Path, view: &LogicalFileView) -> Result<PartitionedFile> {
        let relative = view.path();
        if relative.contains("://") {
            return plan_err!(
                "the Delta table {} has a file outside its location ({relative}), which Glaux cannot read yet",
                self.name
            );
        }
        let raw = view.partition_values_map();
        let first_key = self.file_schema.fields().len();
        let mut values = Vec::with_capacity(self.keys.len());
        let table_keys = self.keys.len() - usize::from(self.file_column);
        for (i, key) in self.keys.iter().take(table_keys).enumerate() {
            let value = match raw.get(key.name()).cloned().flatten() {
                Some(text) if !text.is_empty() => ScalarValue::try_from_string(text, key.data_type())?,
                _ => ScalarValue::try_from(key.data_type())?,
            };
            values.push((first_key + i, value));
        }
        if self.file_column {
            values.push((first_key + table_keys, ScalarValue::Utf8(Some(relative.to_string()))));
        }
        if self.deletion_vectors {
            values.push((first_key + self.keys.len(), deletion_vector_value(None)));
        }
        let size = u64::try_from(view.size()).unwrap_or_default();
        let location = Path::from_iter(table_path.parts().chain(Path::from(relative.as_ref()).parts()));
        let meta = ObjectMeta {
            location,
            last_modified: view.modification_datetime().unwrap_or_default(),
            size,
            e_tag: None,
            version: None,
        };
        let statistics = file_statistics(&self.scan_schema(false), view.stats().as_deref(), &values, size);
        Ok(PartitionedFile::new_from_meta(meta)
            .with_partition_values(values.into_iter().map(|(_, v)| v).collect())
            .with_statistics(Arc::new(statistics)))
    }
}

fn external(error: deltalake_core::DeltaTableError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

#[async_trait]
impl TableProvider for DeltaTableProvider {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (store_url, _, table_path) = store_and_path(&self.location)?;
        let files = self.candidates(state, filters).await?;
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        let groups = match &self.groups {
            Some(groups) => {
                let mut by_path: std::collections::HashMap<String, PartitionedFile> =
                    files.into_iter().filter_map(|f| Some((relative_path(&f, &table_path)?, f))).collect();
                let groups = groups.iter().map(|g| g.iter().filter_map(|p| by_path.remove(p)).collect::<Vec<_>>());
                groups.filter(|g| !g.is_empty()).map(FileGroup::new).collect()
            }
            None => FileGroup::new(files).split_files(state.config().target_partitions().max(1)),
        };
        let requested: Vec<usize> = match projection {
            Some(projection) => projection.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut keys = self.keys.clone();
        if self.deletion_vectors {
            keys.push(Arc::new(Field::new(DELETION_VECTOR_COLUMN, deletion_vector_type(), true)));
        }
        let table = (&self.options, Arc::clone(&self.file_schema), keys);
        let shape =
            Shape { table: &self.schema, physical: &self.physical_names, deletion_vectors: self.deletion_vectors };
        if shape.is_plain(&requested) {
            return file_scan(state, table, store_url, groups, Some(&requested), limit).await;
        }
        // Rows a deletion vector deletes are left out above the scan: it cannot stop early.
        let limit = if self.deletion_vectors { None } else { limit };
        let scan = file_scan(state, table, store_url, groups, Some(&shape.scanned(&requested)), limit).await?;
        shape.wrap(state, scan, &requested)
    }

    /// Every predicate prunes files (partition values and statistics) and is checked again on
    /// the rows.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// How many partitions (distinct partition values) `files` span.
fn partitions(files: &[PartitionedFile]) -> usize {
    files.iter().map(|f| &f.partition_values).collect::<HashSet<_>>().len()
}

/// A scanned file's path relative to the table's path in its store, as the log names it.
fn relative_path(file: &PartitionedFile, table_path: &Path) -> Option<String> {
    let parts: Vec<String> =
        file.object_meta.location.prefix_match(table_path)?.map(|p| p.as_ref().to_string()).collect();
    Some(parts.join("/"))
}
