//! `SHOW CREATE TABLE`: a table definition written back as DDL that recreates it.

use datafusion::arrow::datatypes::DataType;

use crate::definitions::{ColumnDef, TableDef, TableFormat};

fn sql_type(column: &ColumnDef) -> String {
    match column.arrow_type() {
        Ok(DataType::Boolean) => "BOOLEAN".into(),
        Ok(DataType::Int8) => "TINYINT".into(),
        Ok(DataType::Int16) => "SMALLINT".into(),
        Ok(DataType::Int32) => "INT".into(),
        Ok(DataType::Int64) => "BIGINT".into(),
        Ok(DataType::Float32) => "REAL".into(),
        Ok(DataType::Float64) => "DOUBLE".into(),
        Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => "VARCHAR".into(),
        Ok(DataType::Date32 | DataType::Date64) => "DATE".into(),
        Ok(DataType::Timestamp(_, _)) => "TIMESTAMP".into(),
        Ok(DataType::Decimal128(p, s) | DataType::Decimal256(p, s)) => format!("DECIMAL({p},{s})"),
        Ok(DataType::Binary | DataType::LargeBinary | DataType::BinaryView) => "BYTEA".into(),
        _ => column.data_type.clone(),
    }
}

/// Simple lowercase names stay bare (DataFusion keeps the quotes of quoted `PARTITIONED BY`
/// names); others are quoted.
fn quote(identifier: &str) -> String {
    let simple = identifier.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && identifier.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if simple { identifier.to_string() } else { format!("\"{}\"", identifier.replace('"', "\"\"")) }
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

pub fn show_create_table(table: &TableDef) -> String {
    if table.format == TableFormat::Delta {
        // As Athena shows a Delta table: its columns and partitions are the log's.
        return format!(
            "CREATE EXTERNAL TABLE {}.{}\nLOCATION {}\nTBLPROPERTIES ('table_type' = 'DELTA')",
            quote(&table.database),
            quote(&table.name),
            literal(table.locations.first().map_or("", String::as_str))
        );
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .chain(&table.partition_keys)
        .map(|c| format!("  {} {}", quote(&c.name), sql_type(c)))
        .collect();
    let mut ddl = format!(
        "CREATE EXTERNAL TABLE {}.{} (\n{}\n)\nSTORED AS {}",
        quote(&table.database),
        quote(&table.name),
        columns.join(",\n"),
        match table.format {
            TableFormat::Parquet => "PARQUET",
            TableFormat::Json => "JSON",
            TableFormat::Csv => "CSV",
            TableFormat::Delta => "PARQUET",
        }
    );
    if !table.partition_keys.is_empty() {
        let keys: Vec<String> = table.partition_keys.iter().map(|k| quote(&k.name)).collect();
        ddl.push_str(&format!("\nPARTITIONED BY ({})", keys.join(", ")));
    }
    let locations: Vec<String> = table.locations.iter().map(|l| literal(l)).collect();
    if locations.len() == 1 {
        ddl.push_str(&format!("\nLOCATION {}", locations[0]));
    } else {
        ddl.push_str(&format!("\nLOCATION ({})", locations.join(", ")));
    }
    if !table.properties.is_empty() {
        let options: Vec<String> =
            table.properties.iter().map(|(k, v)| format!("{} {}", literal(k), literal(v))).collect();
        ddl.push_str(&format!("\nOPTIONS ({})", options.join(", ")));
    }
    ddl
}
