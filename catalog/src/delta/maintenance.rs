//! Keeping a Delta table: its properties (`ALTER TABLE ... SET TBLPROPERTIES`), its columns
//! (`ALTER TABLE ... ADD COLUMNS`) and `VACUUM`.

use std::collections::HashMap;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::{DataType as KernelType, StructField};

use deltalake_core::DeltaTable;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::DeltaOperation;

use super::{Snapshot, delta_error, mapping, open};
use crate::error::{CatalogError, Result};

/// The table property (Athena's, for its transactional tables) that says how long `VACUUM`
/// keeps files no version at least that recent needs.
pub const VACUUM_AGE: &str = "vacuum_max_snapshot_age_seconds";

/// Sets `properties` in the table's configuration, as one `SET TBLPROPERTIES` version (keys
/// that look like credentials are refused, as for every table).
pub async fn set_properties(runtime: &RuntimeEnv, location: &str, properties: HashMap<String, String>) -> Result<u64> {
    crate::lake::refuse_credentials(&properties)?;
    if let Some(age) = properties.get(VACUUM_AGE)
        && age.parse::<u64>().is_err()
    {
        return Err(CatalogError::Invalid(format!("{VACUUM_AGE} is a number of seconds, not '{age}'")));
    }
    let table = open(runtime, location, Snapshot::Latest).await?;
    let table = table
        .set_tbl_properties()
        .with_properties(properties)
        .with_raise_if_not_exists(false)
        .await
        .map_err(|e| CatalogError::Invalid(format!("setting properties of the Delta table at {location}: {e}")))?;
    Ok(table.version().unwrap_or_default())
}

/// `VACUUM`: deletes the files no version younger than the retention needs. The retention is
/// the table's `vacuum_max_snapshot_age_seconds`, or Delta's own (`delta.deletedFileRetentionDuration`,
/// 7 days unless the table says otherwise); a `vacuum_max_snapshot_age_seconds` below the
/// table's Delta retention is refused (lowering that is the explicit override). Returns the
/// files deleted.
pub async fn vacuum(runtime: &RuntimeEnv, location: &str) -> Result<usize> {
    let table = open(runtime, location, Snapshot::Latest).await?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let age = state.metadata().configuration().get(VACUUM_AGE).cloned();
    let mut vacuum = table.clone().vacuum().with_enforce_retention_duration(true);
    if let Some(age) = age {
        let seconds: u64 = age
            .parse()
            .map_err(|_| CatalogError::Invalid(format!("{VACUUM_AGE} is a number of seconds, not '{age}'")))?;
        vacuum = vacuum.with_retention_period(
            chrono::Duration::from_std(Duration::from_secs(seconds))
                .map_err(|e| CatalogError::Invalid(format!("{VACUUM_AGE} = {seconds}: {e}")))?,
        );
    }
    let (_, metrics) = vacuum.await.map_err(|e| {
        CatalogError::Invalid(format!(
            "VACUUM of the Delta table at {location}: {e} (a retention below the table's \
             delta.deletedFileRetentionDuration needs that property lowered first)"
        ))
    })?;
    Ok(metrics.files_deleted.len())
}

/// `ALTER TABLE ADD COLUMNS`: `columns` (nullable, NULL in the rows already written) after the
/// table's others, as one `ADD COLUMN` version. Returns the version.
pub async fn add_columns(runtime: &RuntimeEnv, location: &str, columns: &[(String, DataType)]) -> Result<u64> {
    let table = open(runtime, location, Snapshot::Latest).await?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let schema = state.snapshot().arrow_schema();
    let mut fields = Vec::with_capacity(columns.len());
    for (name, data_type) in columns {
        if schema.fields().iter().any(|f| f.name().eq_ignore_ascii_case(name)) {
            return Err(CatalogError::Invalid(format!("column {name} already exists")));
        }
        let data_type = KernelType::try_from_arrow(data_type)
            .map_err(|e| CatalogError::Unsupported(format!("column {name} cannot be a Delta column: {e}")))?;
        fields.push(StructField::new(name, data_type, true));
    }
    // `deltalake-core` adds columns to tables without column mapping only.
    if mapping::is_mapped(state.metadata().configuration())? {
        let change = mapping::add_fields(state, fields.clone())?;
        let parameters = serde_json::json!({ "columns": columns.iter().map(|(c, _)| c).collect::<Vec<_>>() });
        return commit_schema(&table, location, change, DeltaOperation::AddColumn { fields }, parameters).await;
    }
    let table = table
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(|e| CatalogError::Invalid(format!("adding columns to the Delta table at {location}: {e}")))?;
    Ok(table.version().unwrap_or_default())
}

/// `ALTER TABLE CHANGE COLUMN old new [type]` / `RENAME COLUMN old TO new`: the column is named
/// `new` from the next version on (its files keep their names: column mapping, turned on here if
/// it is off). The type cannot change; partition columns cannot be renamed.
pub async fn rename_column(
    runtime: &RuntimeEnv,
    location: &str,
    old: &str,
    new: &str,
    data_type: Option<&DataType>,
) -> Result<u64> {
    let table = open(runtime, location, Snapshot::Latest).await?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let logical = state.snapshot().arrow_schema();
    let (_, field) =
        logical.fields().find(old).ok_or_else(|| CatalogError::Invalid(format!("column {old} does not exist")))?;
    if let Some(data_type) = data_type
        && !data_type.equals_datatype(field.data_type())
    {
        return Err(CatalogError::Unsupported(format!(
            "changing the type of column {old} ({} to {data_type}) is not supported: only its name",
            field.data_type()
        )));
    }
    if old != new && logical.fields().iter().any(|f| f.name().eq_ignore_ascii_case(new)) {
        return Err(CatalogError::Invalid(format!("column {new} already exists")));
    }
    refuse_partition_column(state.metadata().partition_columns(), old, "renamed")?;
    let change = mapping::change_schema(state, |fields| {
        Ok(fields
            .into_iter()
            .map(|f| if f.name() == old { StructField { name: new.to_string(), ..f } } else { f })
            .collect())
    })?;
    let parameters = serde_json::json!({ "oldColumnPath": old, "newColumnPath": new });
    let operation = DeltaOperation::UpdateFieldMetadata { fields: field_of(state, old) };
    commit_schema(&table, location, change, operation, parameters).await
}

/// `ALTER TABLE DROP COLUMN c`: the column leaves the table from the next version on (its files
/// keep it: column mapping, turned on here if it is off). Partition columns and the last data
/// column cannot be dropped.
pub async fn drop_column(runtime: &RuntimeEnv, location: &str, column: &str) -> Result<u64> {
    let table = open(runtime, location, Snapshot::Latest).await?;
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let logical = state.snapshot().arrow_schema();
    if logical.fields().find(column).is_none() {
        return Err(CatalogError::Invalid(format!("column {column} does not exist")));
    }
    let keys = state.metadata().partition_columns();
    refuse_partition_column(keys, column, "dropped")?;
    if logical.fields().iter().filter(|f| !keys.contains(f.name())).count() <= 1 {
        return Err(CatalogError::Invalid(format!("column {column} is the table's last data column")));
    }
    let change =
        mapping::change_schema(state, |fields| Ok(fields.into_iter().filter(|f| f.name() != column).collect()))?;
    let parameters = serde_json::json!({ "columns": [column] });
    let operation = DeltaOperation::UpdateFieldMetadata { fields: field_of(state, column) };
    commit_schema(&table, location, change, operation, parameters).await
}

fn refuse_partition_column(keys: &[String], column: &str, done: &str) -> Result<()> {
    if keys.iter().any(|k| k == column) {
        return Err(CatalogError::Unsupported(format!("partition column {column} cannot be {done}")));
    }
    Ok(())
}

fn field_of(state: &deltalake_core::table::state::DeltaTableState, name: &str) -> Vec<StructField> {
    state.snapshot().schema().fields().filter(|f| f.name() == name).cloned().collect()
}

/// Commits a schema change (and the protocol it needs) as one version.
async fn commit_schema(
    table: &DeltaTable,
    location: &str,
    change: mapping::SchemaChange,
    operation: DeltaOperation,
    parameters: serde_json::Value,
) -> Result<u64> {
    let state = table.snapshot().map_err(|e| delta_error(location, e))?;
    let mut actions = vec![Action::Metadata(change.metadata)];
    actions.extend(change.protocol.map(Action::Protocol));
    let committed = super::commit::committer()
        .with_actions(actions)
        .with_app_metadata(HashMap::from([("operationParameters".to_string(), parameters)]))
        .build(Some(state), table.log_store(), operation)
        .await
        .map_err(|e| CatalogError::Invalid(format!("changing the columns of the Delta table at {location}: {e}")))?;
    Ok(committed.version())
}
