//! Writing generated tables as Snappy-compressed Parquet, one directory per table.

use std::path::Path;

use arrow::array::RecordBatchReader;
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("encoding {path}: {source}")]
    Parquet { path: String, source: parquet::errors::ParquetError },
    #[error("generating {table}: {source}")]
    Arrow { table: String, source: ArrowError },
    #[error("scale factor {0}: {1}")]
    Scale(f64, String),
}

/// Writes one generated part of a table to `<dir>/<table>/part-<n>.parquet`.
pub fn write(dir: &Path, table: &str, part: i32, batches: impl RecordBatchReader) -> Result<(), GenerateError> {
    let table_dir = dir.join(table);
    let path = table_dir.join(format!("part-{part}.parquet"));
    let shown = path.display().to_string();
    std::fs::create_dir_all(&table_dir).map_err(|source| GenerateError::Io { path: shown.clone(), source })?;
    let file = std::fs::File::create(&path).map_err(|source| GenerateError::Io { path: shown.clone(), source })?;
    let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batches.schema(), Some(properties))
        .map_err(|source| GenerateError::Parquet { path: shown.clone(), source })?;
    for batch in batches {
        let batch = batch.map_err(|source| GenerateError::Arrow { table: table.to_string(), source })?;
        writer.write(&batch).map_err(|source| GenerateError::Parquet { path: shown.clone(), source })?;
    }
    writer.close().map_err(|source| GenerateError::Parquet { path: shown, source })?;
    Ok(())
}
