//! Delta's column mapping: under `delta.columnMapping.mode` `name` (or `id`), a column's name in
//! the data files (its physical name, in the field's metadata) differs from its name in the
//! table, so renaming or dropping a column changes only the log. Glaux reads such tables by
//! physical name, writes their files with physical names, and turns mapping on (`name` mode, each
//! column's physical name its current name, as Spark does) the first time a column is renamed or
//! dropped.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake_core::kernel::{
    DataType as KernelType, Metadata, MetadataExt, MetadataValue, Protocol, StructField, StructType,
};
use deltalake_core::table::state::DeltaTableState;

use crate::error::{CatalogError, Result};

pub(crate) const MODE: &str = "delta.columnMapping.mode";
const MAX_ID: &str = "delta.columnMapping.maxColumnId";
const PHYSICAL_NAME: &str = "delta.columnMapping.physicalName";
const ID: &str = "delta.columnMapping.id";

/// Whether the table maps columns (`name` or `id` mode); an unknown mode is an error.
pub(crate) fn is_mapped(configuration: &HashMap<String, String>) -> Result<bool> {
    match configuration.get(MODE).map(|m| m.to_ascii_lowercase()) {
        None => Ok(false),
        Some(mode) if mode == "none" => Ok(false),
        Some(mode) if mode == "name" || mode == "id" => Ok(true),
        Some(mode) => {
            Err(CatalogError::Unsupported(format!("Delta column mapping mode '{mode}' is not one Glaux reads")))
        }
    }
}

/// A column's name in the data files: its physical name under column mapping.
fn physical_name(field: &Field, mapped: bool) -> String {
    match field.metadata().get(PHYSICAL_NAME) {
        Some(name) if mapped => name.trim_matches('"').to_string(),
        _ => field.name().clone(),
    }
}

/// The snapshot's (logical) Arrow schema as its files name the columns. Nested fields renamed
/// by mapping are refused: Glaux maps top-level columns only.
pub(crate) fn physical_schema(logical: &Schema, mapped: bool) -> Result<SchemaRef> {
    let mut fields = Vec::with_capacity(logical.fields().len());
    for field in logical.fields() {
        if mapped && renames_nested(field.data_type()) {
            return Err(CatalogError::Unsupported(format!(
                "column {} has nested fields renamed by Delta column mapping, which Glaux cannot read yet",
                field.name()
            )));
        }
        fields.push(Field::new(physical_name(field, mapped), field.data_type().clone(), field.is_nullable()));
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn renames_nested(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(fields) => {
            fields.iter().any(|f| physical_name(f, true) != *f.name() || renames_nested(f.data_type()))
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => renames_nested(f.data_type()),
        _ => false,
    }
}

/// `(logical, physical)` names of the snapshot's columns.
pub fn physical_names(state: &DeltaTableState) -> Result<Vec<(String, String)>> {
    let logical = state.snapshot().arrow_schema();
    let physical = physical_schema(&logical, is_mapped(state.metadata().configuration())?)?;
    Ok(logical.fields().iter().zip(physical.fields()).map(|(l, p)| (l.name().clone(), p.name().clone())).collect())
}

/// What a column change commits: the new metadata, and the protocol if it must change.
pub(crate) struct SchemaChange {
    pub metadata: Metadata,
    pub protocol: Option<Protocol>,
}

/// The table's schema with `edit` applied to its (top-level) fields, turning column mapping on
/// first if it is off. Partition columns cannot be renamed or dropped.
pub(crate) fn change_schema(
    state: &DeltaTableState,
    edit: impl FnOnce(Vec<StructField>) -> Result<Vec<StructField>>,
) -> Result<SchemaChange> {
    let invalid = |e: &dyn std::fmt::Display| CatalogError::Invalid(format!("changing the table's columns: {e}"));
    let mut metadata = state.metadata().clone();
    let mut protocol = None;
    let mut fields: Vec<StructField> = state.snapshot().schema().fields().cloned().collect();
    if !is_mapped(metadata.configuration())? {
        let mut next = 0i64;
        fields = fields.into_iter().map(|f| with_ids(f, &mut next)).collect();
        metadata = metadata
            .add_config_key(MODE.into(), "name".into())
            .and_then(|m| m.add_config_key(MAX_ID.into(), next.to_string()))
            .map_err(|e| invalid(&e))?;
        protocol = Some(with_column_mapping(state.protocol())?);
    }
    let schema = StructType::try_new(edit(fields)?).map_err(|e| invalid(&e))?;
    let metadata = metadata.with_schema(&schema).map_err(|e| invalid(&e))?;
    Ok(SchemaChange { metadata, protocol })
}

/// The table's schema (under column mapping) with `columns` added: each with the next id and a
/// physical name of its own (`col-<uuid>`), so no file written before has a column of that name.
pub(crate) fn add_fields(state: &DeltaTableState, columns: Vec<StructField>) -> Result<SchemaChange> {
    let invalid = |e: &dyn std::fmt::Display| CatalogError::Invalid(format!("adding columns: {e}"));
    let configuration = state.metadata().configuration();
    let mut next: i64 = configuration.get(MAX_ID).and_then(|v| v.parse().ok()).unwrap_or_default();
    let mut fields: Vec<StructField> = state.snapshot().schema().fields().cloned().collect();
    for column in columns {
        next += 1;
        let physical = format!("col-{}", uuid::Uuid::new_v4());
        fields.push(
            column.add_metadata([(ID, MetadataValue::Number(next)), (PHYSICAL_NAME, MetadataValue::String(physical))]),
        );
    }
    let schema = StructType::try_new(fields).map_err(|e| invalid(&e))?;
    let metadata = state.metadata().clone().add_config_key(MAX_ID.into(), next.to_string()).map_err(|e| invalid(&e))?;
    let metadata = metadata.with_schema(&schema).map_err(|e| invalid(&e))?;
    Ok(SchemaChange { metadata, protocol: None })
}

/// `protocol` with column mapping: reader version 2 and writer version 5 at least, or the
/// `columnMapping` feature where the table lists features (reader 3, writer 7).
fn with_column_mapping(protocol: &Protocol) -> Result<Protocol> {
    let invalid = |e: &dyn std::fmt::Display| CatalogError::Invalid(format!("upgrading the table's protocol: {e}"));
    let mut json = serde_json::to_value(protocol).map_err(|e| invalid(&e))?;
    for (version, features, legacy) in
        [("minReaderVersion", "readerFeatures", 2), ("minWriterVersion", "writerFeatures", 5)]
    {
        let current = json[version].as_i64().unwrap_or(1);
        if current >= if legacy == 2 { 3 } else { 7 } {
            let listed = json[features].as_array().cloned().unwrap_or_default();
            if !listed.iter().any(|f| f == "columnMapping") {
                json[features] =
                    serde_json::Value::Array(listed.into_iter().chain([serde_json::json!("columnMapping")]).collect());
            }
        } else {
            json[version] = serde_json::json!(current.max(legacy));
        }
    }
    serde_json::from_value(json).map_err(|e| invalid(&e))
}

/// `field` (and the fields nested in it) with a column mapping id and its name as physical name.
fn with_ids(field: StructField, next: &mut i64) -> StructField {
    *next += 1;
    let id = *next;
    let name = field.name().clone();
    let data_type = match field.data_type() {
        KernelType::Struct(inner) => {
            let nested: Vec<StructField> = inner.fields().cloned().map(|f| with_ids(f, next)).collect();
            StructType::try_new(nested).map(|s| KernelType::Struct(Box::new(s))).unwrap_or(field.data_type().clone())
        }
        other => other.clone(),
    };
    let nullable = field.is_nullable();
    let metadata = field.metadata().clone();
    StructField::new(name.clone(), data_type, nullable)
        .with_metadata(metadata)
        .add_metadata([(ID, MetadataValue::Number(id)), (PHYSICAL_NAME, MetadataValue::String(name))])
}
