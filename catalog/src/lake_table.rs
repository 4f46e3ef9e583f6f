//! `LakeTable`: a partitioned table whose partitions come from the catalog or from projection.
//!
//! At scan time the partition-only predicates choose partitions (from the registered list, or
//! computed by [`Projection`]) before any object is listed; then only the chosen partitions'
//! prefixes are listed, and the files become one ordinary DataFusion file scan whose rows carry
//! their partition's values. The rest of the predicates go to that scan (Parquet statistics, page
//! index, late materialization). What was chosen is recorded in the query's [`PruningReport`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err, project_schema};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::{ListingOptions, ListingTableUrl, PartitionedFile};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStore;

use crate::definitions::{TableDef, is_side_file};
use crate::partition_filter::{PartitionFilter, typed_value, uses_only};
use crate::projection::Projection;
use crate::store::Catalog;

/// What the scans of one query chose: a per-query extension of the planning session.
#[derive(Debug, Default)]
pub struct PruningReport {
    scans: Mutex<Vec<TableScanReport>>,
}

/// The partitions and files one scan of a partitioned table selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableScanReport {
    /// `database.table`.
    pub table: String,
    pub partitions: usize,
    /// All partitions the table has: registered ones, or what its projection spans (`None` for
    /// a projection with an injected column, which has no bounds).
    pub partitions_total: Option<usize>,
    pub files: usize,
    pub bytes: u64,
    pub projected: bool,
}

impl PruningReport {
    pub fn scans(&self) -> Vec<TableScanReport> {
        self.scans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn record(&self, scan: TableScanReport) {
        self.scans.lock().unwrap_or_else(|e| e.into_inner()).push(scan);
    }
}

#[derive(Debug)]
pub struct LakeTable {
    definition: TableDef,
    catalog: Arc<dyn Catalog>,
    options: ListingOptions,
    file_schema: SchemaRef,
    /// File columns, then partition keys.
    schema: SchemaRef,
    keys: Vec<Field>,
    projection: Option<Projection>,
}

/// A chosen partition: its typed values and where its files are.
struct Chosen {
    values: Vec<ScalarValue>,
    url: ListingTableUrl,
}

impl LakeTable {
    pub fn new(
        definition: TableDef,
        catalog: Arc<dyn Catalog>,
        options: ListingOptions,
        file_schema: SchemaRef,
    ) -> Result<Self> {
        let keys = definition
            .partition_keys
            .iter()
            .map(|k| Ok(Field::new(&k.name, k.arrow_type()?, true)))
            .collect::<Result<Vec<_>>>()?;
        let mut fields: Vec<Field> = file_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(keys.iter().cloned());
        let projection = Projection::of(&definition)?;
        Ok(Self { definition, catalog, options, file_schema, schema: Arc::new(Schema::new(fields)), keys, projection })
    }

    fn name(&self) -> String {
        format!("{}.{}", self.definition.database, self.definition.name)
    }

    fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name().as_str()).collect()
    }

    /// The partitions the filters select, and how many there are in all.
    fn choose(&self, state: &dyn Session, filter: &PartitionFilter) -> Result<(Vec<Chosen>, Option<usize>)> {
        let typed = |values: &[String]| {
            values.iter().zip(&self.keys).map(|(v, k)| typed_value(v, k.data_type())).collect::<Result<Vec<_>>>()
        };
        if let Some(projection) = &self.projection {
            let chosen = projection
                .partitions(filter, state)?
                .into_iter()
                .map(|p| Ok(Chosen { values: typed(&p.values)?, url: ListingTableUrl::parse(&p.location)? }))
                .collect::<Result<Vec<_>>>()?;
            return Ok((chosen, projection.total()));
        }
        let registered = self.catalog.partitions(&self.definition.database, &self.definition.name)?;
        let columns: Vec<usize> = (0..self.keys.len()).collect();
        let texts: Vec<Vec<&str>> = columns
            .iter()
            .map(|&c| registered.iter().map(|p| p.values.get(c).map_or("", String::as_str)).collect())
            .collect();
        let keep = filter.select(state, &columns, &texts)?;
        let chosen = registered
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(p, _)| Ok(Chosen { values: typed(&p.values)?, url: ListingTableUrl::parse(&p.location)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok((chosen, Some(registered.len())))
    }

    /// The data files directly or deeply under one partition's prefix. Side files (`_SUCCESS`,
    /// `.crc`, names starting with `_` or `.`) are skipped, as Athena does; a missing prefix is
    /// an empty partition.
    async fn files(&self, store: Arc<dyn ObjectStore>, partition: Chosen) -> Result<Vec<PartitionedFile>> {
        let extension = self.options.file_extension.clone();
        let listed: Vec<_> = match store.list(Some(partition.url.prefix())).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(DataFusionError::ObjectStore(Box::new(e))),
        };
        Ok(listed
            .into_iter()
            .filter(|meta| {
                let name = meta.location.filename().unwrap_or_default();
                name.ends_with(&extension) && !is_side_file(name)
            })
            .map(|meta| PartitionedFile::new_from_meta(meta).with_partition_values(partition.values.clone()))
            .collect())
    }
}

/// DataFusion's scan of `groups` (each a partition of the scan) of a table's files: read with its
/// `options`' format, its file columns, then its partition columns (values from each file).
pub(crate) async fn file_scan(
    state: &dyn Session,
    (options, file_schema, partition_fields): (&ListingOptions, SchemaRef, Vec<FieldRef>),
    store_url: datafusion::execution::object_store::ObjectStoreUrl,
    groups: Vec<FileGroup>,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let source = options
        .format
        .file_source(TableSchema::builder(file_schema).with_table_partition_cols(partition_fields).build());
    let config = FileScanConfigBuilder::new(store_url, source)
        .with_file_groups(groups)
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .build();
    options.format.create_physical_plan(state, config).await
}

#[async_trait]
impl TableProvider for LakeTable {
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
        let filter = PartitionFilter::new(self.keys.clone(), filters);
        let (chosen, partitions_total) = self.choose(state, &filter)?;
        let partitions = chosen.len();
        let store_url = chosen.first().map(|c| c.url.object_store());
        if let Some(other) = chosen.iter().find(|c| Some(c.url.object_store()) != store_url) {
            return plan_err!(
                "partition at {} is in another bucket or store than the table's first partition; \
                 a table's partitions must share one store",
                other.url
            );
        }
        let mut files = Vec::new();
        if let Some(first) = chosen.first() {
            let store = state.runtime_env().object_store(&first.url)?;
            let concurrency = state.config_options().execution.meta_fetch_concurrency.get();
            let mut listings = stream::iter(chosen.into_iter().map(|c| self.files(Arc::clone(&store), c)))
                .buffer_unordered(concurrency);
            while let Some(listed) = listings.next().await {
                files.extend(listed?);
            }
        }
        if let Some(report) = state.config().get_extension::<PruningReport>() {
            report.record(TableScanReport {
                table: self.name(),
                partitions,
                partitions_total,
                files: files.len(),
                bytes: files.iter().map(|f| f.object_meta.size).sum(),
                projected: self.projection.is_some(),
            });
        }
        let Some(store_url) = store_url.filter(|_| !files.is_empty()) else {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        };
        let partition_fields: Vec<FieldRef> = self.keys.iter().map(|k| Arc::new(k.clone())).collect();
        let groups = FileGroup::new(files).split_files(state.config().target_partitions().max(1));
        let table = (&self.options, Arc::clone(&self.file_schema), partition_fields);
        file_scan(state, table, store_url, groups, projection, limit).await
    }

    /// Predicates on partition columns alone are decided exactly when partitions are chosen.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        let keys = self.key_names();
        Ok(filters
            .iter()
            .map(|f| {
                if uses_only(&keys, f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }
}
