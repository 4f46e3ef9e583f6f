//! Partitions in the catalog: `MSCK REPAIR TABLE`, `ALTER TABLE ADD|DROP PARTITION`,
//! `SHOW PARTITIONS`, and the discovery of `key=value` directories they and the crawler share.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::listing::ListingTableUrl;
use futures::TryStreamExt;

use crate::athena_statements::PartitionSpec;
use crate::catalog::{HIVE_NULL_PARTITION, Partition, Projection, TableDef, is_side_file, typed_value};
use crate::error::SchedulerError;
use crate::query::{QueryEngine, plan_error};

/// Hive escapes characters such as `/`, `:` and `=` in partition directory names as `%XX`.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `value` reads as the partition key's declared type (Hive's NULL partition does).
fn fits(value: &str, data_type: &DataType) -> bool {
    value == HIVE_NULL_PARTITION || typed_value(value, data_type).is_ok_and(|v| !v.is_null())
}

/// What discovery found: partitions, and directories it passed over with the reason.
#[derive(Default)]
pub struct Discovered {
    pub partitions: Vec<Partition>,
    pub skipped: Vec<String>,
}

impl QueryEngine {
    /// The `key=value/...` directories holding a table's files: keys matched to the table's
    /// partition keys in order and case-insensitively, values checked against their types.
    pub(crate) async fn discover_partitions(&self, table: &TableDef) -> Result<Discovered, SchedulerError> {
        let keys = table
            .partition_keys
            .iter()
            .map(|k| Ok((k.name.clone(), k.arrow_type()?)))
            .collect::<datafusion::common::Result<Vec<_>>>()
            .map_err(SchedulerError::plan)?;
        let state = self.ctx.state();
        let mut found = BTreeMap::new();
        let mut skipped = std::collections::BTreeSet::new();
        for location in &table.locations {
            let url = ListingTableUrl::parse(location).map_err(SchedulerError::plan)?;
            let store = state.runtime_env().object_store(&url).map_err(SchedulerError::plan)?;
            let mut files = store.list(Some(url.prefix()));
            while let Some(file) = files.try_next().await.map_err(|e| SchedulerError::plan(e.into()))? {
                let Some(parts) = url.strip_prefix(&file.location) else { continue };
                let parts: Vec<&str> = parts.collect();
                if parts.len() <= keys.len() || parts.last().is_some_and(|name| is_side_file(name)) {
                    continue;
                }
                let directories = &parts[..keys.len()];
                let mut values = Vec::with_capacity(keys.len());
                let mut problem = None;
                for (directory, (key, data_type)) in directories.iter().zip(&keys) {
                    match directory.split_once('=') {
                        Some((k, v)) if k.eq_ignore_ascii_case(key) => {
                            let value = unescape(v);
                            if !fits(&value, data_type) {
                                problem.get_or_insert(format!("value {value:?} of {key} is not a {data_type}"));
                            }
                            values.push(value);
                        }
                        _ => {
                            problem.get_or_insert(format!("expected {key}=... at {directory}"));
                        }
                    }
                }
                let directory = format!("{}/{}/", url.as_str().trim_end_matches('/'), directories.join("/"));
                match problem {
                    Some(problem) => {
                        skipped.insert(format!("{directory}: {problem}"));
                    }
                    None => {
                        found.entry(values).or_insert(directory);
                    }
                }
            }
        }
        Ok(Discovered {
            partitions: found.into_iter().map(|(values, location)| Partition { values, location }).collect(),
            skipped: skipped.into_iter().collect(),
        })
    }

    /// `MSCK REPAIR TABLE`: registers the partitions found in the layout that the catalog lacks.
    /// Returns Athena's report lines.
    pub(crate) async fn repair_table(&self, table: &TableDef) -> Result<Vec<String>, SchedulerError> {
        if table.partition_keys.is_empty() {
            return Err(plan_error(format!("table {}.{} is not partitioned", table.database, table.name)));
        }
        let discovered = self.discover_partitions(table).await?;
        let known: std::collections::HashSet<Vec<String>> = self
            .catalog
            .partitions(&table.database, &table.name)
            .map_err(SchedulerError::plan)?
            .iter()
            .map(|p| p.values.clone())
            .collect();
        let new: Vec<Partition> = discovered.partitions.into_iter().filter(|p| !known.contains(&p.values)).collect();
        self.catalog.add_partitions(&table.database, &table.name, &new, true).map_err(SchedulerError::plan)?;
        let mut report: Vec<String> = new
            .iter()
            .map(|p| format!("Repair: Added partition to metastore {}:{}", table.name, p.spec(&table.partition_keys)))
            .collect();
        report.extend(discovered.skipped.iter().map(|s| format!("Skipped {s}")));
        Ok(report)
    }

    /// A partition clause's values in key order, each checked against its key's type.
    fn spec_values(&self, table: &TableDef, spec: &PartitionSpec) -> Result<Vec<String>, SchedulerError> {
        let mut values = Vec::with_capacity(table.partition_keys.len());
        for key in &table.partition_keys {
            let Some((_, value)) = spec.iter().find(|(k, _)| k.eq_ignore_ascii_case(&key.name)) else {
                return Err(plan_error(format!("PARTITION clause gives no value for partition key {}", key.name)));
            };
            let data_type = key.arrow_type().map_err(SchedulerError::plan)?;
            if !fits(value, &data_type) {
                return Err(plan_error(format!("partition value {value:?} of {} is not a {data_type}", key.name)));
            }
            values.push(value.clone());
        }
        if let Some((extra, _)) =
            spec.iter().find(|(k, _)| !table.partition_keys.iter().any(|key| key.name.eq_ignore_ascii_case(k)))
        {
            return Err(plan_error(format!(
                "{extra} is not a partition key of {}.{} (keys: {})",
                table.database,
                table.name,
                table.partition_keys.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(values)
    }

    /// `ALTER TABLE ADD PARTITION`: at the given locations (anywhere the deployment may read), or
    /// at the Hive-style directory under the table's location.
    pub(crate) fn add_partitions(
        &self,
        table: &TableDef,
        if_not_exists: bool,
        clauses: &[(PartitionSpec, Option<String>)],
    ) -> Result<(), SchedulerError> {
        let mut partitions = Vec::with_capacity(clauses.len());
        for (spec, location) in clauses {
            let values = self.spec_values(table, spec)?;
            let location = match location {
                Some(location) => self.storage.check_location(location).map_err(SchedulerError::plan)?.to_string(),
                None => {
                    let base = table.locations.first().map_or("", |l| l.trim_end_matches('/'));
                    let spec = Partition { values: values.clone(), location: String::new() }.spec(&table.partition_keys);
                    format!("{base}/{spec}")
                }
            };
            let location = if location.ends_with('/') { location } else { format!("{location}/") };
            partitions.push(Partition { values, location });
        }
        self.catalog
            .add_partitions(&table.database, &table.name, &partitions, if_not_exists)
            .map_err(SchedulerError::plan)?;
        Ok(())
    }

    pub(crate) fn drop_partitions(
        &self,
        table: &TableDef,
        if_exists: bool,
        specs: &[PartitionSpec],
    ) -> Result<(), SchedulerError> {
        let values = specs.iter().map(|spec| self.spec_values(table, spec)).collect::<Result<Vec<_>, _>>()?;
        self.catalog.drop_partitions(&table.database, &table.name, &values, if_exists).map_err(SchedulerError::plan)?;
        Ok(())
    }

    /// `SHOW PARTITIONS`: the registered partitions as `k=v/...`, in order.
    pub(crate) fn show_partitions(&self, table: &TableDef) -> Result<Vec<String>, SchedulerError> {
        if table.partition_keys.is_empty() {
            return Err(plan_error(format!("table {}.{} is not partitioned", table.database, table.name)));
        }
        if Projection::of(table).map_err(SchedulerError::plan)?.is_some() {
            return Err(plan_error(format!(
                "table {}.{} uses partition projection: its partitions are computed for each query, not stored",
                table.database, table.name
            )));
        }
        let partitions = self.catalog.partitions(&table.database, &table.name).map_err(SchedulerError::plan)?;
        Ok(partitions.iter().map(|p| p.spec(&table.partition_keys)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hive_escapes_are_undone() {
        assert_eq!(unescape("2023-06-18 14%3A00%3A00"), "2023-06-18 14:00:00");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("a%2Fb%zz"), "a/b%zz");
        assert!(fits("12", &DataType::Int32) && !fits("x", &DataType::Int32) && fits(HIVE_NULL_PARTITION, &DataType::Int32));
    }
}
