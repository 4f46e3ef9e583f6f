//! The catalog actions of Athena's API: `ListDataCatalogs`, `GetDataCatalog`, `ListDatabases`,
//! `GetDatabase`, `ListTableMetadata`, `GetTableMetadata`, answered from Glaux's catalog as the
//! signing user may see it (the same view their grants give every other door). Glaux has one data
//! catalog, named `AwsDataCatalog` as Athena's default is (`glaux` is accepted too).

use arrow::datatypes::DataType;
use glaux_catalog::{ColumnDef, TableDef, TableFormat};
use serde_json::{Value, json};

use super::ApiError;
use crate::client_session::ClientSession;
use crate::engine::QueryEngine;

pub(super) const CATALOG: &str = "AwsDataCatalog";
/// Items per page at most (Athena's limit for these actions).
const MAX_ITEMS: usize = 50;

pub(super) fn is_catalog(name: &str) -> bool {
    name.eq_ignore_ascii_case(CATALOG) || name.eq_ignore_ascii_case("glaux")
}

fn catalog_of(request: &Value, field: &str) -> Result<(), ApiError> {
    let name = request.get(field).and_then(Value::as_str).unwrap_or(CATALOG);
    if is_catalog(name) { Ok(()) } else { Err(metadata_error(format!("Catalog {name} is not found"))) }
}

fn metadata_error(message: String) -> ApiError {
    ApiError::new(http::StatusCode::BAD_REQUEST, "MetadataException", message)
}

fn required<'a>(request: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    request
        .get(field)
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::invalid(format!("{field} is required")))
}

/// A page of `items` from `NextToken` (a position), at most `MaxResults`.
fn page(request: &Value, items: Vec<Value>, field: &str) -> Result<Value, ApiError> {
    let from = match request.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| ApiError::invalid("NextToken is not a token Glaux gave"))?,
    };
    let size = match request.get("MaxResults").and_then(Value::as_u64) {
        None => MAX_ITEMS,
        Some(n) if (1..=MAX_ITEMS as u64).contains(&n) => n as usize,
        Some(_) => return Err(ApiError::invalid(format!("MaxResults must be between 1 and {MAX_ITEMS}"))),
    };
    let total = items.len();
    let mut answer = json!({ field: items.into_iter().skip(from).take(size).collect::<Vec<_>>() });
    if from + size < total {
        answer["NextToken"] = json!((from + size).to_string());
    }
    Ok(answer)
}

pub(super) fn list_data_catalogs(request: &Value) -> Result<Value, ApiError> {
    page(request, vec![json!({ "CatalogName": CATALOG, "Type": "GLUE" })], "DataCatalogsSummary")
}

pub(super) fn get_data_catalog(request: &Value) -> Result<Value, ApiError> {
    catalog_of(request, "Name")?;
    Ok(json!({ "DataCatalog": {
        "Name": CATALOG, "Type": "GLUE", "Description": "Glaux's catalog", "Parameters": {}
    } }))
}

fn database(name: &str) -> Value {
    json!({ "Name": name, "Description": "", "Parameters": {} })
}

pub(super) fn list_databases(
    engine: &QueryEngine,
    session: &ClientSession,
    request: &Value,
) -> Result<Value, ApiError> {
    catalog_of(request, "CatalogName")?;
    let names = engine.visible_databases(session)?;
    page(request, names.iter().map(|n| database(n)).collect(), "DatabaseList")
}

pub(super) fn get_database(engine: &QueryEngine, session: &ClientSession, request: &Value) -> Result<Value, ApiError> {
    let name = visible_database(engine, session, request)?;
    Ok(json!({ "Database": database(name) }))
}

/// The request's `CatalogName` and `DatabaseName`, if the user may see that database.
fn visible_database<'a>(
    engine: &QueryEngine,
    session: &ClientSession,
    request: &'a Value,
) -> Result<&'a str, ApiError> {
    catalog_of(request, "CatalogName")?;
    let name = required(request, "DatabaseName")?;
    if !engine.visible_databases(session)?.iter().any(|d| d == name) {
        return Err(metadata_error(format!("Database {name} is not found")));
    }
    Ok(name)
}

/// A Glue/Hive type name, as Athena's metadata shows columns.
fn hive_type(column: &ColumnDef) -> String {
    fn name(data_type: &DataType) -> String {
        match data_type {
            DataType::Boolean => "boolean".into(),
            DataType::Int8 => "tinyint".into(),
            DataType::Int16 => "smallint".into(),
            DataType::Int32 => "int".into(),
            DataType::Int64 => "bigint".into(),
            DataType::Float32 => "float".into(),
            DataType::Float64 => "double".into(),
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
            DataType::Date32 | DataType::Date64 => "date".into(),
            DataType::Timestamp(..) => "timestamp".into(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
            DataType::List(f) | DataType::LargeList(f) => format!("array<{}>", name(f.data_type())),
            DataType::Map(entries, _) => match entries.data_type() {
                DataType::Struct(kv) if kv.len() == 2 => {
                    format!("map<{},{}>", name(kv[0].data_type()), name(kv[1].data_type()))
                }
                _ => "map<string,string>".into(),
            },
            DataType::Struct(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|f| format!("{}:{}", f.name(), name(f.data_type()))).collect();
                format!("struct<{}>", parts.join(","))
            }
            _ => "string".into(),
        }
    }
    column.arrow_type().map_or_else(|_| "string".into(), |t| name(&t))
}

fn table_metadata(table: &TableDef) -> Value {
    let columns = |defs: &[ColumnDef]| -> Vec<Value> {
        defs.iter().map(|c| json!({ "Name": c.name, "Type": hive_type(c) })).collect()
    };
    let mut parameters = serde_json::Map::new();
    for (key, value) in &table.properties {
        parameters.insert(key.clone(), json!(value));
    }
    let classification = match table.format {
        TableFormat::Delta => "delta".to_string(),
        ref other => format!("{other:?}").to_lowercase(),
    };
    parameters.entry("classification").or_insert(json!(classification));
    if let Some(location) = table.locations.first() {
        parameters.insert("location".into(), json!(location));
    }
    json!({
        "Name": table.name,
        "TableType": "EXTERNAL_TABLE",
        "Columns": columns(&table.columns),
        "PartitionKeys": columns(&table.partition_keys),
        "Parameters": parameters,
    })
}

pub(super) fn list_table_metadata(
    engine: &QueryEngine,
    session: &ClientSession,
    request: &Value,
) -> Result<Value, ApiError> {
    let database = visible_database(engine, session, request)?;
    // `Expression`: a regular expression in Athena; here `*` and `.*` match any run of characters.
    let pattern = request.get("Expression").and_then(Value::as_str);
    let tables = engine.visible_tables(session, database)?;
    let listed = tables.iter().filter(|t| pattern.is_none_or(|p| matches(p, &t.name))).map(table_metadata).collect();
    page(request, listed, "TableMetadataList")
}

pub(super) fn get_table_metadata(
    engine: &QueryEngine,
    session: &ClientSession,
    request: &Value,
) -> Result<Value, ApiError> {
    catalog_of(request, "CatalogName")?;
    let (database, name) = (required(request, "DatabaseName")?, required(request, "TableName")?);
    let tables = engine.visible_tables(session, database)?;
    let table = tables
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| metadata_error(format!("Table {name} not found in database {database}")))?;
    Ok(json!({ "TableMetadata": table_metadata(table) }))
}

/// Whether `name` matches `pattern`, where `*` or `.*` is any run of characters and everything
/// else is itself (case-insensitive, as Athena's names are).
fn matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_lowercase().replace(".*", "*");
    let name = name.to_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if parts.len() == 1 {
        return name == pattern;
    }
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn expressions_match_as_globs() {
        assert!(matches("events", "EVENTS"));
        assert!(matches("ev*", "events"));
        assert!(matches(".*nts", "events"));
        assert!(matches("e*e*s", "events"));
        assert!(!matches("e*x*s", "events"));
        assert!(!matches("events*s", "events"));
        assert!(matches("*", ""));
    }
}
