//! Writes into Delta tables, for the statements that write (`INSERT INTO`, `CREATE TABLE AS`
//! with `table_type = 'DELTA'`): the executors write Parquet files under the table's location
//! (`StagedWrite::run_logged`), and one commit to the table's log makes them its version.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::RecordBatch;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};
use futures::TryStreamExt;
use glaux_catalog::delta_log::DeltaTable;
use glaux_catalog::{DeltaSnapshot, DeltaTableProvider, TableDef, TableFormat, delta_log};
use glaux_proto::{QueryId, WriteCompression, WriteFormat};

use super::Context;
use super::create_table_as::unsupported;
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryStatsHandle};
use crate::write::StagedWrite;

/// How a Delta table's files are written.
pub(super) const FILES: (WriteFormat, WriteCompression) = (WriteFormat::Parquet, WriteCompression::Snappy);

/// The snapshot `snapshot` of the Delta table `name` at `location` as a statement that rewrites
/// its files scans it: each row names its file ([`delta_log::FILE_COLUMN`]).
pub(super) fn rewriting_scan(
    ctx: &Context<'_>,
    name: String,
    location: &str,
    snapshot: &DeltaTable,
) -> Result<DeltaTableProvider, SchedulerError> {
    let parquet =
        TableParquetOptions { global: ctx.state.config_options().execution.parquet.clone(), ..Default::default() };
    let provider = DeltaTableProvider::try_new(name, location.to_string(), snapshot.clone(), &parquet);
    Ok(provider.map_err(SchedulerError::plan)?.with_file_column())
}

/// The Delta table `database.table` a statement (`DELETE`, `UPDATE`, `MERGE`) rewrites: its
/// definition, location and latest snapshot. Other tables are refused, as Athena refuses them.
pub(super) async fn rewritten_table(
    ctx: &Context<'_>,
    database: &str,
    table: &str,
    statement: &str,
) -> Result<(TableDef, String, DeltaTable), SchedulerError> {
    let definition = ctx.lake.table(&[database.to_string(), table.to_string()], database)?;
    if definition.format != TableFormat::Delta {
        return Err(unsupported(format!(
            "{statement} works on Delta tables ('table_type' = 'DELTA'); {database}.{table} is not one"
        )));
    }
    let location = location(&definition)?;
    let snapshot = delta_log::open(ctx.state.runtime_env(), &location, DeltaSnapshot::Latest).await?;
    Ok((definition, location, snapshot))
}

/// Runs a statement's inner query (one pass of a rewrite) in `state` and collects its rows.
pub(super) async fn collect(
    ctx: &Context<'_>,
    state: &SessionState,
    plan: &LogicalPlan,
) -> Result<(Vec<RecordBatch>, QueryStatsHandle), SchedulerError> {
    let result = ctx.queries.run(state, QueryId::random(), plan, &ProgressSlot::default()).await?;
    let failed = result.query.clone();
    let batches =
        result.batches.try_collect().await.map_err(|source| SchedulerError::Execute { query: failed, source })?;
    Ok((batches, result.stats))
}

/// Begins writing `plan`'s rows into the Delta table `snapshot` (of `definition`, at `location`):
/// the staged write, partitioned by the table's keys, and the plan, both with the columns named
/// as the table's files name them (they differ under column mapping).
pub(super) fn begin_write(
    (ctx, state): (&Context<'_>, &SessionState),
    query: &QueryId,
    (definition, location, snapshot): (&TableDef, &str, &DeltaTable),
    plan: &LogicalPlan,
) -> Result<(StagedWrite, LogicalPlan), SchedulerError> {
    let names = delta_log::physical_names(snapshot.snapshot().map_err(|e| SchedulerError::plan(e.into()))?)?;
    let physical = |logical: &str| {
        names.iter().find(|(l, _)| l == logical).map_or_else(|| logical.to_string(), |(_, p)| p.clone())
    };
    let keys: Vec<String> = definition.partition_keys.iter().map(|k| physical(&k.name)).collect();
    let staged = StagedWrite::begin(state, ctx.lake.catalog(), location, query, keys)?;
    if names.iter().all(|(l, p)| l == p) {
        return Ok((staged, plan.clone()));
    }
    let renamed: Vec<Expr> = plan
        .schema()
        .columns()
        .into_iter()
        .map(|c| {
            let name = physical(&c.name);
            Expr::Column(c).alias(name)
        })
        .collect();
    let plan = LogicalPlanBuilder::from(plan.clone()).project(renamed).and_then(LogicalPlanBuilder::build);
    Ok((staged, plan.map_err(SchedulerError::plan)?))
}

/// `predicate` as the log records it: SQL over the table's columns (unqualified), which
/// `deltalake-core` reads back to check concurrent commits against; `None` (the whole table was
/// read) if it does not unparse.
pub(super) fn logged_predicate(predicate: &Expr) -> Option<String> {
    let unqualified = predicate
        .clone()
        .transform(|e| {
            Ok(match e {
                Expr::Column(c) => Transformed::yes(Expr::Column(Column::new_unqualified(c.name))),
                other => Transformed::no(other),
            })
        })
        .ok()?
        .data;
    datafusion::sql::unparser::expr_to_sql(&unqualified).ok().map(|sql| sql.to_string())
}

/// `expr` as SQL (as DataFusion shows it if it does not unparse), for the log's history.
pub(super) fn sql_text(expr: &Expr) -> String {
    datafusion::sql::unparser::expr_to_sql(expr).map_or_else(|_| expr.to_string(), |sql| sql.to_string())
}

/// The session a `MERGE`'s joins run in: sort-merge joins, which spill to disk when the
/// executors' memory pools are full, where a hash join would have to hold the whole source.
pub(super) fn spilling(state: &SessionState) -> SessionState {
    let mut state = state.clone();
    state.config_mut().options_mut().optimizer.prefer_hash_join = false;
    state
}

/// A Delta table's location, ending in '/' (the root its log's paths are relative to).
pub(super) fn location(definition: &TableDef) -> Result<String, SchedulerError> {
    let Some(location) = definition.locations.first() else {
        return Err(unsupported(format!("{}.{} has no location", definition.database, definition.name)));
    };
    Ok(if location.ends_with('/') { location.clone() } else { format!("{location}/") })
}

/// `INSERT INTO` the Delta table `definition`: one `WRITE` (append) commit; appends never
/// conflict, so a concurrent commit makes `deltalake-core` commit again on top of it.
pub(super) async fn insert(
    ctx: &Context<'_>,
    query: &QueryId,
    definition: &TableDef,
    input: &LogicalPlan,
    progress: &ProgressSlot,
) -> Result<(u64, QueryStatsHandle), SchedulerError> {
    let location = location(definition)?;
    let runtime = ctx.state.runtime_env();
    let table = delta_log::open(runtime, &location, DeltaSnapshot::Latest).await?;
    let (staged, input) = begin_write((ctx, &ctx.state), query, (definition, &location, &table), input)?;
    staged
        .run_logged(ctx.queries, &ctx.state, &input, FILES, progress, async |published| {
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

/// `OPTIMIZE` of the Delta table `definition`: in each partition `predicate` (on partition
/// columns only, unqualified) chooses, the files under `threshold` bytes, where a partition has
/// two or more, are read by the executors and written anew as files of about the target size;
/// one `OPTIMIZE` commit (no data change) removes them and adds the new ones. A concurrent
/// rewrite of any of them makes it fail with nothing changed. The rows rewritten.
pub(super) async fn optimize(
    ctx: &Context<'_>,
    query: &QueryId,
    definition: &TableDef,
    predicate: Option<Expr>,
    threshold: u64,
    progress: &ProgressSlot,
) -> Result<Option<(u64, QueryStatsHandle)>, SchedulerError> {
    let location = location(definition)?;
    let runtime = ctx.state.runtime_env();
    let snapshot = delta_log::open(runtime, &location, DeltaSnapshot::Latest).await?;
    let name = format!("{}.{}", definition.database, definition.name);
    let provider = rewriting_scan(ctx, name.clone(), &location, &snapshot)?;
    let columns: Vec<Expr> = provider.schema_without_file_column().fields().iter().map(|f| col(f.name())).collect();
    let files = provider.candidates(&ctx.state, predicate.as_slice()).await.map_err(SchedulerError::plan)?;
    // Small files by partition (the partition values before the file's own path), in groups of
    // about the threshold: each group one task, one new file.
    let mut partitions: HashMap<Vec<ScalarValue>, Vec<(String, u64)>> = HashMap::new();
    for file in files.iter().filter(|f| f.object_meta.size < threshold) {
        let Some((ScalarValue::Utf8(Some(path)), values)) = file.partition_values.split_last() else { continue };
        partitions.entry(values.to_vec()).or_default().push((path.clone(), file.object_meta.size));
    }
    let groups: Vec<Vec<String>> =
        partitions.into_values().filter(|small| small.len() >= 2).flat_map(|small| packed(small, threshold)).collect();
    let touched: HashSet<String> = groups.iter().flatten().cloned().collect();
    if touched.is_empty() {
        return Ok(None);
    }
    let provider = rewriting_scan(ctx, name, &location, &snapshot)?.grouped(groups);
    let plan = LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(provider)), None)
        .and_then(|scan| scan.project(columns))
        .and_then(LogicalPlanBuilder::build)
        .map_err(SchedulerError::plan)?;
    // Each group stays one scan partition: no repartitioning of the scan.
    let mut state = ctx.state.clone();
    state.config_mut().options_mut().optimizer.enable_round_robin_repartition = false;
    state.config_mut().options_mut().optimizer.repartition_file_scans = false;
    let (staged, plan) = begin_write((ctx, &state), query, (definition, &location, &snapshot), &plan)?;
    let operation = delta_log::Rewrite::Optimize {
        predicate: predicate.as_ref().and_then(logged_predicate),
        target_size: threshold,
    };
    let written = staged
        .run_logged(ctx.queries, &state, &plan, FILES, progress, async |published| {
            delta_log::rewrite(runtime, &location, &snapshot, &touched, &published.placed, operation).await?;
            Ok(())
        })
        .await?;
    Ok(Some(written))
}

/// One partition's small files (path, size) in name order, in groups of about `target` bytes
/// together; a last group of one file joins the one before (alone it would only be copied).
fn packed(mut files: Vec<(String, u64)>, target: u64) -> Vec<Vec<String>> {
    files.sort();
    let mut groups: Vec<(Vec<String>, u64)> = Vec::new();
    for (path, size) in files {
        match groups.last_mut() {
            Some((group, total)) if *total + size <= target => {
                group.push(path);
                *total += size;
            }
            _ => groups.push((vec![path], size)),
        }
    }
    if groups.len() >= 2 && groups.last().is_some_and(|(g, _)| g.len() == 1) {
        let (last, _) = groups.pop().unwrap_or_default();
        if let Some((group, _)) = groups.last_mut() {
            group.extend(last);
        }
    }
    groups.into_iter().map(|(group, _)| group).filter(|g| g.len() >= 2).collect()
}
