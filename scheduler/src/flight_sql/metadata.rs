//! Catalog metadata for Flight SQL: catalogs, schemas, tables, table types, server and SQL info,
//! the SQL types (`GetXdbcTypeInfo`), and keys (none: lake tables declare no keys, but drivers ask).

use std::sync::LazyLock;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, Nullable, Searchable, SqlInfo,
    SqlNullOrdering, SqlOuterJoinsSupportLevel, SqlSupportedCaseSensitivity, SqlSupportedTransaction,
    SqlSupportedUnions, SqlSupportsConvert, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::catalog::CatalogProviderList;
use datafusion::datasource::TableType;
use tonic::Status;

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building metadata: {e}"))
}

pub fn catalogs(ctx: &dyn CatalogProviderList, query: CommandGetCatalogs) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    let mut names = ctx.catalog_names();
    names.sort();
    for name in names {
        builder.append(name);
    }
    builder.build().map_err(arrow_status)
}

pub fn schemas(ctx: &dyn CatalogProviderList, query: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else { continue };
        for schema_name in catalog.schema_names() {
            builder.append(&catalog_name, schema_name);
        }
    }
    builder.build().map_err(arrow_status)
}

pub async fn tables(ctx: &dyn CatalogProviderList, query: CommandGetTables) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else { continue };
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else { continue };
            for table_name in schema.table_names() {
                let table = schema
                    .table(&table_name)
                    .await
                    .map_err(|e| Status::internal(format!("reading table {table_name}: {e}")))?;
                let Some(table) = table else { continue };
                builder
                    .append(
                        &catalog_name,
                        &schema_name,
                        &table_name,
                        table_type_name(table.table_type()),
                        // The types its columns reach clients as.
                        &crate::client_types::client_schema(table.schema().as_ref()),
                    )
                    .map_err(arrow_status)?;
            }
        }
    }
    builder.build().map_err(arrow_status)
}

fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

pub fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for table_type in ["LOCAL TEMPORARY", "TABLE", "VIEW"] {
        builder.append(table_type);
    }
    builder.build().map_err(arrow_status)
}

/// What Glaux tells drivers about itself (`GetSqlInfo`).
pub static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Glaux");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow format version (Schema.fbs MetadataVersion V5).
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, &["version", "current_database", "current_schema"][..]);
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    let unions = (1 << SqlSupportedUnions::SqlUnion as i32) | (1 << SqlSupportedUnions::SqlUnionAll as i32);
    b.append(SqlInfo::SqlSupportedUnions, unions);
    b.append(SqlInfo::SqlMaxColumnsInGroupBy, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInOrderBy, 0i64);
    b.append(SqlInfo::SqlMaxColumnsInSelect, 0i64);
    b.append(SqlInfo::SqlMaxStatementLength, 0i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 0i64);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    // CAST between the numeric, text, date and time types.
    let convertible = [
        SqlSupportsConvert::SqlConvertBigint,
        SqlSupportsConvert::SqlConvertBit,
        SqlSupportsConvert::SqlConvertChar,
        SqlSupportsConvert::SqlConvertDate,
        SqlSupportsConvert::SqlConvertDecimal,
        SqlSupportsConvert::SqlConvertFloat,
        SqlSupportsConvert::SqlConvertInteger,
        SqlSupportsConvert::SqlConvertNumeric,
        SqlSupportsConvert::SqlConvertReal,
        SqlSupportsConvert::SqlConvertSmallint,
        SqlSupportsConvert::SqlConvertTime,
        SqlSupportsConvert::SqlConvertTimestamp,
        SqlSupportsConvert::SqlConvertTinyint,
        SqlSupportsConvert::SqlConvertVarchar,
    ]
    .map(|c| c as i32);
    let conversions: std::collections::BTreeMap<i32, Vec<i32>> =
        convertible.iter().map(|&from| (from, convertible.to_vec())).collect();
    b.append(SqlInfo::SqlSupportsConvert, conversions);
    // Building fails only for values of unknown types, which the lines above do not have.
    b.build().unwrap_or_else(|_| SqlInfoDataBuilder::new().build().expect("empty SqlInfoData"))
});

/// Words Glaux reserves beyond SQL-92's (what JDBC's `getSQLKeywords` reports).
const KEYWORDS: &[&str] = &[
    "ANALYZE",
    "ARRAY",
    "DESCRIBE",
    "EXPLAIN",
    "EXTERNAL",
    "FORMAT",
    "ILIKE",
    "LIMIT",
    "LOCATION",
    "MAP",
    "MSCK",
    "OFFSET",
    "PARTITIONED",
    "PARTITIONS",
    "QUALIFY",
    "REPAIR",
    "ROW",
    "SHOW",
    "STORED",
    "STRUCT",
    "TBLPROPERTIES",
    "UNNEST",
];
const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs", "acos", "asin", "atan", "atan2", "cbrt", "ceil", "cos", "degrees", "exp", "floor", "ln", "log", "log10",
    "log2", "mod", "pi", "power", "radians", "random", "round", "sign", "sin", "sqrt", "tan", "trunc",
];
const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "btrim",
    "chr",
    "concat",
    "concat_ws",
    "initcap",
    "left",
    "length",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "regexp_like",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "translate",
    "trim",
    "upper",
];
const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "current_timestamp",
    "date_bin",
    "date_part",
    "date_trunc",
    "extract",
    "from_unixtime",
    "now",
    "to_timestamp",
    "to_unixtime",
];

/// The SQL types Glaux's tables and expressions have (`GetXdbcTypeInfo`).
pub static XDBC_TYPES: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    let mut b = XdbcTypeInfoDataBuilder::new();
    let quoted = |prefix: &str| (Some(prefix.to_string()), Some("'".to_string()));
    // Name, type, column size, literal prefix and suffix, fixed precision and scale, CREATE parameters.
    type Row<'a> = (&'a str, XdbcDataType, Option<i32>, (Option<String>, Option<String>), bool, Option<Vec<&'a str>>);
    let types: [Row; 13] = [
        ("boolean", XdbcDataType::XdbcBit, Some(1), (None, None), false, None),
        ("tinyint", XdbcDataType::XdbcTinyint, Some(3), (None, None), false, None),
        ("smallint", XdbcDataType::XdbcSmallint, Some(5), (None, None), false, None),
        ("integer", XdbcDataType::XdbcInteger, Some(10), (None, None), false, None),
        ("bigint", XdbcDataType::XdbcBigint, Some(19), (None, None), false, None),
        ("real", XdbcDataType::XdbcReal, Some(7), (None, None), false, None),
        ("double", XdbcDataType::XdbcDouble, Some(15), (None, None), false, None),
        ("decimal", XdbcDataType::XdbcDecimal, Some(38), (None, None), true, Some(vec!["precision", "scale"])),
        ("varchar", XdbcDataType::XdbcVarchar, None, quoted("'"), false, Some(vec!["length"])),
        ("varbinary", XdbcDataType::XdbcVarbinary, None, quoted("X'"), false, None),
        ("date", XdbcDataType::XdbcDate, Some(10), quoted("DATE '"), false, None),
        ("time", XdbcDataType::XdbcTime, Some(15), quoted("TIME '"), false, None),
        ("timestamp", XdbcDataType::XdbcTimestamp, Some(26), quoted("TIMESTAMP '"), false, None),
    ];
    for (name, data_type, column_size, (literal_prefix, literal_suffix), fixed_prec_scale, create_params) in types {
        let numeric = column_size.is_some() && literal_prefix.is_none() && data_type != XdbcDataType::XdbcBit;
        let datetime = match data_type {
            // ODBC's SQL_CODE_DATE is 1, which Flight SQL names "year".
            XdbcDataType::XdbcDate => Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
            XdbcDataType::XdbcTime => Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
            XdbcDataType::XdbcTimestamp => Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
            _ => None,
        };
        b.append(XdbcTypeInfo {
            type_name: name.to_string(),
            data_type,
            column_size,
            literal_prefix,
            literal_suffix,
            create_params: create_params.map(|p| p.into_iter().map(String::from).collect()),
            nullable: Nullable::NullabilityNullable,
            case_sensitive: data_type == XdbcDataType::XdbcVarchar,
            searchable: Searchable::Full,
            unsigned_attribute: numeric.then_some(false),
            fixed_prec_scale,
            auto_increment: numeric.then_some(false),
            local_type_name: Some(name.to_string()),
            minimum_scale: (data_type == XdbcDataType::XdbcDecimal).then_some(0),
            maximum_scale: (data_type == XdbcDataType::XdbcDecimal).then_some(38),
            sql_data_type: if datetime.is_some() { XdbcDataType::XdbcDatetime } else { data_type },
            datetime_subcode: datetime,
            num_prec_radix: numeric.then_some(10),
            interval_precision: None,
        });
    }
    // Building fails only on inconsistent rows, which the table above does not have.
    b.build().unwrap_or_else(|_| XdbcTypeInfoDataBuilder::new().build().expect("empty XdbcTypeInfoData"))
});

/// The columns of `GetPrimaryKeys` (Flight SQL's `CommandGetPrimaryKeys`).
pub fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The columns of `GetExportedKeys`, `GetImportedKeys` and `GetCrossReference`.
pub fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
