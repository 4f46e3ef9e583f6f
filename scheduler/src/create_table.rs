//! `CREATE EXTERNAL TABLE`, in DataFusion's dialect and Athena's, and the crawler that completes a
//! definition from the files: format from extensions, columns from the files, partition keys from
//! `key=value` directories, and the codec of compressed text files.

use std::collections::BTreeMap;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::logical_expr::CreateExternalTable;
use futures::{StreamExt, TryStreamExt};

use crate::catalog::{
    COMPRESSION, ColumnDef, FILE_EXTENSION, HiveTable, Projection, TableDef, TableFormat, is_side_file, listing_options,
    table_provider,
};
use crate::error::SchedulerError;
use crate::query::{ClientSession, QueryEngine, plan_error};
use crate::session::DEFAULT_CATALOG;

/// The codec a file name's extension names, with that extension: `x.json.gz` is gzip.
fn split_codec(name: &str) -> (Option<(&'static str, &'static str)>, &str) {
    for (codec, suffix) in [("gzip", ".gz"), ("bzip2", ".bz2"), ("xz", ".xz"), ("zstd", ".zst")] {
        if let Some(bare) = name.strip_suffix(suffix) {
            return (Some((codec, suffix)), bare);
        }
    }
    (None, name)
}

/// A type that holds values of both `a` and `b`, as the crawler merges a column's types across
/// files: integers widen to Int64, integers and floats to Float64, anything beside text to text.
fn wider_type(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let primitive = |t: &DataType| t.is_primitive() || text(t) || matches!(t, Boolean | Null);
    Some(match (a, b) {
        _ if a == b => a.clone(),
        (Null, other) | (other, Null) => other.clone(),
        _ if a.is_integer() && b.is_integer() => Int64,
        _ if a.is_numeric() && b.is_numeric() && !matches!(a, Decimal128(..) | Decimal256(..)) && !matches!(b, Decimal128(..) | Decimal256(..)) => Float64,
        _ if (text(a) || text(b)) && primitive(a) && primitive(b) => Utf8,
        _ => return None,
    })
}

impl QueryEngine {
    /// The database and name for a new table, or `None` if it exists and `IF NOT EXISTS` says to
    /// do nothing.
    fn new_table_name(
        &self,
        name: TableReference,
        if_not_exists: bool,
        or_replace: bool,
        session: &ClientSession,
    ) -> Result<Option<(String, String)>, SchedulerError> {
        let name = name.resolve(DEFAULT_CATALOG, &session.database);
        if name.catalog.as_ref() != DEFAULT_CATALOG {
            return Err(plan_error(format!("unknown catalog {}: tables live in {DEFAULT_CATALOG}", name.catalog)));
        }
        let (database, table) = (name.schema.to_string(), name.table.to_string());
        if !self.catalog.database_exists(&database).map_err(SchedulerError::plan)? {
            return Err(plan_error(format!("database {database} does not exist; CREATE DATABASE {database} first")));
        }
        if self.catalog.table(&database, &table).map_err(SchedulerError::plan)?.is_some() {
            if if_not_exists {
                return Ok(None);
            }
            if !or_replace {
                return Err(plan_error(format!("table {database}.{table} already exists")));
            }
        }
        Ok(Some((database, table)))
    }

    /// `CREATE EXTERNAL TABLE` in DataFusion's dialect.
    pub(crate) async fn create_table(
        &self,
        create: &CreateExternalTable,
        session: &ClientSession,
    ) -> Result<(), SchedulerError> {
        let Some((database, table)) =
            self.new_table_name(create.name.clone(), create.if_not_exists, create.or_replace, session)?
        else {
            return Ok(());
        };
        let format = TableFormat::from_stored_as(&create.file_type).map_err(SchedulerError::plan)?;
        let mut locations = Vec::new();
        for location in &create.locations {
            locations.push(self.checked_location(location).await?);
        }
        let schema = create.schema.as_arrow();
        // DataFusion keeps the quotes of a quoted `PARTITIONED BY ("key")` name.
        let partition_cols: Vec<String> = create
            .table_partition_cols
            .iter()
            .map(|key| match key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) {
                Some(unquoted) => unquoted.replace("\"\"", "\""),
                None => key.clone(),
            })
            .collect();
        let partition_keys: Vec<ColumnDef> = partition_cols
            .iter()
            .map(|key| {
                let data_type = schema.field_with_name(key).map_or(DataType::Utf8, |f| f.data_type().clone());
                ColumnDef::new(key, &data_type)
            })
            .collect();
        let definition = TableDef {
            database,
            name: table,
            locations,
            format,
            columns: schema
                .fields()
                .iter()
                .filter(|f| !partition_cols.contains(f.name()))
                .map(|f| ColumnDef::new(f.name(), f.data_type()))
                .collect(),
            partition_keys,
            properties: create.options.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        self.store_table(definition, create.or_replace).await
    }

    /// `CREATE EXTERNAL TABLE` in Athena's (Hive's) dialect.
    pub(crate) async fn create_hive_table(&self, hive: &HiveTable, session: &ClientSession) -> Result<(), SchedulerError> {
        let name = match hive.name.as_slice() {
            [table] => TableReference::bare(table.as_str()),
            [database, table] => TableReference::partial(database.as_str(), table.as_str()),
            [catalog, database, table] => TableReference::full(catalog.as_str(), database.as_str(), table.as_str()),
            _ => return Err(plan_error(format!("{} is not a table name", hive.name.join(".")))),
        };
        let Some((database, table)) = self.new_table_name(name, hive.if_not_exists, false, session)? else {
            return Ok(());
        };
        let column = |(name, data_type): &(String, DataType)| ColumnDef::new(name, data_type);
        let location = self.checked_location(&hive.location).await?;
        let mut properties = hive.properties.clone();
        let format = match hive.format {
            Some(format) => format,
            None => self.infer_format(&location, &mut properties).await?,
        };
        let definition = TableDef {
            database,
            name: table,
            locations: vec![location],
            format,
            columns: hive.columns.iter().map(column).collect(),
            partition_keys: hive.partition_keys.iter().map(column).collect(),
            properties,
        };
        self.store_table(definition, false).await
    }

    /// Names of (up to 100) data files under a location, skipping `_SUCCESS`, `.crc` and the like.
    async fn sample_files(&self, location: &str) -> Result<Vec<String>, SchedulerError> {
        let url = ListingTableUrl::parse(location).map_err(SchedulerError::plan)?;
        let state = self.ctx.state();
        let store = state.runtime_env().object_store(&url).map_err(SchedulerError::plan)?;
        let files: Vec<_> = url
            .list_all_files(&state, store.as_ref(), "")
            .await
            .map_err(SchedulerError::plan)?
            .take(100)
            .try_collect()
            .await
            .map_err(SchedulerError::plan)?;
        Ok(files
            .iter()
            .filter_map(|f| f.location.filename())
            .filter(|n| !is_side_file(n))
            .map(str::to_ascii_lowercase)
            .collect())
    }

    /// The crawler's guess of a location's file format, from the extensions of its files. Records
    /// the extension (so `_SUCCESS` and other side files are skipped), codec and format options.
    async fn infer_format(
        &self,
        location: &str,
        properties: &mut BTreeMap<String, String>,
    ) -> Result<TableFormat, SchedulerError> {
        for name in self.sample_files(location).await? {
            let (codec, bare) = split_codec(&name);
            let (format, extension) = if bare.ends_with(".parquet") {
                (TableFormat::Parquet, ".parquet")
            } else if let Some(ext) = [".json", ".jsonl", ".ndjson"].into_iter().find(|e| bare.ends_with(e)) {
                (TableFormat::Json, ext)
            } else if bare.ends_with(".csv") {
                properties.insert("format.has_header".into(), "true".into());
                (TableFormat::Csv, ".csv")
            } else if bare.ends_with(".tsv") {
                properties.insert("format.has_header".into(), "true".into());
                properties.insert("format.delimiter".into(), "\t".into());
                (TableFormat::Csv, ".tsv")
            } else {
                continue;
            };
            let extension = match codec {
                Some((codec, suffix)) => {
                    properties.insert(COMPRESSION.into(), codec.into());
                    format!("{extension}{suffix}")
                }
                None => extension.to_string(),
            };
            properties.insert(FILE_EXTENSION.into(), extension);
            return Ok(format);
        }
        Err(plan_error(format!(
            "cannot tell the file format under {location} (no .parquet, .json or .csv files); add STORED AS"
        )))
    }

    /// For text tables that read every file (Athena DDL): the codec their files are compressed
    /// with, when they all carry one codec's extension.
    async fn infer_compression(&self, table: &mut TableDef) -> Result<(), SchedulerError> {
        let reads_every_file = table.properties.get(FILE_EXTENSION).is_some_and(String::is_empty);
        if table.format == TableFormat::Parquet || !reads_every_file || table.properties.contains_key(COMPRESSION) {
            return Ok(());
        }
        let Some(location) = table.locations.first() else { return Ok(()) };
        let codecs: Vec<Option<&str>> =
            self.sample_files(location).await?.iter().map(|n| split_codec(n).0.map(|(c, _)| c)).collect();
        if let Some(Some(codec)) = codecs.first()
            && codecs.iter().all(|c| c == &Some(*codec))
        {
            table.properties.insert(COMPRESSION.into(), (*codec).into());
        }
        Ok(())
    }

    /// Completes a definition (columns from the files if none were declared), checks that it
    /// builds, and stores it with the partitions its layout has now (unless it projects them),
    /// so a new table reads at once, whichever dialect declared it. `MSCK REPAIR TABLE` and
    /// `ALTER TABLE ADD PARTITION` register the partitions that come later.
    async fn store_table(&self, mut definition: TableDef, replace: bool) -> Result<(), SchedulerError> {
        self.infer_compression(&mut definition).await?;
        if definition.columns.is_empty() {
            // The crawler: columns from the files, and Hive partition keys from the layout.
            if definition.partition_keys.is_empty() {
                definition.partition_keys = self.infer_partition_keys(&definition).await?;
            }
            definition.columns = self.infer_columns(&definition).await?;
        } else if definition.format == TableFormat::Parquet {
            self.match_file_case(&mut definition).await;
        }
        table_provider(&definition, &self.catalog, &Default::default()).map_err(SchedulerError::plan)?;
        let partitions = match Projection::of(&definition).map_err(SchedulerError::plan)? {
            // Projected partitions must lie where this deployment may read, like any location.
            Some(projection) => {
                self.storage.check_location(projection.template_prefix()).map_err(SchedulerError::plan)?;
                Vec::new()
            }
            None if !definition.partition_keys.is_empty() => self.discover_partitions(&definition).await?.partitions,
            None => Vec::new(),
        };
        self.catalog.create_table(&definition, replace).map_err(SchedulerError::plan)?;
        self.catalog
            .add_partitions(&definition.database, &definition.name, &partitions, true)
            .map_err(SchedulerError::plan)?;
        Ok(())
    }

    /// Declared columns take the case the Parquet files give them (`ordercount` declared,
    /// `OrderCount` in the files), so they read: Athena matches names regardless of case. No
    /// files yet, or unreadable ones, leave the declaration as it is.
    async fn match_file_case(&self, table: &mut TableDef) {
        let Ok(found) = self.infer_columns(table).await else { return };
        for column in &mut table.columns {
            if let Some(file) = found.iter().find(|f| f.name != column.name && f.name.eq_ignore_ascii_case(&column.name)) {
                column.name = file.name.clone();
            }
        }
    }

    /// The Hive partition keys (`key=value` directories) of a table's first location, as strings.
    async fn infer_partition_keys(&self, table: &TableDef) -> Result<Vec<ColumnDef>, SchedulerError> {
        let Some(location) = table.locations.first() else { return Ok(Vec::new()) };
        let options = listing_options(table, &Default::default()).map_err(SchedulerError::plan)?;
        let url = ListingTableUrl::parse(location).map_err(SchedulerError::plan)?;
        let keys = options.infer_partitions(&self.ctx.state(), &url).await.map_err(SchedulerError::plan)?;
        Ok(keys.iter().map(|k| ColumnDef::new(k, &DataType::Utf8)).collect())
    }

    /// The file columns of a table declared without any, read from (up to 100 of) its files
    /// one by one and merged by name: a column in some files only is kept (it reads as NULL
    /// elsewhere), and one whose type differs between files gets a type that holds both.
    async fn infer_columns(&self, table: &TableDef) -> Result<Vec<ColumnDef>, SchedulerError> {
        const SAMPLE: usize = 100;
        let options = listing_options(table, &Default::default()).map_err(SchedulerError::plan)?;
        let state = self.ctx.state();
        let mut columns: Vec<(String, DataType)> = Vec::new();
        for location in &table.locations {
            let url = ListingTableUrl::parse(location).map_err(SchedulerError::plan)?;
            let store = state.runtime_env().object_store(&url).map_err(SchedulerError::plan)?;
            let files: Vec<_> = url
                .list_all_files(&state, store.as_ref(), &options.file_extension)
                .await
                .map_err(SchedulerError::plan)?
                .try_filter(|f| std::future::ready(!f.location.filename().is_some_and(is_side_file)))
                .take(SAMPLE)
                .try_collect()
                .await
                .map_err(SchedulerError::plan)?;
            for file in files {
                let name = file.location.to_string();
                let schema = options
                    .format
                    .infer_schema(&state, &store, &[file])
                    .await
                    .map_err(|e| plan_error(format!("reading the schema of {name}: {e}")))?;
                for field in schema.fields() {
                    match columns.iter_mut().find(|(n, _)| n == field.name()) {
                        Some((column, data_type)) => {
                            *data_type = wider_type(data_type, field.data_type()).ok_or_else(|| {
                                plan_error(format!(
                                    "column {column} is {data_type} in some files and {} in {name}; declare the columns",
                                    field.data_type()
                                ))
                            })?;
                        }
                        None => columns.push((field.name().clone(), field.data_type().clone())),
                    }
                }
            }
        }
        Ok(columns.iter().map(|(name, data_type)| ColumnDef::new(name, data_type)).collect())
    }

    /// Checks a table location against the storage config (a local one must exist), and ends a
    /// local directory's URL in '/' so DataFusion lists it as a prefix.
    async fn checked_location(&self, location: &str) -> Result<String, SchedulerError> {
        let url = self.storage.check_location(location).map_err(SchedulerError::plan)?;
        if url.scheme() == "file" {
            let path = url.to_file_path().unwrap_or_default();
            if !path.exists() {
                return Err(SchedulerError::plan(DataFusionError::Plan(format!(
                    "location {location} does not exist"
                ))));
            }
            // A directory location must end in '/' for DataFusion to list it as a prefix.
            if path.is_dir() && !url.as_str().ends_with('/') {
                return Ok(format!("{url}/"));
            }
        }
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_types_widen_across_files() {
        assert_eq!(wider_type(&DataType::Int64, &DataType::Float64), Some(DataType::Float64));
        assert_eq!(wider_type(&DataType::Int32, &DataType::Int64), Some(DataType::Int64));
        assert_eq!(wider_type(&DataType::Null, &DataType::Boolean), Some(DataType::Boolean));
        assert_eq!(wider_type(&DataType::Int64, &DataType::Utf8), Some(DataType::Utf8));
        let list = DataType::new_list(DataType::Int64, true);
        assert_eq!(wider_type(&list, &DataType::Utf8), None);
    }
}
