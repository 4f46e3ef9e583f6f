//! `INSERT INTO db.t [(columns)] SELECT ... | VALUES ...` into a Hive-style table.
//!
//! DataFusion plans the statement (the rows cast to the table's columns, in the table's order,
//! partition keys last); the rows are written by the tasks of the query's last executor stage,
//! as a CTAS writes them (`write/`), in the table's format. Files of a partition the table has
//! go to that partition's location; new partitions go under the table's location and are
//! registered. The new files stay hidden from every query until the write commits, when they
//! and the new partitions appear at once. Files already there (another engine's too) are never
//! touched. `INSERT OVERWRITE` is not Athena's and is refused.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use glaux_catalog::{COMPRESSION, DEFAULT_CATALOG, Privilege, Projection, TableDef, TableFormat};
use glaux_proto::{QueryId, WriteCompression, WriteFormat};

use super::create_table_as::{rows_schema, unsupported, written_result};
use super::{Context, Family};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};
use crate::write::StagedWrite;

pub(crate) struct Insert {
    database: String,
    table: String,
    /// The rows to write, in the table's columns.
    input: LogicalPlan,
}

impl Insert {
    /// From DataFusion's plan of an `INSERT`.
    pub(super) fn try_new(plan: LogicalPlan, database: &str) -> Result<Self, SchedulerError> {
        let LogicalPlan::Dml(DmlStatement { table_name, op, input, .. }) = plan else {
            return Err(unsupported("only INSERT INTO writes rows"));
        };
        match op {
            WriteOp::Insert(InsertOp::Append) => {}
            WriteOp::Insert(_) => return Err(unsupported("INSERT OVERWRITE is not supported: use INSERT INTO")),
            other => return Err(unsupported(format!("{} is not supported on Hive tables", other.name()))),
        }
        let name = table_name.resolve(DEFAULT_CATALOG, database);
        Ok(Self {
            database: name.schema.to_string(),
            table: name.table.to_string(),
            input: Arc::unwrap_or_clone(input),
        })
    }

    /// The table written, `db.t`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    pub fn plan(&self) -> &LogicalPlan {
        &self.input
    }
}

/// How a table's files are written: its format, codec and delimiter.
pub(super) fn write_format(table: &TableDef) -> Result<(WriteFormat, WriteCompression), SchedulerError> {
    let text_codec = match table.properties.get(COMPRESSION).map(|c| c.to_ascii_lowercase()).as_deref() {
        None | Some("" | "uncompressed") => WriteCompression::None,
        Some("gzip") => WriteCompression::Gzip,
        Some("zstd") => WriteCompression::Zstd,
        Some(other) => return Err(unsupported(format!("cannot write files compressed with {other}"))),
    };
    Ok(match table.format {
        TableFormat::Delta => {
            return Err(unsupported(format!(
                "{}.{} is a Delta table: writing to Delta tables is not supported yet",
                table.database, table.name
            )));
        }
        TableFormat::Parquet => (WriteFormat::Parquet, WriteCompression::Snappy),
        TableFormat::Json => (WriteFormat::Json, text_codec),
        TableFormat::Csv => {
            if table.properties.get("format.has_header").is_some_and(|v| v == "true") {
                return Err(unsupported(format!(
                    "{}.{} skips a header line in each file; INSERT writes files without one",
                    table.database, table.name
                )));
            }
            let delimiter = match table.properties.get("format.delimiter").map(String::as_bytes) {
                None => b',',
                Some([byte]) => *byte,
                Some(_) => return Err(unsupported("the table's field delimiter is not one byte")),
            };
            (WriteFormat::Text { delimiter }, text_codec)
        }
    })
}

#[async_trait]
impl Family for Insert {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    // Like a query, it runs when its result (the rows it wrote) is fetched.

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        ctx.access.require_table(Privilege::Insert, &self.database, &self.table)?;
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let definition = ctx.lake.table(&[self.database.clone(), self.table.clone()], &self.database)?;
        if definition.format == TableFormat::Delta {
            let written = super::delta::insert(ctx, &query, &definition, &self.input, progress).await?;
            return written_result(query, written);
        }
        if Projection::of(&definition).map_err(SchedulerError::plan)?.is_some() {
            return Err(unsupported(format!("{} projects its partitions: INSERT cannot write it", self.table())));
        }
        super::bucketing::refuse_bucketed(&definition, "INSERT INTO")?;
        let (format, compression) = write_format(&definition)?;
        let Some(location) = definition.locations.first() else {
            return Err(unsupported(format!("{} has no location", self.table())));
        };
        let location = if location.ends_with('/') { location.clone() } else { format!("{location}/") };
        let partition_columns: Vec<String> = definition.partition_keys.iter().map(|k| k.name.clone()).collect();
        let registered = ctx.lake.catalog().partitions(&self.database, &self.table)?;
        let staged = StagedWrite::begin(&ctx.state, ctx.lake.catalog(), &location, &query, partition_columns)?
            .with_registered_partitions(&registered)?;
        let (catalog, id) = (ctx.lake.catalog(), query.to_string());
        let written = staged
            .run(ctx.queries, &ctx.state, &self.input, (format, compression), progress, |partitions| {
                Ok(catalog.add_written_partitions(&self.database, &self.table, partitions, &id)?)
            })
            .await?;
        written_result(query, written)
    }
}
