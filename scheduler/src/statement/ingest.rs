//! Bulk ingest (Flight SQL `CommandStatementIngest`, ADBC's `adbc_ingest`): a client's Arrow
//! batches appended to a Hive table, or written as a new Parquet table, published atomically as
//! `INSERT INTO` and `CREATE TABLE AS` are (`write/`). The rows come through the scheduler (a
//! client sends them there) and are written by it as they arrive.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use glaux_catalog::{CatalogError, ColumnDef, Privilege, Projection, TableDef, TableFormat};
use glaux_proto::{QueryId, WriteCompression, WriteFormat};

use super::Context;
use super::create_table_as::unsupported;
use super::insert::write_format;
use crate::error::{ErrorKind, SchedulerError};
use crate::write::StagedWrite;

/// What to do when the table exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Append,
    Replace,
}

/// Where a client's batches go.
#[derive(Clone, Debug)]
pub struct IngestTarget {
    /// `None`: the session's database.
    pub database: Option<String>,
    pub table: String,
    pub if_exists: IfExists,
    /// Create the table if it does not exist (else that is an error).
    pub create: bool,
}

/// Writes `rows` into `target`; the rows written.
pub(crate) async fn ingest(
    ctx: &Context<'_>,
    target: IngestTarget,
    rows: SendableRecordBatchStream,
    query: QueryId,
) -> Result<u64, SchedulerError> {
    let database = target.database.clone().unwrap_or_else(|| ctx.session.database.clone());
    let catalog = ctx.lake.catalog();
    let id = query.to_string();
    match catalog.table(&database, &target.table)? {
        Some(definition) => {
            match target.if_exists {
                IfExists::Append => {}
                IfExists::Fail => return Err(CatalogError::TableExists { database, table: target.table }.into()),
                IfExists::Replace => {
                    return Err(unsupported("ingest mode replace is not supported for Hive tables: use append"));
                }
            }
            ctx.access.require_table(Privilege::Insert, &database, &target.table)?;
            if Projection::of(&definition).map_err(SchedulerError::plan)?.is_some() {
                return Err(unsupported(format!(
                    "{database}.{} projects its partitions: cannot write it",
                    target.table
                )));
            }
            super::bucketing::refuse_bucketed(&definition, "ingest")?;
            let format = write_format(&definition)?;
            let rows = conformed(rows, table_schema(&definition)?)?;
            let location = table_location(&definition)?;
            let registered = catalog.partitions(&database, &target.table)?;
            let keys = definition.partition_keys.iter().map(|k| k.name.clone()).collect();
            let staged = StagedWrite::begin(&ctx.state, catalog, &location, &query, keys)?
                .with_registered_partitions(&registered)?;
            staged
                .run_local(&ctx.state, rows, format, |partitions| {
                    Ok(catalog.add_written_partitions(&database, &target.table, partitions, &id)?)
                })
                .await
        }
        None if target.create => {
            ctx.access.require_database(Privilege::Create, &database)?;
            if !catalog.database_exists(&database)? {
                return Err(CatalogError::UnknownDatabase { database, hint: "; CREATE DATABASE it first" }.into());
            }
            let location = ctx.lake.default_location(&database, &target.table)?;
            let schema = rows.schema();
            let definition = TableDef {
                database: database.clone(),
                name: target.table.clone(),
                locations: vec![location.clone()],
                format: TableFormat::Parquet,
                columns: schema.fields().iter().map(|f| ColumnDef::new(f.name(), f.data_type())).collect(),
                partition_keys: Vec::new(),
                properties: Default::default(),
            };
            let mut staged = StagedWrite::begin(&ctx.state, catalog, &location, &query, Vec::new())?;
            staged.require_empty_location("a new table (bulk ingest)").await?;
            let format = (WriteFormat::Parquet, WriteCompression::Snappy);
            staged
                .run_local(&ctx.state, rows, format, |_| Ok(ctx.lake.register_written_table(&definition, &[], &id)?))
                .await
        }
        None => Err(CatalogError::UnknownTable { database, table: target.table }.into()),
    }
}

fn table_location(definition: &TableDef) -> Result<String, SchedulerError> {
    match definition.locations.first() {
        Some(l) if l.ends_with('/') => Ok(l.clone()),
        Some(l) => Ok(format!("{l}/")),
        None => Err(unsupported(format!("{}.{} has no location", definition.database, definition.name))),
    }
}

/// The table's columns as they are written: file columns, then partition keys.
fn table_schema(definition: &TableDef) -> Result<SchemaRef, SchedulerError> {
    let fields = definition
        .columns
        .iter()
        .chain(&definition.partition_keys)
        .map(|c| Ok(Field::new(&c.name, c.arrow_type().map_err(SchedulerError::plan)?, true)))
        .collect::<Result<Vec<_>, SchedulerError>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// `rows` with the table's columns, in its order and types: matched by name (any case), cast,
/// and null where the client sent no such column. A column the table does not have is an error.
fn conformed(rows: SendableRecordBatchStream, table: SchemaRef) -> Result<SendableRecordBatchStream, SchedulerError> {
    let sent = rows.schema();
    let names: Vec<String> = table.fields().iter().map(|f| f.name().to_ascii_lowercase()).collect();
    if let Some(extra) = sent.fields().iter().find(|f| !names.contains(&f.name().to_ascii_lowercase())) {
        return Err(SchedulerError::refused(
            ErrorKind::UnknownObject,
            format!("the table has no column {} (it has {})", extra.name(), names.join(", ")),
        ));
    }
    let sources: Vec<Option<usize>> =
        names.iter().map(|name| sent.fields().iter().position(|f| f.name().to_ascii_lowercase() == *name)).collect();
    let schema = Arc::clone(&table);
    let batches = rows.map(move |batch| {
        let batch = batch?;
        let columns = schema
            .fields()
            .iter()
            .zip(&sources)
            .map(|(field, source)| match source {
                Some(i) => Ok(cast(batch.column(*i), field.data_type())?),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            })
            .collect::<datafusion::error::Result<Vec<ArrayRef>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&schema), columns)?)
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(table, batches)))
}
