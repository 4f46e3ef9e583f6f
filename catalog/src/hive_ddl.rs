//! Athena's (Hive's) `CREATE EXTERNAL TABLE`, as users paste it from Athena or Glue.
//!
//! ```text
//! CREATE EXTERNAL TABLE [IF NOT EXISTS] [db.]t (col type [COMMENT '..'], ...) [COMMENT '..']
//!   [PARTITIONED BY (key type, ...)]
//!   [ROW FORMAT SERDE 'class' [WITH SERDEPROPERTIES ('k'='v', ...)]
//!    | ROW FORMAT DELIMITED [FIELDS TERMINATED BY 'c'] [ESCAPED BY 'c'] [LINES TERMINATED BY 'c'] ...]
//!   [STORED AS PARQUET | TEXTFILE | JSON | INPUTFORMAT '..' OUTPUTFORMAT '..']
//!   LOCATION '..' [TBLPROPERTIES ('k'='v', ...)]
//! ```
//! Types are Hive's: `string`, `int`, `bigint`, `decimal(p,s)`, `array<t>`, `map<k,v>`,
//! `struct<name:t,...>`, ... Clauses Glaux cannot honour are errors that name them.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::sql::sqlparser::dialect::HiveDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::definitions::TableFormat;
use crate::error::{CatalogError, Result};

/// A parsed Hive `CREATE EXTERNAL TABLE`.
#[derive(Debug, PartialEq)]
pub struct HiveTable {
    /// `CREATE TABLE` (a new Delta table), not `CREATE EXTERNAL TABLE` (existing files).
    pub creates: bool,
    pub if_not_exists: bool,
    /// The name as written: `[db.]table`, lowercased unless quoted.
    pub name: Vec<String>,
    pub columns: Vec<(String, DataType)>,
    pub partition_keys: Vec<(String, DataType)>,
    /// `None` when the statement names no format: the crawler infers it from the files.
    pub format: Option<TableFormat>,
    pub location: String,
    /// Format options (`format.delimiter`, `format.has_header`) and the TBLPROPERTIES as given.
    pub properties: BTreeMap<String, String>,
}

/// The statement does not read as Athena DDL.
fn error(message: impl Into<String>) -> CatalogError {
    CatalogError::Parse(message.into())
}

/// The statement reads, but asks for what Glaux cannot honour.
fn unsupported(message: impl Into<String>) -> CatalogError {
    CatalogError::Unsupported(message.into())
}

/// How deep `array<map<string, struct<...>>>` may nest: deeper than any real table, shallow enough
/// that neither this parser nor the Arrow code after it runs out of stack.
pub const MAX_TYPE_DEPTH: usize = 32;

pub(crate) struct Tokens {
    tokens: Vec<Token>,
    at: usize,
    /// Types open around the one being read.
    depth: usize,
}

impl Tokens {
    pub(crate) fn new(sql: &str) -> Result<Self> {
        let tokens = Tokenizer::new(&HiveDialect {}, sql)
            .tokenize()
            .map_err(|e| error(format!("cannot read the statement: {e}")))?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
            // `array<array<int>>` ends in `>>`: two closing brackets.
            .flat_map(|t| if t == Token::ShiftRight { vec![Token::Gt, Token::Gt] } else { vec![t] })
            .collect();
        Ok(Self { tokens, at: 0, depth: 0 })
    }

    pub(crate) fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    pub(crate) fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    pub(crate) fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(keyword))
    }

    pub(crate) fn keyword(&mut self, keyword: &str) -> bool {
        let found = self.peek_keyword(keyword);
        if found {
            self.at += 1;
        }
        found
    }

    pub(crate) fn expect_keyword(&mut self, keyword: &str) -> Result<()> {
        if self.keyword(keyword) { Ok(()) } else { Err(self.unexpected(keyword)) }
    }

    pub(crate) fn expect(&mut self, token: Token) -> Result<()> {
        if self.peek() == Some(&token) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&token.to_string()))
        }
    }

    pub(crate) fn unexpected(&self, wanted: &str) -> CatalogError {
        match self.peek() {
            Some(token) => error(format!("expected {wanted}, found {token}")),
            None => error(format!("expected {wanted}, found the end of the statement")),
        }
    }

    fn string(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)) => Ok(s),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a quoted string"))
            }
        }
    }

    /// An identifier, lowercased unless quoted.
    pub(crate) fn identifier(&mut self) -> Result<String> {
        match self.next() {
            Some(Token::Word(w)) if w.quote_style.is_some() => Ok(w.value),
            Some(Token::Word(w)) => Ok(w.value.to_ascii_lowercase()),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a name"))
            }
        }
    }

    fn number(&mut self) -> Result<u32> {
        match self.next() {
            Some(Token::Number(n, _)) => n.parse().map_err(|_| error(format!("{n} is not a valid size"))),
            _ => {
                self.at -= 1;
                Err(self.unexpected("a number"))
            }
        }
    }

    /// `('k'='v', ...)`
    fn properties(&mut self) -> Result<Vec<(String, String)>> {
        self.expect(Token::LParen)?;
        let mut properties = Vec::new();
        loop {
            let key = self.string()?;
            self.expect(Token::Eq)?;
            properties.push((key, self.string()?));
            if self.peek() != Some(&Token::Comma) {
                break;
            }
            self.at += 1;
        }
        self.expect(Token::RParen)?;
        Ok(properties)
    }

    /// `(name type [COMMENT '..'], ...)`
    pub(crate) fn columns(&mut self) -> Result<Vec<(String, DataType)>> {
        self.columns_or_names(false)
    }

    /// `(name type, ...)`; with `names`, an entry may be a bare name (of a declared column, as
    /// Athena's `CREATE TABLE` partitions: `PARTITIONED BY (day)`), typed `Null` here.
    fn columns_or_names(&mut self, names: bool) -> Result<Vec<(String, DataType)>> {
        self.expect(Token::LParen)?;
        let mut columns = Vec::new();
        loop {
            let name = self.identifier()?;
            if names && matches!(self.peek(), Some(Token::Comma | Token::RParen)) {
                columns.push((name, DataType::Null));
                if self.peek() == Some(&Token::Comma) {
                    self.at += 1;
                    continue;
                }
                break;
            }
            let data_type = self.hive_type()?;
            if self.keyword("COMMENT") {
                self.string()?;
            }
            columns.push((name, data_type));
            if self.peek() != Some(&Token::Comma) {
                break;
            }
            self.at += 1;
        }
        self.expect(Token::RParen)?;
        Ok(columns)
    }

    pub(crate) fn hive_type(&mut self) -> Result<DataType> {
        if self.depth >= MAX_TYPE_DEPTH {
            return Err(error(format!("types nest at most {MAX_TYPE_DEPTH} deep")));
        }
        self.depth += 1;
        let result = self.one_type();
        self.depth -= 1;
        result
    }

    fn one_type(&mut self) -> Result<DataType> {
        let name = match self.next() {
            Some(Token::Word(w)) => w.value.to_ascii_lowercase(),
            _ => {
                self.at -= 1;
                return Err(self.unexpected("a type"));
            }
        };
        Ok(match name.as_str() {
            "string" => DataType::Utf8,
            "varchar" | "char" => {
                if self.peek() == Some(&Token::LParen) {
                    self.at += 1;
                    self.number()?;
                    self.expect(Token::RParen)?;
                }
                DataType::Utf8
            }
            "boolean" => DataType::Boolean,
            "tinyint" => DataType::Int8,
            "smallint" => DataType::Int16,
            "int" | "integer" => DataType::Int32,
            "bigint" => DataType::Int64,
            "float" | "real" => DataType::Float32,
            "double" => DataType::Float64,
            "date" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "binary" => DataType::Binary,
            "decimal" => {
                let (mut precision, mut scale) = (10, 0);
                if self.peek() == Some(&Token::LParen) {
                    self.at += 1;
                    precision = self.number()?;
                    if self.peek() == Some(&Token::Comma) {
                        self.at += 1;
                        scale = self.number()?;
                    }
                    self.expect(Token::RParen)?;
                }
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(error(format!("decimal({precision},{scale}) is not a valid type")));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "array" => {
                self.expect(Token::Lt)?;
                let item = self.hive_type()?;
                self.expect(Token::Gt)?;
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            "map" => {
                self.expect(Token::Lt)?;
                let key = self.hive_type()?;
                self.expect(Token::Comma)?;
                let value = self.hive_type()?;
                self.expect(Token::Gt)?;
                let entries = Fields::from(vec![Field::new("key", key, false), Field::new("value", value, true)]);
                DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
            }
            "struct" => {
                self.expect(Token::Lt)?;
                let mut fields = Vec::new();
                loop {
                    let name = self.identifier()?;
                    self.expect(Token::Colon)?;
                    fields.push(Field::new(name, self.hive_type()?, true));
                    if self.peek() != Some(&Token::Comma) {
                        break;
                    }
                    self.at += 1;
                }
                self.expect(Token::Gt)?;
                DataType::Struct(Fields::from(fields))
            }
            other => return Err(error(format!("unknown type {other}"))),
        })
    }
}

/// True if `sql` starts with `CREATE EXTERNAL TABLE`, or is a `CREATE TABLE` with
/// `TBLPROPERTIES` (Athena's DDL for a new transactional table).
pub fn is_create_external_table(sql: &str) -> bool {
    Tokens::new(sql).is_ok_and(|mut t| {
        t.keyword("CREATE")
            && (t.keyword("EXTERNAL") || sql.to_ascii_uppercase().contains("TBLPROPERTIES"))
            && t.keyword("TABLE")
    })
}

pub fn parse_hive_create_table(sql: &str) -> Result<HiveTable> {
    let mut t = Tokens::new(sql)?;
    t.expect_keyword("CREATE")?;
    let creates = !t.keyword("EXTERNAL");
    t.expect_keyword("TABLE")?;
    let if_not_exists = t.keyword("IF");
    if if_not_exists {
        t.expect_keyword("NOT")?;
        t.expect_keyword("EXISTS")?;
    }
    let mut name = vec![t.identifier()?];
    while t.peek() == Some(&Token::Period) {
        t.at += 1;
        name.push(t.identifier()?);
    }
    let columns = if t.peek() == Some(&Token::LParen) { t.columns()? } else { Vec::new() };
    if t.keyword("COMMENT") {
        t.string()?;
    }
    let mut partition_keys = Vec::new();
    let mut serde = None;
    let mut serde_properties = Vec::new();
    let mut delimiter = None;
    let mut stored_as = None;
    let mut location = None;
    let mut properties = BTreeMap::new();
    while t.peek().is_some() {
        if t.keyword("PARTITIONED") {
            t.expect_keyword("BY")?;
            partition_keys = t.columns_or_names(creates)?;
        } else if t.keyword("ROW") {
            t.expect_keyword("FORMAT")?;
            if t.keyword("SERDE") {
                serde = Some(t.string()?);
                if t.keyword("WITH") {
                    t.expect_keyword("SERDEPROPERTIES")?;
                    serde_properties = t.properties()?;
                }
            } else {
                t.expect_keyword("DELIMITED")?;
                serde = Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe".to_string());
                while let Some(Token::Word(w)) = t.peek().cloned() {
                    match w.value.to_ascii_uppercase().as_str() {
                        "FIELDS" => {
                            t.at += 1;
                            t.expect_keyword("TERMINATED")?;
                            t.expect_keyword("BY")?;
                            delimiter = Some(t.string()?);
                        }
                        "ESCAPED" | "LINES" | "COLLECTION" | "MAP" | "NULL" => {
                            return Err(unsupported(format!("ROW FORMAT DELIMITED {} is not supported", w.value)));
                        }
                        _ => break,
                    }
                }
            }
        } else if t.keyword("STORED") {
            t.expect_keyword("AS")?;
            if t.keyword("INPUTFORMAT") {
                let input = t.string()?;
                t.expect_keyword("OUTPUTFORMAT")?;
                t.string()?;
                stored_as = Some(input);
            } else {
                stored_as = Some(t.identifier()?);
            }
        } else if t.keyword("LOCATION") {
            location = Some(t.string()?);
        } else if t.keyword("TBLPROPERTIES") {
            properties.extend(t.properties()?);
        } else {
            let clause = t.peek().map(ToString::to_string).unwrap_or_default();
            return Err(unsupported(format!("CREATE EXTERNAL TABLE ... {clause} is not supported")));
        }
    }
    // A new table without one goes under the warehouse, as a CTAS's does.
    let location = match location {
        Some(location) => location,
        None if creates => String::new(),
        None => return Err(error("CREATE EXTERNAL TABLE needs a LOCATION")),
    };
    let delta = crate::delta::is_delta(&properties)?;
    if creates && !delta {
        return Err(unsupported(
            "CREATE TABLE with TBLPROPERTIES creates Delta tables ('table_type' = 'DELTA'); declare files \
             that exist with CREATE EXTERNAL TABLE",
        ));
    }
    if delta {
        if serde.is_some() || stored_as.is_some() {
            return Err(unsupported("a Delta table is Parquet files: drop ROW FORMAT and STORED AS"));
        }
        if !creates && (!columns.is_empty() || !partition_keys.is_empty()) {
            return Err(unsupported(
                "a Delta table's columns, partitions and format come from its transaction log: declare it with \
                 LOCATION and TBLPROPERTIES ('table_type' = 'DELTA') only (CREATE TABLE with columns creates one)",
            ));
        }
        if creates && columns.is_empty() {
            return Err(error("CREATE TABLE of a Delta table needs its columns"));
        }
        // Partitions named by name alone are declared columns, moved to the end.
        let mut columns = columns;
        let mut keys = Vec::with_capacity(partition_keys.len());
        for (key, data_type) in partition_keys {
            if data_type != DataType::Null {
                keys.push((key, data_type));
                continue;
            }
            let Some(at) = columns.iter().position(|(c, _)| *c == key) else {
                return Err(error(format!("partition column {key} is not a declared column")));
            };
            keys.push(columns.remove(at));
        }
        let format = Some(TableFormat::Delta);
        return Ok(HiveTable {
            creates,
            if_not_exists,
            name,
            columns,
            partition_keys: keys,
            format,
            location,
            properties,
        });
    }
    let format = table_format(serde.as_deref(), stored_as.as_deref())?;
    let serde_properties: BTreeMap<String, String> = serde_properties.into_iter().collect();
    if format.is_some_and(|f| f != TableFormat::Parquet) {
        // Athena reads every object under the location: Firehose and Hive files carry no extension.
        // A `glaux.file_extension` the statement sets narrows that.
        properties.entry(FILE_EXTENSION.into()).or_default();
    }
    if format == Some(TableFormat::Csv) {
        let delimiter = delimiter
            .or_else(|| serde_properties.get("field.delim").cloned())
            .or_else(|| serde_properties.get("separatorChar").cloned())
            .unwrap_or_else(|| {
                if serde.as_deref().is_some_and(|s| s.contains("OpenCSVSerde")) { ",".into() } else { "\u{1}".into() }
            });
        let delimiter = unescape(&delimiter);
        if delimiter.len() != 1 {
            return Err(CatalogError::Invalid(format!("field delimiter {delimiter:?} must be a single byte")));
        }
        properties.insert("format.delimiter".into(), delimiter);
        match properties.get("skip.header.line.count").map(String::as_str) {
            None | Some("0") => {}
            Some("1") => {
                properties.insert("format.has_header".into(), "true".into());
            }
            Some(n) => return Err(unsupported(format!("skip.header.line.count = {n} is not supported (0 or 1)"))),
        }
    }
    Ok(HiveTable { creates, if_not_exists, name, columns, partition_keys, format, location, properties })
}

/// The table property naming the file extension to read (`""`: every file).
pub const FILE_EXTENSION: &str = "glaux.file_extension";

/// The table property naming the codec of a text table's files (DataFusion's own option name).
pub const COMPRESSION: &str = "format.compression";

/// Hive's escapes in delimiters: `\t`, `\n`, `\001` (octal), `\u0001`.
fn unescape(delimiter: &str) -> String {
    match delimiter {
        "\\t" => "\t".into(),
        "\\n" => "\n".into(),
        "\\\\" => "\\".into(),
        d if d.starts_with("\\u") => {
            u32::from_str_radix(&d[2..], 16).ok().and_then(char::from_u32).map_or(d.into(), String::from)
        }
        d if d.starts_with('\\') && d.len() > 1 => {
            u32::from_str_radix(&d[1..], 8).ok().and_then(char::from_u32).map_or(d.into(), String::from)
        }
        d => d.into(),
    }
}

/// Maps a SerDe / storage clause to the format Glaux reads; `None` if the statement names none.
fn table_format(serde: Option<&str>, stored_as: Option<&str>) -> Result<Option<TableFormat>> {
    let lower = |s: Option<&str>| s.unwrap_or_default().to_ascii_lowercase();
    let (serde, stored_as) = (lower(serde), lower(stored_as));
    if serde.contains("parquet") || stored_as.contains("parquet") {
        Ok(Some(TableFormat::Parquet))
    } else if serde.contains("json") || stored_as == "json" || stored_as == "jsonfile" {
        Ok(Some(TableFormat::Json))
    } else if serde.contains("opencsvserde")
        || serde.contains("lazysimpleserde")
        || stored_as == "textfile"
        || stored_as.contains("textinputformat")
    {
        Ok(Some(TableFormat::Csv))
    } else if serde.is_empty() && stored_as.is_empty() {
        Ok(None)
    } else {
        Err(unsupported(format!(
            "the table format ({}) is not supported: use Parquet, JSON or CSV/TEXTFILE",
            if serde.is_empty() { stored_as } else { serde }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text, and any one-byte change to a valid statement, is parsed or refused: never a
        /// panic.
        #[test]
        fn any_text_is_parsed_or_refused(text in "\\PC{0,200}") {
            let _ = parse_hive_create_table(&text);
        }

        #[test]
        fn mutated_ddl_is_parsed_or_refused(at in 0usize..400, byte in proptest::num::u8::ANY) {
            let valid = "CREATE EXTERNAL TABLE IF NOT EXISTS db.t (a int, b array<struct<x:string,y:map<string,\
                         decimal(10,2)>>>, c varchar(3)) PARTITIONED BY (d string) ROW FORMAT SERDE \
                         'org.openx.data.jsonserde.JsonSerDe' LOCATION 's3://b/t/' TBLPROPERTIES ('k'='v')";
            let mut bytes = valid.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            let _ = parse_hive_create_table(&String::from_utf8_lossy(&bytes));
            bytes.truncate(at);
            let _ = parse_hive_create_table(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn type_nesting_is_bounded() {
        let nested = |depth: usize| {
            format!(
                "CREATE EXTERNAL TABLE t (c {}int{}) STORED AS PARQUET LOCATION 's3://b/t/'",
                "array<".repeat(depth),
                ">".repeat(depth)
            )
        };
        assert!(parse_hive_create_table(&nested(MAX_TYPE_DEPTH - 1)).is_ok());
        let error = parse_hive_create_table(&nested(MAX_TYPE_DEPTH)).unwrap_err().to_string();
        assert!(error.contains("nest at most"), "{error}");
        // Deep enough to overflow any stack if it were followed: refused at the limit.
        let error = parse_hive_create_table(&nested(1_000_000)).unwrap_err().to_string();
        assert!(error.contains("nest at most"), "{error}");
    }

    #[test]
    fn parses_athena_ddl_with_serde_and_nested_types() {
        let table = parse_hive_create_table(
            "CREATE EXTERNAL TABLE IF NOT EXISTS lake.Events (
               `name` string COMMENT 'event', tstamp timestamp, tags array<array<string>>,
               info struct<a:int,b:map<string,decimal(10,2)>>, n varchar(20)
             ) PARTITIONED BY (d string, h int)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe' WITH SERDEPROPERTIES ('ignore.malformed.json'='true')
             STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
               OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
             LOCATION 's3://bucket/events/'
             TBLPROPERTIES ('projection.enabled'='true')",
        )
        .unwrap();
        assert!(table.if_not_exists);
        assert_eq!(table.name, vec!["lake", "events"]);
        assert_eq!(table.format, Some(TableFormat::Json));
        assert_eq!(table.columns.len(), 5);
        assert!(matches!(&table.columns[2].1, DataType::List(f) if matches!(f.data_type(), DataType::List(_))));
        assert!(matches!(&table.columns[3].1, DataType::Struct(f) if f.len() == 2));
        assert_eq!(table.partition_keys, vec![("d".into(), DataType::Utf8), ("h".into(), DataType::Int32)]);
        assert_eq!(table.properties.get("projection.enabled").map(String::as_str), Some("true"));
    }

    #[test]
    fn maps_csv_serdes_and_rejects_what_it_cannot_read() {
        let csv = parse_hive_create_table(
            "CREATE EXTERNAL TABLE t (a string) ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\t' \
             STORED AS TEXTFILE LOCATION 's3://b/t/' TBLPROPERTIES ('skip.header.line.count'='1')",
        );
        let csv = csv.unwrap();
        assert_eq!(csv.properties.get("format.delimiter").map(String::as_str), Some("\t"));
        assert_eq!(unescape("\\001"), "\u{1}");
        assert_eq!(unescape("\\u0001"), "\u{1}");
        let wide = parse_hive_create_table(
            "CREATE EXTERNAL TABLE t (a string) ROW FORMAT DELIMITED FIELDS TERMINATED BY '::' LOCATION 's3://b/t/'",
        );
        assert!(wide.unwrap_err().to_string().contains("single byte"));
        let csv = parse_hive_create_table(
            "CREATE EXTERNAL TABLE t (a string) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde' \
             LOCATION 's3://b/t/' TBLPROPERTIES ('skip.header.line.count'='1')",
        )
        .unwrap();
        assert_eq!(csv.format, Some(TableFormat::Csv));
        assert_eq!(csv.properties.get("format.delimiter").map(String::as_str), Some(","));
        assert_eq!(csv.properties.get("format.has_header").map(String::as_str), Some("true"));
        let orc = parse_hive_create_table("CREATE EXTERNAL TABLE t (a int) STORED AS ORC LOCATION 's3://b/t/'");
        assert!(orc.unwrap_err().to_string().contains("orc"));
        let clustered = parse_hive_create_table(
            "CREATE EXTERNAL TABLE t (a int) CLUSTERED BY (a) INTO 4 BUCKETS STORED AS PARQUET LOCATION 's3://b/t/'",
        );
        assert!(clustered.unwrap_err().to_string().contains("CLUSTERED is not supported"));
        assert!(is_create_external_table("create external table x"));
        assert!(!is_create_external_table("SELECT 1"));
    }
}
