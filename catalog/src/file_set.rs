//! `FileSetTable`: chosen files of a table, scanned as the table's format reads them, each file
//! with its partition's values as text. What a compaction (`OPTIMIZE`) reads: the groups it is
//! given are the scan's partitions, kept as they are, so each group (files of one partition,
//! about a target size together) becomes one task's input and one new file.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Result, ScalarValue, plan_err, project_schema};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::{ListingOptions, PartitionedFile};
use datafusion::datasource::physical_plan::FileGroup;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectMeta;

use crate::definitions::TableDef;
use crate::lake_table::file_scan;
use crate::providers::listing_options;

/// A table's file and the values (as written in its partition's path) of its partition.
pub type FileOfPartition = (ObjectMeta, Vec<String>);

#[derive(Debug)]
pub struct FileSetTable {
    /// The table's columns, then its partition columns as text.
    schema: SchemaRef,
    file_schema: SchemaRef,
    keys: Vec<FieldRef>,
    options: ListingOptions,
    store: ObjectStoreUrl,
    groups: Vec<Vec<FileOfPartition>>,
}

impl FileSetTable {
    /// `groups` of `table`'s files in the store `store`, read with its columns (as stored).
    pub fn try_new(
        table: &TableDef,
        parquet: &TableParquetOptions,
        store: ObjectStoreUrl,
        groups: Vec<Vec<FileOfPartition>>,
    ) -> Result<Self> {
        let fields =
            table.columns.iter().map(|c| Ok(Field::new(&c.name, c.arrow_type()?, true))).collect::<Result<Vec<_>>>()?;
        let keys: Vec<FieldRef> =
            table.partition_keys.iter().map(|k| Arc::new(Field::new(&k.name, DataType::Utf8, false))).collect();
        if let Some(file) = groups.iter().flatten().find(|(_, values)| values.len() != keys.len()) {
            return plan_err!(
                "file {} has {} partition values; its table has {} keys",
                file.0.location,
                file.1.len(),
                keys.len()
            );
        }
        let schema = Arc::new(Schema::new(
            fields.iter().cloned().map(Arc::new).chain(keys.iter().cloned()).collect::<Vec<FieldRef>>(),
        ));
        // The options without partition columns: their values come with the files here.
        let mut options = listing_options(table, parquet)?;
        options.table_partition_cols = Vec::new();
        Ok(Self { schema, file_schema: Arc::new(Schema::new(fields)), keys, options, store, groups })
    }
}

#[async_trait]
impl TableProvider for FileSetTable {
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
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.groups.iter().all(Vec::is_empty) {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        let groups: Vec<FileGroup> = self
            .groups
            .iter()
            .filter(|group| !group.is_empty())
            .map(|group| {
                let files = group.iter().map(|(meta, values)| {
                    let values = values.iter().map(|v| ScalarValue::Utf8(Some(v.clone()))).collect();
                    PartitionedFile::new_from_meta(meta.clone()).with_partition_values(values)
                });
                FileGroup::new(files.collect())
            })
            .collect();
        let table = (&self.options, Arc::clone(&self.file_schema), self.keys.clone());
        file_scan(state, table, self.store.clone(), groups, projection, limit).await
    }
}
