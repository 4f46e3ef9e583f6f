//! Writes into Delta tables, for the statements that write (`INSERT INTO`, `CREATE TABLE AS`
//! with `table_type = 'DELTA'`): the executors write Parquet files under the table's location
//! (`StagedWrite::run_logged`), and one commit to the table's log makes them its version.

use datafusion::logical_expr::LogicalPlan;
use glaux_catalog::{DeltaSnapshot, TableDef, delta_log};
use glaux_proto::{QueryId, WriteCompression, WriteFormat};

use super::Context;
use super::create_table_as::unsupported;
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryStatsHandle};
use crate::write::StagedWrite;

/// How a Delta table's files are written.
const FILES: (WriteFormat, WriteCompression) = (WriteFormat::Parquet, WriteCompression::Snappy);

/// `INSERT INTO` the Delta table `definition`: one `WRITE` (append) commit; appends never
/// conflict, so a concurrent commit makes `deltalake-core` commit again on top of it.
pub(super) async fn insert(
    ctx: &Context<'_>,
    query: &QueryId,
    definition: &TableDef,
    input: &LogicalPlan,
    progress: &ProgressSlot,
) -> Result<(u64, QueryStatsHandle), SchedulerError> {
    let Some(location) = definition.locations.first() else {
        return Err(unsupported(format!("{}.{} has no location", definition.database, definition.name)));
    };
    let location = if location.ends_with('/') { location.clone() } else { format!("{location}/") };
    let runtime = ctx.state.runtime_env();
    let table = delta_log::open(runtime, &location, DeltaSnapshot::Latest).await?;
    let keys: Vec<String> = definition.partition_keys.iter().map(|k| k.name.clone()).collect();
    let staged = StagedWrite::begin(&ctx.state, ctx.lake.catalog(), &location, query, keys)?;
    staged
        .run_logged(ctx.queries, &ctx.state, input, FILES, progress, async |published| {
            delta_log::append(runtime, &location, &table, &published.placed).await?;
            Ok(())
        })
        .await
}

/// `CREATE TABLE AS` a Delta table at `location` (which must be empty): version 0 holds the
/// query's rows, then the catalog registers the table from its log. `None` `WITH NO DATA`
/// (version 0 holds no files).
pub(super) async fn create_table_as(
    ctx: &Context<'_>,
    query: &QueryId,
    (database, name, location): (String, String, String),
    plan: &LogicalPlan,
    partitioned_by: &[String],
    with_data: bool,
    progress: &ProgressSlot,
) -> Result<Option<(u64, QueryStatsHandle)>, SchedulerError> {
    let runtime = ctx.state.runtime_env();
    let schema = plan.schema().as_arrow().clone();
    let mut staged = StagedWrite::begin(&ctx.state, ctx.lake.catalog(), &location, query, partitioned_by.to_vec())?;
    // Athena's rule: a new table's files are the only ones at its location.
    staged.require_empty_location("CREATE TABLE AS").await?;
    let register = async || -> Result<(), SchedulerError> {
        ctx.lake.register_delta(&ctx.state, (database.clone(), name.clone()), &location).await?;
        Ok(())
    };
    if !with_data {
        let created = delta_log::create(runtime, &location, &name, &schema, partitioned_by, &[]).await;
        staged.discard().await;
        created?;
        register().await?;
        return Ok(None);
    }
    let written = staged
        .run_logged(ctx.queries, &ctx.state, plan, FILES, progress, async |published| {
            delta_log::create(runtime, &location, &name, &schema, partitioned_by, &published.placed).await?;
            register().await
        })
        .await?;
    Ok(Some(written))
}
