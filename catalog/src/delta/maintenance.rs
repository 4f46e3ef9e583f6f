//! Keeping a Delta table: its properties (`ALTER TABLE ... SET TBLPROPERTIES`), its columns
//! (`ALTER TABLE ... ADD COLUMNS`) and `VACUUM`.

use std::collections::HashMap;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::execution::runtime_env::RuntimeEnv;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::{DataType as KernelType, StructField};

use super::{Snapshot, delta_error, open};
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
    let table = table
        .add_columns()
        .with_fields(fields)
        .await
        .map_err(|e| CatalogError::Invalid(format!("adding columns to the Delta table at {location}: {e}")))?;
    Ok(table.version().unwrap_or_default())
}
