//! Partitions in the catalog: `MSCK REPAIR TABLE`, `ALTER TABLE ADD|DROP PARTITION` and
//! `SHOW PARTITIONS`.

use std::collections::HashSet;

use datafusion::catalog::Session;

use crate::crawler::Crawler;
use crate::definitions::{Partition, TableDef, TableFormat};
use crate::error::{CatalogError, Result};
use crate::lake::Lake;
use crate::partition_filter::value_fits;
use crate::projection::Projection;

/// `(k = 'v', ...)` of a partition clause: keys (lowercased unless quoted) and values as text.
pub type PartitionSpec = Vec<(String, String)>;

fn not_partitioned(table: &TableDef) -> CatalogError {
    CatalogError::Invalid(format!("table {}.{} is not partitioned", table.database, table.name))
}

/// A Delta table's partitions are its log's: nothing registers or forgets them.
fn refuse_delta(table: &TableDef, statement: &str) -> Result<()> {
    if table.format == TableFormat::Delta {
        return Err(CatalogError::Unsupported(format!(
            "{statement} does not apply to the Delta table {}.{}: its partitions are the ones its transaction log lists",
            table.database, table.name
        )));
    }
    Ok(())
}

/// `MSCK REPAIR TABLE`: registers the partitions found in the layout that the catalog lacks.
/// Returns Athena's report lines.
pub async fn repair_table(lake: &Lake, session: &dyn Session, table: &TableDef) -> Result<Vec<String>> {
    refuse_delta(table, "MSCK REPAIR TABLE")?;
    if table.partition_keys.is_empty() {
        return Err(not_partitioned(table));
    }
    let discovered = Crawler { session }.discover_partitions(table).await?;
    let catalog = lake.catalog();
    let known: HashSet<Vec<String>> =
        catalog.partitions(&table.database, &table.name)?.iter().map(|p| p.values.clone()).collect();
    let new: Vec<Partition> = discovered.partitions.into_iter().filter(|p| !known.contains(&p.values)).collect();
    catalog.add_partitions(&table.database, &table.name, &new, true)?;
    let mut report: Vec<String> = new
        .iter()
        .map(|p| format!("Repair: Added partition to metastore {}:{}", table.name, p.spec(&table.partition_keys)))
        .collect();
    report.extend(discovered.skipped.iter().map(|s| format!("Skipped {s}")));
    Ok(report)
}

/// `ALTER TABLE ADD PARTITION`: at the given locations (anywhere the deployment may read), or
/// at the Hive-style directory under the table's location.
pub fn add_partitions(
    lake: &Lake,
    table: &TableDef,
    if_not_exists: bool,
    clauses: &[(PartitionSpec, Option<String>)],
) -> Result<()> {
    refuse_delta(table, "ALTER TABLE ADD PARTITION")?;
    let mut partitions = Vec::with_capacity(clauses.len());
    for (spec, location) in clauses {
        let values = spec_values(table, spec)?;
        let location = match location {
            Some(location) => lake.storage().check_location(location)?.to_string(),
            None => {
                let base = table.locations.first().map_or("", |l| l.trim_end_matches('/'));
                let spec = Partition { values: values.clone(), location: String::new() }.spec(&table.partition_keys);
                format!("{base}/{spec}")
            }
        };
        let location = if location.ends_with('/') { location } else { format!("{location}/") };
        partitions.push(Partition { values, location });
    }
    lake.catalog().add_partitions(&table.database, &table.name, &partitions, if_not_exists)?;
    Ok(())
}

/// `ALTER TABLE DROP PARTITION`: forgets the partitions (their files stay where they are).
pub fn drop_partitions(lake: &Lake, table: &TableDef, if_exists: bool, specs: &[PartitionSpec]) -> Result<()> {
    refuse_delta(table, "ALTER TABLE DROP PARTITION")?;
    let values = specs.iter().map(|spec| spec_values(table, spec)).collect::<Result<Vec<_>>>()?;
    lake.catalog().drop_partitions(&table.database, &table.name, &values, if_exists)?;
    Ok(())
}

/// `SHOW PARTITIONS`: the registered partitions (a Delta table's: those of its current files)
/// as `k=v/...`, in order.
pub async fn show_partitions(lake: &Lake, session: &dyn Session, table: &TableDef) -> Result<Vec<String>> {
    if table.partition_keys.is_empty() {
        return Err(not_partitioned(table));
    }
    if table.format == TableFormat::Delta {
        return crate::delta::partitions(session.runtime_env(), table).await;
    }
    if Projection::of(table)?.is_some() {
        return Err(CatalogError::Invalid(format!(
            "table {}.{} uses partition projection: its partitions are computed for each query, not stored",
            table.database, table.name
        )));
    }
    let partitions = lake.catalog().partitions(&table.database, &table.name)?;
    Ok(partitions.iter().map(|p| p.spec(&table.partition_keys)).collect())
}

/// A partition clause's values in key order, each checked against its key's type.
fn spec_values(table: &TableDef, spec: &PartitionSpec) -> Result<Vec<String>> {
    let mut values = Vec::with_capacity(table.partition_keys.len());
    for key in &table.partition_keys {
        let Some((_, value)) = spec.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key.name)) else {
            return Err(CatalogError::Invalid(format!(
                "PARTITION clause gives no value for partition key {}",
                key.name
            )));
        };
        let data_type = key.arrow_type()?;
        if !value_fits(value, &data_type) {
            return Err(CatalogError::Invalid(format!(
                "partition value {value:?} of {} is not a {data_type}",
                key.name
            )));
        }
        values.push(value.clone());
    }
    if let Some((extra, _)) =
        spec.iter().find(|(k, _)| !table.partition_keys.iter().any(|key| key.name.eq_ignore_ascii_case(k)))
    {
        return Err(CatalogError::Invalid(format!(
            "{extra} is not a partition key of {}.{} (keys: {})",
            table.database,
            table.name,
            table.partition_keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(values)
}
