//! The crawler: what a location's files say about the table over them, for what a `CREATE`
//! statement leaves out. The format from file extensions, columns from the files (merged by name
//! across files), Hive partition keys and partitions from `key=value` directories, and the codec
//! of compressed text files. It reads through the DataFusion session it is given, so the
//! session's object stores (and their rules) apply.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::datasource::listing::ListingTableUrl;
use futures::{StreamExt, TryStreamExt};

use crate::definitions::{ColumnDef, Partition, TableDef, TableFormat, is_side_file};
use crate::error::{CatalogError, Result};
use crate::hive_ddl::{COMPRESSION, FILE_EXTENSION};
use crate::partition_filter::value_fits;
use crate::providers::listing_options;

/// How many files the crawler reads to infer columns or a format.
const SAMPLE: usize = 100;

/// Reads a location's files on behalf of DDL.
pub(crate) struct Crawler<'a> {
    pub session: &'a dyn Session,
}

/// What partition discovery found: partitions, and directories it passed over with the reason.
#[derive(Default)]
pub(crate) struct Discovered {
    pub partitions: Vec<Partition>,
    pub skipped: Vec<String>,
}

impl Crawler<'_> {
    /// Names of (up to [`SAMPLE`]) data files under a location, skipping `_SUCCESS`, `.crc` and the like.
    async fn sample_files(&self, location: &str) -> Result<Vec<String>> {
        let url = ListingTableUrl::parse(location)?;
        let store = self.session.runtime_env().object_store(&url)?;
        let files: Vec<_> =
            url.list_all_files(self.session, store.as_ref(), "").await?.take(SAMPLE).try_collect().await?;
        Ok(files
            .iter()
            .filter_map(|f| f.location.filename())
            .filter(|n| !is_side_file(n))
            .map(str::to_ascii_lowercase)
            .collect())
    }

    /// Whether a location holds a Delta table: a `_delta_log/` with at least one object.
    pub async fn has_delta_log(&self, location: &str) -> Result<bool> {
        let url = ListingTableUrl::parse(format!("{}/_delta_log/", location.trim_end_matches('/')))?;
        let store = self.session.runtime_env().object_store(&url)?;
        let first = store.list(Some(url.prefix())).next().await;
        Ok(matches!(first, Some(Ok(_))))
    }

    /// A location's file format, from the extensions of its files. Records the extension (so
    /// `_SUCCESS` and other side files are skipped), codec and format options in `properties`.
    pub async fn infer_format(&self, location: &str, properties: &mut BTreeMap<String, String>) -> Result<TableFormat> {
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
        Err(CatalogError::Invalid(format!(
            "cannot tell the file format under {location} (no .parquet, .json or .csv files); add STORED AS"
        )))
    }

    /// For text tables that read every file (Athena DDL): the codec their files are compressed
    /// with, when they all carry one codec's extension.
    pub async fn infer_compression(&self, table: &mut TableDef) -> Result<()> {
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

    /// The Hive partition keys (`key=value` directories) of a table's first location, as strings.
    pub async fn infer_partition_keys(&self, table: &TableDef) -> Result<Vec<ColumnDef>> {
        let Some(location) = table.locations.first() else { return Ok(Vec::new()) };
        let options = listing_options(table, &Default::default())?;
        let url = ListingTableUrl::parse(location)?;
        let keys = options.infer_partitions(self.session, &url).await?;
        Ok(keys.iter().map(|k| ColumnDef::new(k, &DataType::Utf8)).collect())
    }

    /// The file columns of a table declared without any, read from (up to [`SAMPLE`] of) its
    /// files one by one and merged by name: a column in some files only is kept (it reads as NULL
    /// elsewhere), and one whose type differs between files gets a type that holds both.
    pub async fn infer_columns(&self, table: &TableDef) -> Result<Vec<ColumnDef>> {
        let options = listing_options(table, &Default::default())?;
        let mut columns: Vec<(String, DataType)> = Vec::new();
        for location in &table.locations {
            let url = ListingTableUrl::parse(location)?;
            let store = self.session.runtime_env().object_store(&url)?;
            let files: Vec<_> = url
                .list_all_files(self.session, store.as_ref(), &options.file_extension)
                .await?
                .try_filter(|f| std::future::ready(!f.location.filename().is_some_and(is_side_file)))
                .take(SAMPLE)
                .try_collect()
                .await?;
            for file in files {
                let name = file.location.to_string();
                let schema = options.format.infer_schema(self.session, &store, &[file]).await.map_err(|source| {
                    CatalogError::ReadFile { what: format!("reading the schema of {name}"), source }
                })?;
                for field in schema.fields() {
                    match columns.iter_mut().find(|(n, _)| n == field.name()) {
                        Some((column, data_type)) => {
                            *data_type = wider_type(data_type, field.data_type()).ok_or_else(|| {
                                CatalogError::Invalid(format!(
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

    /// Declared columns take the case the Parquet files give them (`ordercount` declared,
    /// `OrderCount` in the files), so they read: Athena matches names regardless of case. No
    /// files yet, or unreadable ones, leave the declaration as it is.
    pub async fn match_file_case(&self, table: &mut TableDef) {
        let Ok(found) = self.infer_columns(table).await else { return };
        for column in &mut table.columns {
            if let Some(file) =
                found.iter().find(|f| f.name != column.name && f.name.eq_ignore_ascii_case(&column.name))
            {
                column.name = file.name.clone();
            }
        }
    }

    /// The `key=value/...` directories holding a table's files: keys matched to the table's
    /// partition keys in order and case-insensitively, values checked against their types.
    pub async fn discover_partitions(&self, table: &TableDef) -> Result<Discovered> {
        let keys = table
            .partition_keys
            .iter()
            .map(|k| Ok((k.name.clone(), k.arrow_type()?)))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let mut found = BTreeMap::new();
        let mut skipped = BTreeSet::new();
        for location in &table.locations {
            let url = ListingTableUrl::parse(location)?;
            let store = self.session.runtime_env().object_store(&url)?;
            let mut files = store.list(Some(url.prefix()));
            while let Some(file) = files.try_next().await.map_err(datafusion::error::DataFusionError::from)? {
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
                            if !value_fits(&value, data_type) {
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
}

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
    let decimal = |t: &DataType| matches!(t, Decimal128(..) | Decimal256(..));
    Some(match (a, b) {
        _ if a == b => a.clone(),
        (Null, other) | (other, Null) => other.clone(),
        _ if a.is_integer() && b.is_integer() => Int64,
        _ if a.is_numeric() && b.is_numeric() && !decimal(a) && !decimal(b) => Float64,
        _ if (text(a) || text(b)) && primitive(a) && primitive(b) => Utf8,
        _ => return None,
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition_filter::HIVE_NULL_PARTITION;

    #[test]
    fn column_types_widen_across_files() {
        assert_eq!(wider_type(&DataType::Int64, &DataType::Float64), Some(DataType::Float64));
        assert_eq!(wider_type(&DataType::Int32, &DataType::Int64), Some(DataType::Int64));
        assert_eq!(wider_type(&DataType::Null, &DataType::Boolean), Some(DataType::Boolean));
        assert_eq!(wider_type(&DataType::Int64, &DataType::Utf8), Some(DataType::Utf8));
        let list = DataType::new_list(DataType::Int64, true);
        assert_eq!(wider_type(&list, &DataType::Utf8), None);
    }

    #[test]
    fn hive_escapes_are_undone() {
        assert_eq!(unescape("2023-06-18 14%3A00%3A00"), "2023-06-18 14:00:00");
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("a%2Fb%zz"), "a/b%zz");
        let fits = value_fits;
        assert!(
            fits("12", &DataType::Int32) && !fits("x", &DataType::Int32) && fits(HIVE_NULL_PARTITION, &DataType::Int32)
        );
    }
}
