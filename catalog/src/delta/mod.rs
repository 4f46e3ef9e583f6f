//! Delta Lake tables: the transaction log read and written with `deltalake-core`, the data read
//! by ordinary DataFusion Parquet scans, so a Delta table's files spread over the executors like
//! any other table's.
//!
//! - [`open`]: a table's log at its latest version, a version, or a point in time, through the
//!   object store the session has for its location (the same store, credentials and roots as
//!   every other read); the latest from the last one read plus the commits since
//!   (`snapshots.rs`).
//! - [`DeltaTableProvider`] (`provider.rs`): the files of one snapshot, pruned by the query's
//!   predicates on partition values and on the file statistics the log keeps, then scanned.
//! - `history.rs`: `"t$history"` and `"t$properties"`, as Trino shows them.
//!
//! What the log says wins over the catalog: columns and partition keys are read from the log
//! whenever a query names the table; the catalog's copy is what `DESCRIBE` and clients' metadata
//! show between statements that change them.

mod commit;
mod history;
mod maintenance;
mod mapping;
mod provider;
mod scan;
mod snapshots;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::kernel::Version;
use deltalake_core::logstore::{LogStoreRef, default_logstore};
use deltalake_core::{DeltaTable, DeltaTableError};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use url::Url;

pub use commit::{NewFile, Rewrite, append, create, rewrite};
pub use history::{history_table, properties_table};
pub use maintenance::{VACUUM_AGE, add_columns, drop_column, rename_column, set_properties, vacuum};
pub use mapping::physical_names;
pub use provider::{DeltaTableProvider, FILE_COLUMN};
pub use scan::ROW_COLUMN;

use crate::definitions::{ColumnDef, TableDef};
use crate::error::{CatalogError, Result};
use crate::partition_filter::HIVE_NULL_PARTITION;

/// The table property that names a table's kind, as Athena's DDL writes it.
pub const TABLE_TYPE: &str = "table_type";

/// Which snapshot of a Delta table a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Snapshot {
    #[default]
    Latest,
    /// `FOR VERSION AS OF n`.
    Version(u64),
    /// `FOR TIMESTAMP AS OF t`: the last version committed at or before `t` (milliseconds
    /// since the epoch, UTC).
    AsOf(i64),
}

/// The object-store URL (scheme and authority) of a location, and its path in that store.
pub(crate) fn store_and_path(location: &str) -> Result<(ObjectStoreUrl, Url, Path)> {
    let mut url = Url::parse(location).map_err(|e| CatalogError::Invalid(format!("{location} is not a URL: {e}")))?;
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let store = ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    ))?;
    let path = Path::from_url_path(url.path())
        .map_err(|e| CatalogError::Invalid(format!("{location} is not a valid object path: {e}")))?;
    Ok((store, url, path))
}

/// The Delta log at `location`, read through the runtime's object store for it.
pub(crate) fn log_store(runtime: &RuntimeEnv, location: &str) -> Result<LogStoreRef> {
    let (store_url, url, path) = store_and_path(location)?;
    let root = runtime.object_store(&store_url)?;
    let prefixed = Arc::new(PrefixStore::new(Arc::clone(&root), path));
    Ok(default_logstore(prefixed, root, &url, &Default::default()))
}

/// The Delta table at `location` at the snapshot asked for.
pub async fn open(runtime: &RuntimeEnv, location: &str, snapshot: Snapshot) -> Result<DeltaTable> {
    let store = log_store(runtime, location)?;
    if let Snapshot::Latest = snapshot
        && let Some(mut table) = snapshots::recent(location, &store).await
        && table.update_incremental(None).await.is_ok()
    {
        snapshots::keep(location, &table);
        return Ok(table);
    }
    let mut table = DeltaTable::new(store);
    let loaded = match snapshot {
        Snapshot::Latest => table.load().await.inspect(|()| snapshots::keep(location, &table)),
        Snapshot::Version(version) => table.load_version(version as Version).await,
        Snapshot::AsOf(millis) => match chrono::DateTime::from_timestamp_millis(millis) {
            Some(at) => table.load_with_datetime(at).await,
            None => return Err(CatalogError::Invalid(format!("timestamp {millis} ms is out of range"))),
        },
    };
    if let Err(error) = loaded {
        if let Snapshot::Version(version) = snapshot {
            let mut latest = DeltaTable::new(log_store(runtime, location)?);
            if latest.load().await.is_ok() && latest.version().is_some_and(|latest| latest < version) {
                return Err(CatalogError::Invalid(format!(
                    "the Delta table at {location} has no version {version} (\"t$history\" lists its versions)"
                )));
            }
        }
        return Err(delta_error(location, error));
    }
    if let Snapshot::AsOf(millis) = snapshot {
        // The log's first version is found even for a time before it was committed.
        let state = table.snapshot().map_err(|e| delta_error(location, e))?;
        if state.version_timestamp(state.version()).is_some_and(|committed| committed > millis) {
            return Err(CatalogError::Invalid(format!(
                "the Delta table at {location} has no version committed at or before that time (its first \
                 version still in its log was committed later)"
            )));
        }
    }
    Ok(table)
}

/// A log error said in terms of the table.
pub(crate) fn delta_error(location: &str, error: DeltaTableError) -> CatalogError {
    match error {
        DeltaTableError::NotATable(_) => {
            CatalogError::Invalid(format!("no Delta table at {location}: it has no transaction log (_delta_log/)"))
        }
        error => CatalogError::Invalid(format!("reading the Delta log at {location}: {error}")),
    }
}

/// The columns (data columns, then partition keys, in the log's order) and the table
/// properties the catalog keeps for a Delta table.
pub fn definition_parts(table: &DeltaTable) -> Result<(Vec<ColumnDef>, Vec<ColumnDef>)> {
    let snapshot = table.snapshot().map_err(|e| CatalogError::Invalid(e.to_string()))?;
    let schema = snapshot.snapshot().arrow_schema();
    let keys: Vec<String> = snapshot.metadata().partition_columns().to_vec();
    let column = |name: &str, data_type: &DataType| ColumnDef::new(name, data_type);
    let columns = schema.fields().iter().filter(|f| !keys.contains(f.name())).map(|f| column(f.name(), f.data_type()));
    let partition_keys = keys
        .iter()
        .map(|k| {
            let field = schema.field_with_name(k).map_err(|e| CatalogError::Invalid(e.to_string()))?;
            Ok(column(k, field.data_type()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((columns.collect(), partition_keys))
}

/// Whether `properties` (TBLPROPERTIES, or `WITH (table_type = ...)`) ask for a Delta table;
/// Iceberg is refused with what to use instead.
pub fn is_delta(properties: &BTreeMap<String, String>) -> Result<bool> {
    let Some(kind) = properties.iter().find(|(k, _)| k.eq_ignore_ascii_case(TABLE_TYPE)).map(|(_, v)| v) else {
        return Ok(false);
    };
    match kind.to_ascii_uppercase().as_str() {
        "DELTA" => Ok(true),
        "HIVE" => Ok(false),
        "ICEBERG" => Err(CatalogError::Unsupported(
            "Iceberg tables are not supported yet: Delta tables ('table_type' = 'DELTA') support the same \
             statements (UPDATE, DELETE, MERGE, time travel, OPTIMIZE, VACUUM)"
                .into(),
        )),
        other => Err(CatalogError::Unsupported(format!("table_type '{other}' is not supported: use DELTA or HIVE"))),
    }
}

/// What a table name asks for beyond the table itself: Trino's metadata tables (`"t$history"`,
/// `"t$properties"`), or a snapshot, as the time-travel rewrite names it ([`snapshot_name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSuffix {
    History,
    Properties,
    At(Snapshot),
}

/// `t$version=3` / `t$timestamp=<ms>`: the name `t FOR VERSION AS OF 3` is planned under.
pub fn snapshot_name(table: &str, snapshot: Snapshot) -> String {
    match snapshot {
        Snapshot::Latest => table.to_string(),
        Snapshot::Version(version) => format!("{table}$version={version}"),
        Snapshot::AsOf(millis) => format!("{table}$timestamp={millis}"),
    }
}

/// The table a name is of, and what its suffix asks for (`None` for a plain name, and for a
/// `$` suffix Glaux does not know, which then names no table).
pub fn split_name(name: &str) -> (&str, Option<NameSuffix>) {
    let Some((table, suffix)) = name.split_once('$') else { return (name, None) };
    let suffix = match suffix {
        "history" => Some(NameSuffix::History),
        "properties" => Some(NameSuffix::Properties),
        _ => match suffix.split_once('=') {
            Some(("version", v)) => v.parse().ok().map(|v| NameSuffix::At(Snapshot::Version(v))),
            Some(("timestamp", t)) => t.parse().ok().map(|t| NameSuffix::At(Snapshot::AsOf(t))),
            _ => None,
        },
    };
    match suffix {
        Some(suffix) => (table, Some(suffix)),
        None => (name, None),
    }
}

/// The partitions of a Delta table's current files, as `k=v/...` (Hive's `__HIVE_DEFAULT_PARTITION__`
/// for a null value), in order.
pub(crate) async fn partitions(runtime: &RuntimeEnv, table: &TableDef) -> Result<Vec<String>> {
    let location = table.locations.first().map_or("", String::as_str);
    let delta = open(runtime, location, Snapshot::Latest).await?;
    let views: Vec<_> =
        delta.get_active_add_actions_by_predicate(None).try_collect().await.map_err(|e| delta_error(location, e))?;
    let keys: Vec<String> =
        delta.snapshot().map_err(|e| CatalogError::Invalid(e.to_string()))?.metadata().partition_columns().to_vec();
    let mut specs: Vec<String> = views
        .iter()
        .map(|view| {
            let values = view.partition_values_map();
            keys.iter()
                .map(|k| {
                    let value = values.get(k).cloned().flatten().unwrap_or_else(|| HIVE_NULL_PARTITION.to_string());
                    format!("{k}={value}")
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    specs.sort();
    specs.dedup();
    Ok(specs)
}
