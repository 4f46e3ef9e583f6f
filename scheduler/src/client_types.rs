//! The Arrow types clients are sent, whichever door they use (Flight SQL, PostgreSQL).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

/// The schema clients see: dictionary-encoded columns arrive as their value type, and string and
/// binary views (what DataFusion reads Parquet text as) as plain strings and binaries, which every
/// Arrow version and driver reads.
pub(crate) fn client_schema(schema: &Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match client_type(f.data_type()) {
            Some(plain) => f.as_ref().clone().with_data_type(plain),
            None => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// The type a client gets instead of `data_type`, if it gets another.
pub(crate) fn client_type(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Dictionary(_, value) => Some(client_type(value).unwrap_or_else(|| value.as_ref().clone())),
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    }
}

/// `batch` in the client's types (see [`client_schema`]).
pub(crate) fn to_client_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref().fields().iter().zip(schema.fields()).all(|(a, b)| a.data_type() == b.data_type()) {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| arrow::compute::cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}
