//! `CREATE TABLE [IF NOT EXISTS] db.t [WITH (...)] AS SELECT ... [WITH [NO] DATA]`, Athena's CTAS.
//!
//! The SELECT runs on the cluster with every partition of its last executor stage writing its own
//! files (`TableWriteExec`) into the statement's staging location; the scheduler then moves the
//! reported files into the table's location and registers the table with its partitions in one
//! catalog step (`write/`). A failed or cancelled statement leaves no table and no file.
//!
//! Properties (Athena's): `format` ('PARQUET' by default, 'JSON', 'TEXTFILE' or 'CSV'),
//! `write_compression` (SNAPPY for Parquet by default, ZSTD, GZIP, LZ4, NONE), `external_location`
//! (default `<first warehouse root>/<db>/<table>/`; it must be empty), `partitioned_by`
//! (`ARRAY['col', ...]`, the last columns of the SELECT), `field_delimiter` (one character; TEXTFILE
//! is `\001` by default, CSV `,`).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::TableReference;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use glaux_catalog::{COMPRESSION, ColumnDef, FILE_EXTENSION, Privilege, TableDef, TableFormat};
use glaux_proto::{QueryId, WriteCompression, WriteFormat, WriteSpec};

use super::bucketing::Bucketing;
use super::{Context, Family};
use crate::error::{ErrorKind, SchedulerError};
use crate::query::{ProgressSlot, QueryResult};
use crate::write::StagedWrite;

/// A CTAS as written, before its query is planned.
#[derive(Debug, PartialEq)]
pub(super) struct Parsed {
    pub name: Vec<String>,
    pub if_not_exists: bool,
    pub properties: Vec<(String, Value)>,
    pub query: String,
    pub with_data: bool,
}

/// A property's value.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Text(String),
    Number(String),
    Array(Vec<String>),
}

pub(crate) struct CreateTableAs {
    name: Vec<String>,
    if_not_exists: bool,
    with_data: bool,
    location: Option<String>,
    format: WriteFormat,
    compression: WriteCompression,
    partitioned_by: Vec<String>,
    bucketing: Option<Bucketing>,
    /// A Delta table (`table_type = 'DELTA'`).
    delta: bool,
    plan: LogicalPlan,
}

pub(super) fn refused(message: impl Into<String>) -> SchedulerError {
    SchedulerError::refused(ErrorKind::Parse, message.into())
}

pub(super) fn unsupported(message: impl Into<String>) -> SchedulerError {
    SchedulerError::refused(ErrorKind::Unsupported, message.into())
}

/// Reads `sql` as a CTAS: `None` if it is not one (`CREATE TABLE name ... AS ...`).
pub(super) fn parse(sql: &str) -> Option<Result<Parsed, SchedulerError>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location().ok()?;
    let tokens: Vec<TokenWithSpan> =
        tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon)).collect();
    let word = |i: usize| match tokens.get(i).map(|t| &t.token) {
        Some(Token::Word(w)) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    if word(0) != "CREATE" || word(1) != "TABLE" {
        return None;
    }
    let mut i = 2;
    let if_not_exists = word(i) == "IF" && word(i + 1) == "NOT" && word(i + 2) == "EXISTS";
    if if_not_exists {
        i += 3;
    }
    let mut name = Vec::new();
    loop {
        match tokens.get(i).map(|t| &t.token) {
            Some(Token::Word(w)) if w.quote_style.is_some() => name.push(w.value.clone()),
            Some(Token::Word(w)) => name.push(w.value.to_ascii_lowercase()),
            _ => return None,
        }
        i += 1;
        if tokens.get(i).map(|t| &t.token) != Some(&Token::Period) {
            break;
        }
        i += 1;
    }
    let mut properties = Vec::new();
    if word(i) == "WITH" && tokens.get(i + 1).map(|t| &t.token) == Some(&Token::LParen) {
        i += 2;
        match read_properties(&tokens, &mut i) {
            Ok(read) => properties = read,
            Err(e) => return Some(Err(e)),
        }
    }
    if word(i) != "AS" {
        // `CREATE TABLE t (columns)` and the like are not CTAS.
        return None;
    }
    let start = tokens.get(i + 1)?;
    let mut end = tokens.len();
    let with_data = match (word(end.saturating_sub(3)), word(end.saturating_sub(2)), word(end.saturating_sub(1))) {
        (w, n, d) if w == "WITH" && n == "NO" && d == "DATA" => {
            end -= 3;
            false
        }
        (_, w, d) if w == "WITH" && d == "DATA" => {
            end -= 2;
            true
        }
        _ => true,
    };
    let from = byte_offset(sql, start.span.start.line, start.span.start.column);
    let to = match tokens.get(end) {
        Some(t) => byte_offset(sql, t.span.start.line, t.span.start.column),
        None => sql.len(),
    };
    let query = sql.get(from..to).unwrap_or_default().trim().trim_end_matches(';').trim().to_string();
    if query.is_empty() {
        return Some(Err(refused("CREATE TABLE ... AS needs a query after AS")));
    }
    Some(Ok(Parsed { name, if_not_exists, properties, query, with_data }))
}

/// `key = value, ...)` after `WITH (`.
pub(super) fn read_properties(tokens: &[TokenWithSpan], i: &mut usize) -> Result<Vec<(String, Value)>, SchedulerError> {
    let token = |i: usize| tokens.get(i).map(|t| &t.token);
    let mut properties = Vec::new();
    loop {
        let key = match token(*i) {
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            other => {
                return Err(refused(format!("expected a table property name in WITH (...), found {}", shown(other))));
            }
        };
        if token(*i + 1) != Some(&Token::Eq) {
            return Err(refused(format!("expected = after table property {key}")));
        }
        *i += 2;
        let value = match token(*i) {
            Some(Token::SingleQuotedString(s)) => Value::Text(s.clone()),
            Some(Token::Number(n, _)) => Value::Number(n.clone()),
            Some(Token::Word(w))
                if w.value.eq_ignore_ascii_case("ARRAY") && token(*i + 1) == Some(&Token::LBracket) =>
            {
                *i += 2;
                let mut items = Vec::new();
                while token(*i) != Some(&Token::RBracket) {
                    match token(*i) {
                        Some(Token::SingleQuotedString(s)) => items.push(s.clone()),
                        other => {
                            return Err(refused(format!(
                                "expected a string in ARRAY[...] of {key}, found {}",
                                shown(other)
                            )));
                        }
                    }
                    *i += 1;
                    match token(*i) {
                        Some(Token::Comma) => *i += 1,
                        Some(Token::RBracket) => {}
                        other => {
                            return Err(refused(format!(
                                "expected , or ] in ARRAY[...] of {key}, found {}",
                                shown(other)
                            )));
                        }
                    }
                }
                Value::Array(items)
            }
            other => return Err(refused(format!("expected a value for table property {key}, found {}", shown(other)))),
        };
        properties.push((key, value));
        *i += 1;
        match token(*i) {
            Some(Token::Comma) => *i += 1,
            Some(Token::RParen) => {
                *i += 1;
                return Ok(properties);
            }
            other => return Err(refused(format!("expected , or ) after a table property, found {}", shown(other)))),
        }
    }
}

fn shown(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end of the statement".into(), |t| format!("'{t}'"))
}

/// The byte offset of a tokenizer location (1-based line and character column).
pub(super) fn byte_offset(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (n, text) in sql.split_inclusive('\n').enumerate() {
        if n as u64 + 1 == line {
            return offset + text.char_indices().nth(column.saturating_sub(1) as usize).map_or(text.len(), |(b, _)| b);
        }
        offset += text.len();
    }
    sql.len()
}

/// The write properties CTAS and UNLOAD share, checked against the planned query.
pub(super) struct WriteOptions {
    pub format: WriteFormat,
    pub compression: WriteCompression,
    /// `external_location` (CTAS only).
    pub location: Option<String>,
    pub partitioned_by: Vec<String>,
    /// `bucketed_by` and `bucket_count` (CTAS only).
    pub bucketing: Option<Bucketing>,
    /// `table_type = 'DELTA'` (CTAS only).
    pub delta: bool,
}

impl WriteOptions {
    /// From `properties`; the codec is `compression_key` (`write_compression` for CTAS,
    /// `compression` for UNLOAD), and `statement` names the statement in errors.
    pub(super) fn read(
        properties: Vec<(String, Value)>,
        plan: &LogicalPlan,
        compression_key: &str,
        statement: &str,
    ) -> Result<Self, SchedulerError> {
        let (mut format, mut compression, mut location, mut partitioned_by, mut delimiter) =
            (None, None, None, Vec::new(), None);
        let (mut bucketed_by, mut bucket_count, mut delta) = (None, None, false);
        for (key, value) in properties {
            match (key.as_str(), value) {
                ("format", Value::Text(f)) => format = Some(f.to_ascii_uppercase()),
                (key, Value::Text(c)) if key == compression_key => {
                    compression = Some(WriteCompression::parse(&c).ok_or_else(|| {
                        unsupported(format!("{key} '{c}' is not one of SNAPPY, ZSTD, GZIP, LZ4, NONE"))
                    })?)
                }
                ("external_location" | "location", Value::Text(l)) if statement == "CREATE TABLE AS" => {
                    location = Some(if l.ends_with('/') { l } else { format!("{l}/") })
                }
                ("partitioned_by", Value::Array(columns)) => {
                    partitioned_by = columns.iter().map(|c| c.to_ascii_lowercase()).collect()
                }
                ("field_delimiter", Value::Text(d)) => delimiter = Some(d),
                ("table_type", Value::Text(kind)) if statement == "CREATE TABLE AS" => {
                    let properties = [(glaux_catalog::TABLE_TYPE.to_string(), kind)].into_iter().collect();
                    delta = glaux_catalog::is_delta(&properties)?;
                }
                // Athena's name for it on transactional tables.
                ("partitioning", Value::Array(columns)) if statement == "CREATE TABLE AS" => {
                    partitioned_by = columns.iter().map(|c| c.to_ascii_lowercase()).collect()
                }
                ("bucketed_by", value) if statement == "CREATE TABLE AS" => bucketed_by = Some(value),
                ("bucket_count", value) if statement == "CREATE TABLE AS" => bucket_count = Some(value),
                (key, value) => {
                    return Err(unsupported(format!("property {key} = {value:?} is not supported in {statement}")));
                }
            }
        }
        let delimiter = |default: u8| match delimiter.as_deref().map(str::as_bytes) {
            None => Ok(default),
            Some([byte]) => Ok(*byte),
            Some(_) => Err(unsupported("field_delimiter must be one character")),
        };
        if delta && (format.as_deref().is_some_and(|f| f != "PARQUET") || bucketed_by.is_some()) {
            return Err(unsupported("a Delta table is Parquet files, not bucketed: drop format and bucketed_by"));
        }
        let format = match format.as_deref() {
            None | Some("PARQUET") => WriteFormat::Parquet,
            Some("JSON") => WriteFormat::Json,
            Some("TEXTFILE") => WriteFormat::Text { delimiter: delimiter(1)? },
            Some("CSV") => WriteFormat::Text { delimiter: delimiter(b',')? },
            Some(other) => {
                return Err(unsupported(format!("format '{other}' is not one of PARQUET, JSON, TEXTFILE, CSV")));
            }
        };
        let compression = compression.unwrap_or(match format {
            WriteFormat::Parquet => WriteCompression::Snappy,
            _ => WriteCompression::Gzip,
        });
        let spec = WriteSpec {
            staging: String::new(),
            format: format.clone(),
            compression,
            partition_columns: Vec::new(),
            target_file_bytes: 0,
        };
        spec.check().map_err(|e| unsupported(e.to_string()))?;
        let fields: Vec<String> = plan.schema().fields().iter().map(|f| f.name().clone()).collect();
        for column in &partitioned_by {
            if !fields.contains(column) {
                return Err(SchedulerError::refused(
                    ErrorKind::UnknownObject,
                    format!("partition column {column} is not a column of the query ({})", fields.join(", ")),
                ));
            }
        }
        let last = &fields[fields.len().saturating_sub(partitioned_by.len())..];
        // A Delta table's partition columns may be anywhere in the query (Athena's rule for
        // its transactional tables): its CTAS moves them last.
        let misplaced = last != partitioned_by.as_slice() && !delta;
        if !partitioned_by.is_empty() && (misplaced || fields.len() == partitioned_by.len()) {
            return Err(unsupported(format!(
                "partition columns {} must be the last columns of the query, in that order, after at least one other",
                partitioned_by.join(", ")
            )));
        }
        let bucketing = Bucketing::read(bucketed_by, bucket_count)?;
        if let Some(bucketing) = &bucketing {
            bucketing.check(plan, &partitioned_by)?;
        }
        Ok(Self { format, compression, location, partitioned_by, bucketing, delta })
    }
}

/// `plan` with the columns `keys` last, in that order.
fn partition_columns_last(plan: LogicalPlan, keys: &[String]) -> Result<LogicalPlan, SchedulerError> {
    let columns = plan.schema().columns();
    let (others, mut last): (Vec<_>, Vec<_>) = columns.into_iter().partition(|c| !keys.contains(&c.name));
    last.sort_by_key(|c| keys.iter().position(|k| *k == c.name));
    let ordered: Vec<Expr> = others.into_iter().chain(last).map(Expr::Column).collect();
    LogicalPlanBuilder::from(plan).project(ordered).and_then(LogicalPlanBuilder::build).map_err(SchedulerError::plan)
}

impl CreateTableAs {
    /// Checks the properties against the planned query.
    pub(super) fn try_new(parsed: Parsed, plan: LogicalPlan) -> Result<Self, SchedulerError> {
        let options = WriteOptions::read(parsed.properties, &plan, "write_compression", "CREATE TABLE AS")?;
        let WriteOptions { format, compression, location, partitioned_by, bucketing, delta } = options;
        let reorder = delta && !partitioned_by.is_empty();
        let plan = if reorder { partition_columns_last(plan, &partitioned_by)? } else { plan };
        Ok(Self {
            bucketing,
            delta,
            name: parsed.name,
            if_not_exists: parsed.if_not_exists,
            with_data: parsed.with_data,
            location,
            format,
            compression,
            partitioned_by,
            plan,
        })
    }

    /// The new table, `db.t`, unqualified names in `database`.
    pub fn table(&self, database: &str) -> String {
        match self.name.as_slice() {
            [.., database, name] => format!("{database}.{name}"),
            names => format!("{database}.{}", names.join(".")),
        }
    }

    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    fn reference(&self) -> TableReference {
        match self.name.as_slice() {
            [catalog, database, name] => TableReference::full(catalog.as_str(), database.as_str(), name.as_str()),
            [database, name] => TableReference::partial(database.as_str(), name.as_str()),
            names => TableReference::bare(names.join(".")),
        }
    }

    /// The table as the catalog will hold it.
    fn definition(&self, database: String, name: String, location: String) -> TableDef {
        let schema = self.plan.schema();
        let column = |f: &arrow::datatypes::Field| ColumnDef::new(f.name(), f.data_type());
        let (table_format, properties) = match (&self.format, self.compression) {
            (WriteFormat::Parquet, _) => (TableFormat::Parquet, Vec::new()),
            (format, compression) => {
                let mut properties = vec![(FILE_EXTENSION.to_string(), String::new())];
                let codec = match compression {
                    WriteCompression::Gzip => Some("gzip"),
                    WriteCompression::Zstd => Some("zstd"),
                    _ => None,
                };
                if let Some(codec) = codec {
                    properties.push((COMPRESSION.to_string(), codec.to_string()));
                }
                match format {
                    WriteFormat::Text { delimiter } => {
                        properties.push(("format.delimiter".into(), char::from(*delimiter).to_string()));
                        (TableFormat::Csv, properties)
                    }
                    _ => (TableFormat::Json, properties),
                }
            }
        };
        TableDef {
            database,
            name,
            locations: vec![location],
            format: table_format,
            columns: schema
                .fields()
                .iter()
                .filter(|f| !self.partitioned_by.contains(f.name()))
                .map(|f| column(f))
                .collect(),
            partition_keys: self
                .partitioned_by
                .iter()
                .filter_map(|key| schema.field_with_unqualified_name(key).ok().map(|f| column(f)))
                .collect(),
            properties: properties.into_iter().chain(self.bucketing.iter().flat_map(Bucketing::properties)).collect(),
        }
    }

    fn database<'a>(&'a self, ctx: &'a Context<'_>) -> &'a str {
        match self.name.as_slice() {
            [.., database, _] => database,
            _ => &ctx.session.database,
        }
    }
}

/// What a write statement returns: the rows it wrote, as Trino reports them.
pub(super) fn rows_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("rows", DataType::Int64, false)]))
}

pub(super) fn rows_written(query: QueryId, rows: u64) -> Result<QueryResult, SchedulerError> {
    let batch = RecordBatch::try_new(rows_schema(), vec![Arc::new(Int64Array::from(vec![rows as i64]))])
        .map_err(|e| SchedulerError::plan(e.into()))?;
    Ok(QueryResult::finished(query, rows_schema(), vec![batch]))
}

/// A write's result: the rows it wrote, with its query's statistics.
pub(super) fn written_result(
    query: QueryId,
    (rows, stats): (u64, crate::query::QueryStatsHandle),
) -> Result<QueryResult, SchedulerError> {
    let mut result = rows_written(query, rows)?;
    result.stats = stats;
    Ok(result)
}

#[async_trait]
impl Family for CreateTableAs {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    // The effect is the default, `Reads`: like a query, it runs when its result (the rows it
    // wrote) is fetched.

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        ctx.access.require_database(Privilege::Create, self.database(ctx))?;
        if let Some(location) = &self.location {
            ctx.access.require_location(location)?;
        }
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let Some((database, name)) =
            ctx.lake.name_new_table(self.reference(), self.if_not_exists, &ctx.session.database)?
        else {
            return rows_written(query, 0);
        };
        let location = match &self.location {
            Some(location) => {
                let url = ctx
                    .lake
                    .storage()
                    .check_location(location)
                    .map_err(|e| SchedulerError::from(glaux_catalog::CatalogError::from(e)))?;
                // A Delta table's log names it by URL (a local path as file://).
                if self.delta { url.to_string() } else { location.clone() }
            }
            None => ctx.lake.default_location(&database, &name)?,
        };
        if self.delta {
            let location = if location.ends_with('/') { location } else { format!("{location}/") };
            let table = (database, name, location);
            let (plan, keys) = (&self.plan, &self.partitioned_by);
            return match super::delta::create_table_as(ctx, &query, table, plan, keys, self.with_data, progress).await?
            {
                Some(written) => written_result(query, written),
                None => rows_written(query, 0),
            };
        }
        let definition = self.definition(database, name, location.clone());
        let mut staged =
            StagedWrite::begin(&ctx.state, ctx.lake.catalog(), &location, &query, self.partitioned_by.clone())?
                .bucketed(self.bucketing.is_some());
        // Athena's rule: a new table's files are the only ones at its location.
        staged.require_empty_location("CREATE TABLE AS").await?;
        if !self.with_data {
            let registered = ctx.lake.register_written_table(&definition, &[], &staged.id());
            staged.discard().await;
            registered?;
            return rows_written(query, 0);
        }
        let id = query.to_string();
        let plan = match &self.bucketing {
            Some(bucketing) => bucketing.plan(&self.plan, &self.partitioned_by, &ctx.state)?,
            None => self.plan.clone(),
        };
        let written = staged
            .run(ctx.queries, &ctx.state, &plan, (self.format.clone(), self.compression), progress, |partitions| {
                Ok(ctx.lake.register_written_table(&definition, partitions, &id)?)
            })
            .await;
        written_result(query, written?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctas_is_read_with_its_properties_and_query() {
        let parsed = parse(
            "CREATE TABLE IF NOT EXISTS db.\"T\" WITH (format = 'PARQUET', partitioned_by = ARRAY['a', 'b'], \n\
             bucket_count = 4) AS\n  SELECT 'x' AS \"As\", 1 FROM t WITH NO DATA;",
        )
        .unwrap()
        .unwrap();
        assert_eq!(parsed.name, ["db", "T"]);
        assert!(parsed.if_not_exists && !parsed.with_data);
        assert_eq!(parsed.properties[1], ("partitioned_by".into(), Value::Array(vec!["a".into(), "b".into()])));
        assert_eq!(parsed.properties[2], ("bucket_count".into(), Value::Number("4".into())));
        assert_eq!(parsed.query, "SELECT 'x' AS \"As\", 1 FROM t");
        assert_eq!(parse("create table t as (select 1) with data").unwrap().unwrap().query, "(select 1)");
        assert_eq!(parse("CREATE TABLE é AS SELECT 'ü'").unwrap().unwrap().query, "SELECT 'ü'");
    }

    #[test]
    fn other_create_statements_are_not_ctas() {
        assert!(parse("CREATE TABLE t (a int)").is_none());
        assert!(parse("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'x'").is_none());
        assert!(parse("SELECT 1").is_none());
        for bad in [
            "CREATE TABLE t WITH (format) AS SELECT 1",
            "CREATE TABLE t WITH (a = ARRAY[1]) AS SELECT 1",
            "CREATE TABLE t AS",
        ] {
            assert!(parse(bad).is_none_or(|p| p.is_err()), "{bad}");
        }
    }
}
