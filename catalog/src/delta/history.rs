//! A Delta table's metadata tables, as Trino names them: `"t$history"` (one row per commit:
//! version, timestamp, operation and its parameters, ...) and `"t$properties"` (the table's
//! properties and protocol).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, MapBuilder, RecordBatch, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::MemTable;
use datafusion::common::{DataFusionError, Result, plan_err};
use deltalake_core::DeltaTable;
use deltalake_core::kernel::{Action, CommitInfo};
use deltalake_core::logstore::extract_version_from_filename;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;

/// The newest commits `$history` shows: reading a commit is one request, and a table's log can
/// be long.
const MAX_HISTORY: usize = 1000;
/// Commits read at once.
const READ_CONCURRENCY: usize = 16;

fn external(error: impl std::error::Error + Send + Sync + 'static) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// One row per commit up to the loaded version (newest first, at most [`MAX_HISTORY`]).
pub async fn history_table(table: &DeltaTable) -> Result<MemTable> {
    let Some(newest) = table.version() else { return plan_err!("the Delta table is not loaded") };
    let log_store = table.log_store();
    let store = log_store.object_store(None);
    let log_path = object_store::path::Path::from("_delta_log");
    let listed: Vec<_> = store.list(Some(&log_path)).try_collect().await.map_err(external)?;
    let mut commits: Vec<(u64, object_store::path::Path)> = listed
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(".json"))
        .filter_map(|meta| {
            let version = extract_version_from_filename(meta.location.as_ref())?;
            (version <= newest).then_some((version, meta.location))
        })
        .collect();
    commits.sort_unstable_by_key(|(version, _)| std::cmp::Reverse(*version));
    commits.truncate(MAX_HISTORY);
    let infos: Vec<(u64, Option<CommitInfo>)> = stream::iter(commits)
        .map(|(version, path)| {
            let store = Arc::clone(&store);
            async move {
                let bytes = store.get(&path).await.map_err(external)?.bytes().await.map_err(external)?;
                let info = serde_json::Deserializer::from_slice(&bytes)
                    .into_iter::<Action>()
                    .filter_map(|action| match action {
                        Ok(Action::CommitInfo(info)) => Some(info),
                        _ => None,
                    })
                    .next();
                Ok::<_, DataFusionError>((version, info))
            }
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;

    let mut version = Int64Builder::new();
    let mut timestamp = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut user_id = StringBuilder::new();
    let mut user_name = StringBuilder::new();
    let mut operation = StringBuilder::new();
    let mut parameters = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut read_version = Int64Builder::new();
    let mut isolation_level = StringBuilder::new();
    let mut is_blind_append = BooleanBuilder::new();
    for (v, info) in &infos {
        let info = info.clone().unwrap_or_default();
        version.append_value(i64::try_from(*v).unwrap_or(i64::MAX));
        timestamp.append_option(info.in_commit_timestamp.or(info.timestamp));
        user_id.append_option(info.user_id.as_deref());
        user_name.append_option(info.user_name.as_deref());
        operation.append_option(info.operation.as_deref());
        let mut entries: Vec<(String, String)> = info
            .operation_parameters
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        entries.sort();
        for (key, value) in entries {
            parameters.keys().append_value(key);
            parameters.values().append_value(value);
        }
        parameters.append(true)?;
        read_version.append_option(info.read_version.map(|r| r as i64));
        isolation_level.append_option(info.isolation_level.map(|l| format!("{l:?}")));
        is_blind_append.append_option(info.is_blind_append);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(version.finish()),
        Arc::new(timestamp.finish()),
        Arc::new(user_id.finish()),
        Arc::new(user_name.finish()),
        Arc::new(operation.finish()),
        Arc::new(parameters.finish()),
        Arc::new(read_version.finish()),
        Arc::new(isolation_level.finish()),
        Arc::new(is_blind_append.finish()),
    ];
    let fields: Vec<Field> = [
        ("version", columns[0].data_type().clone()),
        ("timestamp", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))),
        ("user_id", DataType::Utf8),
        ("user_name", DataType::Utf8),
        ("operation", DataType::Utf8),
        ("operation_parameters", columns[5].data_type().clone()),
        ("read_version", DataType::Int64),
        ("isolation_level", DataType::Utf8),
        ("is_blind_append", DataType::Boolean),
    ]
    .into_iter()
    .map(|(name, data_type)| Field::new(name, data_type, true))
    .collect();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
    MemTable::try_new(schema, vec![vec![batch]])
}

/// The table's properties (its configuration) and protocol, as `key`, `value` rows.
pub fn properties_table(table: &DeltaTable) -> Result<MemTable> {
    let state = table.snapshot().map_err(external)?;
    let protocol = state.protocol();
    let mut rows: Vec<(String, String)> =
        state.metadata().configuration().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    rows.push(("delta.minReaderVersion".into(), protocol.min_reader_version().to_string()));
    rows.push(("delta.minWriterVersion".into(), protocol.min_writer_version().to_string()));
    let features =
        protocol.reader_features().unwrap_or_default().iter().chain(protocol.writer_features().unwrap_or_default());
    for feature in features {
        rows.push((format!("delta.feature.{feature}"), "supported".into()));
    }
    rows.sort();
    rows.dedup();
    let mut keys = StringBuilder::new();
    let mut values = StringBuilder::new();
    for (key, value) in rows {
        keys.append_value(key);
        values.append_value(value);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(keys.finish()), Arc::new(values.finish())])?;
    MemTable::try_new(schema, vec![vec![batch]])
}
