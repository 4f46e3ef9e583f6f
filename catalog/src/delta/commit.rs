//! Writing a Delta table's log: the files a statement wrote become one new version, with the
//! statistics readers skip files by, committed with `deltalake-core`'s conflict checks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::kernel::Add;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{DataType as KernelType, StructField};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, MergePredicate, SaveMode};
use deltalake_core::table::state::DeltaTableState;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::parquet_to_arrow_schema;
use serde_json::{Map, Value};

use super::{delta_error, store_and_path};
use crate::error::{CatalogError, Result};
use crate::partition_filter::HIVE_NULL_PARTITION;

/// A file a statement wrote under a Delta table's location.
#[derive(Clone, Debug)]
pub struct NewFile {
    /// Its path in the location's store.
    pub path: Path,
    pub size: u64,
    /// Its partition's values, in the table's partition-column order, as written in its path.
    pub values: Vec<String>,
}

/// Longest string kept as a minimum or maximum (what Spark and delta-rs keep; a longer maximum
/// is left out rather than truncated below the truth).
const MAX_STRING_STAT: usize = 32;

/// Commits `files` to the Delta table `table` (loaded at the version the statement read) as one
/// `WRITE` in append mode. Returns the new version. A concurrent commit that conflicts is an
/// error; appends do not conflict with each other.
pub async fn append(runtime: &RuntimeEnv, location: &str, table: &DeltaTable, files: &[NewFile]) -> Result<u64> {
    let (store_url, _, table_path) = store_and_path(location)?;
    let store = runtime.object_store(&store_url)?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    writable(state, location, false)?;
    let (schema, keys) = physical(state)?;
    let mut actions = Vec::with_capacity(files.len());
    for file in files {
        actions.push(Action::Add(add(&store, &table_path, &schema, &keys, file).await?));
    }
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: (!keys.is_empty()).then_some(keys),
        predicate: None,
    };
    let committed = committer()
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await
        .map_err(|e| CatalogError::Invalid(format!("committing to the Delta table at {location}: {e}")))?;
    Ok(committed.version())
}

/// Commits as `deltalake-core`'s own operations commit: a checkpoint every
/// `delta.checkpointInterval` versions (100 unless set), so opening a table reads a bounded
/// number of log files, and log files past `delta.logRetentionDuration` (30 days) cleaned up
/// then, unless `delta.enableExpiredLogCleanup` is false.
pub(super) fn committer() -> CommitBuilder {
    CommitBuilder::from(CommitProperties::default())
}

/// The snapshot's columns and partition keys as its files name them (column mapping).
fn physical(state: &DeltaTableState) -> Result<(SchemaRef, Vec<String>)> {
    let names = super::physical_names(state)?;
    let logical = state.snapshot().arrow_schema();
    let fields: Vec<Field> =
        logical.fields().iter().zip(&names).map(|(f, (_, name))| f.as_ref().clone().with_name(name)).collect();
    let keys = state.metadata().partition_columns().iter();
    let keys = keys.map(|k| names.iter().find(|(l, _)| l == k).map_or_else(|| k.clone(), |(_, p)| p.clone()));
    Ok((Arc::new(Schema::new(fields)), keys.collect()))
}

/// Refuses to write a table whose rules Glaux's writes do not keep: `CHECK` constraints,
/// invariants and generated columns (it does not compute or check them), and for rewrites, the
/// change data feed (it writes no change files).
fn writable(state: &DeltaTableState, location: &str, rewrites: bool) -> Result<()> {
    let refused = |what: &str| {
        Err(CatalogError::Unsupported(format!(
            "the Delta table at {location} has {what}, which Glaux's writes do not keep yet"
        )))
    };
    let configuration = state.metadata().configuration();
    if configuration.keys().any(|k| k.starts_with("delta.constraints.")) {
        return refused("CHECK constraints");
    }
    if rewrites && configuration.get("delta.enableChangeDataFeed").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return refused("the change data feed enabled");
    }
    for field in state.snapshot().schema().fields() {
        let keys: Vec<&String> = field.metadata().keys().collect();
        if keys.iter().any(|k| k.as_str() == "delta.generationExpression") {
            return refused(&format!("a generated column ({})", field.name()));
        }
        if keys.iter().any(|k| k.as_str() == "delta.invariants") {
            return refused(&format!("an invariant on column {}", field.name()));
        }
        if keys.iter().any(|k| k.starts_with("delta.identity.")) {
            return refused(&format!("an identity column ({})", field.name()));
        }
    }
    Ok(())
}

/// What a rewrite of files does, as the log records it.
#[derive(Clone, Debug)]
pub enum Rewrite {
    Delete {
        predicate: Option<String>,
    },
    Update {
        predicate: Option<String>,
    },
    /// `MERGE`: its `ON` condition, and each `WHEN` clause's action (`update`, `delete`,
    /// `insert`) and condition, matched clauses then not matched ones. It read the whole table.
    Merge {
        on: String,
        matched: Vec<(String, Option<String>)>,
        not_matched: Vec<(String, Option<String>)>,
    },
    /// The same rows in fewer files: no data changes (streaming readers skip it).
    Optimize {
        predicate: Option<String>,
        target_size: u64,
    },
}

/// Commits a rewrite: the `removed` files (relative paths, of the snapshot `table` read) leave
/// the table and `added` join it, in one version. A concurrent commit that removed or rewrote
/// any of them makes this one fail (`deltalake-core`'s conflict checks), with nothing changed.
pub async fn rewrite(
    runtime: &RuntimeEnv,
    location: &str,
    table: &DeltaTable,
    removed: &HashSet<String>,
    added: &[NewFile],
    operation: Rewrite,
) -> Result<u64> {
    let (store_url, _, table_path) = store_and_path(location)?;
    let store = runtime.object_store(&store_url)?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    writable(state, location, !matches!(operation, Rewrite::Optimize { .. }))?;
    let (schema, keys) = physical(state)?;
    let views: Vec<_> =
        table.get_active_add_actions_by_predicate(None).try_collect().await.map_err(|e| delta_error(location, e))?;
    let data_change = !matches!(operation, Rewrite::Optimize { .. });
    let mut actions: Vec<Action> = views
        .iter()
        .filter(|view| removed.contains(view.path().as_ref()))
        .map(|view| Action::Remove(view.remove_action(data_change)))
        .collect();
    for file in added {
        let add = Add { data_change, ..add(&store, &table_path, &schema, &keys, file).await? };
        actions.push(Action::Add(add));
    }
    let operation = match operation {
        Rewrite::Delete { predicate } => DeltaOperation::Delete { predicate },
        Rewrite::Update { predicate } => DeltaOperation::Update { predicate },
        Rewrite::Merge { on, matched, not_matched } => {
            let clauses = |clauses: Vec<(String, Option<String>)>| {
                clauses.into_iter().map(|(action_type, predicate)| MergePredicate { action_type, predicate }).collect()
            };
            DeltaOperation::Merge {
                predicate: None,
                merge_predicate: Some(on),
                matched_predicates: clauses(matched),
                not_matched_predicates: clauses(not_matched),
                not_matched_by_source_predicates: Vec::new(),
            }
        }
        Rewrite::Optimize { predicate, target_size } => {
            DeltaOperation::Optimize { predicate, target_size: i64::try_from(target_size).unwrap_or(i64::MAX) }
        }
    };
    let committed = committer()
        .with_actions(actions)
        .build(Some(state), table.log_store(), operation)
        .await
        .map_err(|e| CatalogError::Invalid(format!("committing to the Delta table at {location}: {e}")))?;
    Ok(committed.version())
}

/// Creates the Delta table at `location` (with no log yet) as version 0: `schema`'s columns
/// (all nullable: Glaux's writes do not check `NOT NULL`), partitioned by `keys`, holding `files`.
/// Returns the version.
pub async fn create(
    runtime: &RuntimeEnv,
    location: &str,
    name: &str,
    schema: &Schema,
    keys: &[String],
    files: &[NewFile],
) -> Result<u64> {
    let (store_url, _, table_path) = store_and_path(location)?;
    let store = runtime.object_store(&store_url)?;
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let data_type = KernelType::try_from_arrow(field.data_type())
            .map_err(|e| CatalogError::Unsupported(format!("column {} cannot be a Delta column: {e}", field.name())))?;
        columns.push(StructField::new(field.name(), data_type, true));
    }
    let mut actions = Vec::with_capacity(files.len());
    for file in files {
        actions.push(Action::Add(add(&store, &table_path, schema, keys, file).await?));
    }
    let table = CreateBuilder::new()
        .with_log_store(super::log_store(runtime, location)?)
        .with_table_name(name)
        .with_columns(columns)
        .with_partition_columns(keys.iter().cloned())
        .with_actions(actions)
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(|e| CatalogError::Invalid(format!("creating the Delta table at {location}: {e}")))?;
    Ok(table.version().unwrap_or_default())
}

/// The `add` action of one written file: its path relative to the table, partition values, and
/// statistics read from its footer.
async fn add(
    store: &Arc<dyn ObjectStore>,
    table_path: &Path,
    schema: &Schema,
    keys: &[String],
    file: &NewFile,
) -> Result<Add> {
    let Some(relative) = file.path.prefix_match(table_path) else {
        return Err(CatalogError::Invalid(format!("written file {} is outside the table at {table_path}", file.path)));
    };
    let relative: Vec<String> = relative.map(|part| part.as_ref().to_string()).collect();
    let partition_values: HashMap<String, Option<String>> = keys
        .iter()
        .zip(&file.values)
        .map(|(key, value)| (key.clone(), (value != HIVE_NULL_PARTITION).then(|| value.clone())))
        .collect();
    let stats = file_stats(store, file, schema, keys).await?;
    Ok(Add {
        path: relative.join("/"),
        partition_values,
        size: i64::try_from(file.size).unwrap_or(i64::MAX),
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats.to_string()),
        ..Default::default()
    })
}

/// `numRecords`, and `minValues` / `maxValues` / `nullCount` of the data columns whose bounds
/// every reader reads alike (integers, strings, dates), from the file's footer.
async fn file_stats(store: &Arc<dyn ObjectStore>, file: &NewFile, schema: &Schema, keys: &[String]) -> Result<Value> {
    let unreadable = |e: &dyn std::fmt::Display| {
        CatalogError::Invalid(format!("reading the footer of written file {}: {e}", file.path))
    };
    let meta = ObjectMeta {
        location: file.path.clone(),
        last_modified: chrono::Utc::now(),
        size: file.size,
        e_tag: None,
        version: None,
    };
    let parquet = DFParquetMetadata::new(store.as_ref(), &meta).fetch_metadata().await.map_err(|e| unreadable(&e))?;
    let descriptor = parquet.file_metadata().schema_descr();
    let arrow = parquet_to_arrow_schema(descriptor, parquet.file_metadata().key_value_metadata())
        .map_err(|e| unreadable(&e))?;
    let groups = parquet.row_groups();
    let rows: i64 = groups.iter().map(|g| g.num_rows()).sum();
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    for field in schema.fields().iter().filter(|f| !keys.contains(f.name())) {
        let Ok(converter) = StatisticsConverter::try_new(field.name(), &arrow, descriptor) else {
            continue;
        };
        if let Ok(counts) = converter.row_group_null_counts(groups.iter())
            && counts.null_count() == 0
        {
            let total: u64 = counts.values().iter().sum();
            nulls.insert(field.name().clone(), Value::from(total));
        }
        if !matches!(
            field.data_type(),
            DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
        ) {
            continue;
        }
        let (Ok(mins), Ok(maxes)) = (converter.row_group_mins(groups.iter()), converter.row_group_maxes(groups.iter()))
        else {
            continue;
        };
        if let Some(value) = bound(&mins, true).and_then(|v| json(&v, true)) {
            min.insert(field.name().clone(), value);
        }
        if let Some(value) = bound(&maxes, false).and_then(|v| json(&v, false)) {
            max.insert(field.name().clone(), value);
        }
    }
    Ok(serde_json::json!({ "numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls }))
}

/// The least (or greatest) of the row groups' bounds; `None` if any row group has none (a
/// bound that ignores a row group would be wrong).
fn bound(values: &ArrayRef, least: bool) -> Option<ScalarValue> {
    if values.is_empty() || values.null_count() > 0 {
        return None;
    }
    let mut best: Option<ScalarValue> = None;
    for i in 0..values.len() {
        let value = ScalarValue::try_from_array(values, i).ok()?;
        best = match best {
            None => Some(value),
            Some(current) => {
                let better = if least { value < current } else { value > current };
                Some(if better { value } else { current })
            }
        };
    }
    best
}

/// A bound as the log writes it; long strings only as minimums (a prefix is still a lower bound).
fn json(value: &ScalarValue, least: bool) -> Option<Value> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(Value::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(Value::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(Value::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(Value::from(*v)),
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            if s.chars().count() <= MAX_STRING_STAT {
                Some(Value::from(s.clone()))
            } else if least {
                Some(Value::from(s.chars().take(MAX_STRING_STAT).collect::<String>()))
            } else {
                None
            }
        }
        ScalarValue::Date32(Some(_)) => Some(Value::from(value.to_string())),
        _ => None,
    }
}
