//! Athena statements DataFusion does not speak, recognized before DataFusion parses the SQL.
//!
//! `SHOW DATABASES`/`SCHEMAS`, `SHOW TABLES [IN db] [LIKE 'pattern']`, `SHOW COLUMNS`, `CREATE DATABASE`,
//! `DROP DATABASE`, `SHOW CREATE TABLE`, `SHOW PARTITIONS`, `MSCK REPAIR TABLE`, `ALTER TABLE
//! ADD|DROP PARTITION`, `USE`, and `PREPARE`/`EXECUTE`/`DEALLOCATE PREPARE`. The first few become a statement DataFusion runs (a query on
//! `information_schema`, or its `SCHEMA` DDL), so they go through the same planning as any SQL;
//! the others work on the catalog directly.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::session::DEFAULT_CATALOG;

#[derive(Debug, PartialEq, Eq)]
pub enum AthenaStatement {
    /// Run this SQL instead.
    Rewritten(String),
    /// `SHOW CREATE TABLE [db.]table`: the parts of the name as written.
    ShowCreateTable(Vec<String>),
    /// `SHOW PARTITIONS [db.]table`.
    ShowPartitions(Vec<String>),
    /// `MSCK REPAIR TABLE t`.
    RepairTable(Vec<String>),
    /// `ALTER TABLE t ADD [IF NOT EXISTS] PARTITION (k = 'v', ...) [LOCATION '...'] ...`.
    AddPartitions { table: Vec<String>, if_not_exists: bool, partitions: Vec<(PartitionSpec, Option<String>)> },
    /// `ALTER TABLE t DROP [IF EXISTS] PARTITION (k = 'v', ...) [, PARTITION (...)]`.
    DropPartitions { table: Vec<String>, if_exists: bool, partitions: Vec<PartitionSpec> },
    /// `USE db`.
    Use(Vec<String>),
    /// `PREPARE name FROM statement`: the statement's text, `?` marking its parameters.
    Prepare { name: String, statement: String },
    /// `EXECUTE name [USING value, ...]`: each value as SQL text.
    Execute { name: String, values: Vec<String> },
    /// `DEALLOCATE PREPARE name`.
    Deallocate(String),
    /// `SHOW FUNCTIONS [LIKE 'pattern']`.
    ShowFunctions(Option<String>),
    /// A recognized statement with a clause Glaux does not support: the error to give.
    Unsupported(String),
}

/// `(k = 'v', ...)` of a partition clause: keys (lowercased unless quoted) and values as text.
pub type PartitionSpec = Vec<(String, String)>;

/// One token of interest: a word (uppercased unless quoted), a string literal, or punctuation.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Word(String),
    Quoted(String),
    Text(String),
    Number(String),
    Dot,
    /// `(`, `)`, `,` or `=`.
    Symbol(char),
    Other,
}

fn parts(sql: &str) -> Option<Vec<Part>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize().ok()?;
    Some(
        tokens
            .into_iter()
            .filter_map(|token| match token {
                Token::Whitespace(_) | Token::SemiColon => None,
                Token::Word(w) if w.quote_style.is_some() => Some(Part::Quoted(w.value)),
                Token::Word(w) => Some(Part::Word(w.value.to_ascii_uppercase())),
                Token::SingleQuotedString(s) => Some(Part::Text(s)),
                Token::Number(n, _) => Some(Part::Number(n)),
                Token::Period => Some(Part::Dot),
                Token::LParen => Some(Part::Symbol('(')),
                Token::RParen => Some(Part::Symbol(')')),
                Token::Comma => Some(Part::Symbol(',')),
                Token::Eq => Some(Part::Symbol('=')),
                _ => Some(Part::Other),
            })
            .collect(),
    )
}

/// The name written at `parts[i..]` (`a`, `a.b`, `"a"."b"`), lowercased unless quoted, and where it ends.
fn name_at(parts: &[Part], mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut name = Vec::new();
    loop {
        match parts.get(i)? {
            Part::Word(w) => name.push(w.to_ascii_lowercase()),
            Part::Quoted(q) => name.push(q.clone()),
            _ => return None,
        }
        i += 1;
        if parts.get(i) != Some(&Part::Dot) {
            return Some((name, i));
        }
        i += 1;
    }
}

/// `PARTITION (k = 'v', k2 = 2)` at `parts[i..]`, and where it ends.
fn partition_at(parts: &[Part], i: usize) -> Option<(PartitionSpec, usize)> {
    if parts.get(i) != Some(&Part::Word("PARTITION".into())) || parts.get(i + 1) != Some(&Part::Symbol('(')) {
        return None;
    }
    let mut spec = Vec::new();
    let mut i = i + 2;
    loop {
        let key = match parts.get(i)? {
            Part::Word(w) => w.to_ascii_lowercase(),
            Part::Quoted(q) => q.clone(),
            _ => return None,
        };
        if parts.get(i + 1) != Some(&Part::Symbol('=')) {
            return None;
        }
        let value = match parts.get(i + 2)? {
            Part::Text(t) | Part::Number(t) => t.clone(),
            _ => return None,
        };
        spec.push((key, value));
        i += 3;
        match parts.get(i)? {
            Part::Symbol(',') => i += 1,
            Part::Symbol(')') => return Some((spec, i + 1)),
            _ => return None,
        }
    }
}

/// `ALTER TABLE t ADD|DROP ...` after the table name, at `parts[i..]`.
fn alter_partitions(parts: &[Part], table: Vec<String>, mut i: usize) -> Option<AthenaStatement> {
    let w = words(parts);
    let add = match *w.get(i)? {
        "ADD" => true,
        "DROP" => false,
        _ => return None,
    };
    i += 1;
    let guard: &[&str] = if add { &["IF", "NOT", "EXISTS"] } else { &["IF", "EXISTS"] };
    let guarded = w.get(i..i + guard.len()) == Some(guard);
    if guarded {
        i += guard.len();
    }
    let mut added = Vec::new();
    let mut dropped = Vec::new();
    while i < parts.len() {
        let (spec, end) = partition_at(parts, i)?;
        i = end;
        if add {
            let location = match (w.get(i), parts.get(i + 1)) {
                (Some(&"LOCATION"), Some(Part::Text(location))) => {
                    i += 2;
                    Some(location.clone())
                }
                _ => None,
            };
            added.push((spec, location));
        } else {
            dropped.push(spec);
            if parts.get(i) == Some(&Part::Symbol(',')) {
                i += 1;
            }
        }
    }
    if add {
        (!added.is_empty()).then_some(AthenaStatement::AddPartitions { table, if_not_exists: guarded, partitions: added })
    } else {
        (!dropped.is_empty()).then_some(AthenaStatement::DropPartitions { table, if_exists: guarded, partitions: dropped })
    }
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Athena's SHOW patterns: `*` is any text, `|` separates alternatives.
fn like_clauses(column: &str, pattern: &str) -> String {
    let alternatives: Vec<String> = pattern
        .split('|')
        .map(|p| format!("{column} LIKE {}", literal(&p.trim().replace('*', "%"))))
        .collect();
    format!("({})", alternatives.join(" OR "))
}

fn words(parts: &[Part]) -> Vec<&str> {
    parts.iter().map(|p| if let Part::Word(w) = p { w.as_str() } else { "" }).collect()
}

/// Recognizes an Athena statement; `None` for SQL that DataFusion handles itself. `database`
/// is the client's current one (for `SHOW TABLES` without `IN`).
pub fn recognize(sql: &str, database: &str) -> Option<AthenaStatement> {
    let parts = parts(sql)?;
    let w = words(&parts);
    match w.as_slice() {
        ["SHOW", "DATABASES" | "SCHEMAS", rest @ ..] => {
            let mut query = format!(
                "SELECT schema_name AS database_name FROM information_schema.schemata \
                 WHERE catalog_name = {} AND schema_name <> 'information_schema'",
                literal(DEFAULT_CATALOG)
            );
            if !rest.is_empty() {
                let pattern = parts[2..].iter().find_map(|p| if let Part::Text(t) = p { Some(t) } else { None })?;
                query.push_str(&format!(" AND {}", like_clauses("schema_name", pattern)));
            }
            Some(AthenaStatement::Rewritten(query + " ORDER BY 1"))
        }
        ["SHOW", "TABLES", ..] => {
            let mut i = 2;
            let mut in_database = None;
            if matches!(w.get(i), Some(&"IN" | &"FROM")) {
                let (name, end) = name_at(&parts, i + 1)?;
                in_database = Some(name.last()?.clone());
                i = end;
            }
            if w.get(i) == Some(&"LIKE") {
                i += 1;
            }
            let pattern = match parts.get(i) {
                Some(Part::Text(t)) => Some(t.clone()),
                None => None,
                _ => return None,
            };
            let schema = literal(in_database.as_deref().unwrap_or(database));
            let mut query = format!(
                "SELECT table_name AS tab_name FROM information_schema.tables \
                 WHERE table_catalog = {} AND table_schema = {schema}",
                literal(DEFAULT_CATALOG)
            );
            if let Some(pattern) = pattern {
                query.push_str(&format!(" AND {}", like_clauses("table_name", &pattern)));
            }
            Some(AthenaStatement::Rewritten(query + " ORDER BY 1"))
        }
        ["SHOW", "COLUMNS", "FROM" | "IN", ..] => {
            // Athena lists the names alone: `SHOW COLUMNS {FROM|IN} t [{FROM|IN} db]`.
            let (mut name, mut end) = name_at(&parts, 3)?;
            if matches!(w.get(end), Some(&"FROM" | &"IN")) {
                let (database, after) = name_at(&parts, end + 1)?;
                name.insert(0, database.last()?.clone());
                end = after;
            }
            if end != parts.len() {
                return None;
            }
            let (schema, table) = match name.as_slice() {
                [table] => (database, table),
                [.., schema, table] => (schema.as_str(), table),
                [] => return None,
            };
            Some(AthenaStatement::Rewritten(format!(
                "SELECT column_name AS field FROM information_schema.columns \
                 WHERE table_catalog = {} AND table_schema = {} AND table_name = {} ORDER BY ordinal_position",
                literal(DEFAULT_CATALOG),
                literal(schema),
                literal(table)
            )))
        }
        ["SHOW", "CREATE", "TABLE", ..] => {
            let (name, end) = name_at(&parts, 3)?;
            (end == parts.len()).then_some(AthenaStatement::ShowCreateTable(name))
        }
        ["SHOW", "PARTITIONS", ..] => {
            let (name, end) = name_at(&parts, 2)?;
            (end == parts.len()).then_some(AthenaStatement::ShowPartitions(name))
        }
        ["MSCK", "REPAIR", "TABLE", ..] => {
            let (name, end) = name_at(&parts, 3)?;
            (end == parts.len()).then_some(AthenaStatement::RepairTable(name))
        }
        ["ALTER", "TABLE", ..] => {
            let (name, end) = name_at(&parts, 2)?;
            alter_partitions(&parts, name, end)
        }
        ["SHOW", "FUNCTIONS", rest @ ..] => {
            let pattern = match (rest, parts.get(3)) {
                ([], _) => None,
                (["LIKE", ..], Some(Part::Text(pattern))) if parts.len() == 4 => Some(pattern.clone()),
                _ => return None,
            };
            Some(AthenaStatement::ShowFunctions(pattern))
        }
        ["PREPARE", _, "FROM", ..] => {
            let name = prepared_name(&parts[1])?;
            Some(AthenaStatement::Prepare { name, statement: after_words(sql, 3)?.to_string() })
        }
        ["EXECUTE", _, rest @ ..] => {
            let name = prepared_name(&parts[1])?;
            let values = match rest {
                [] => Vec::new(),
                ["USING", ..] => using_values(after_words(sql, 3)?)?,
                _ => return None,
            };
            Some(AthenaStatement::Execute { name, values })
        }
        ["DEALLOCATE", "PREPARE", _] => Some(AthenaStatement::Deallocate(prepared_name(&parts[2])?)),
        ["USE", ..] => {
            let (name, end) = name_at(&parts, 1)?;
            (end == parts.len()).then_some(AthenaStatement::Use(name))
        }
        ["CREATE", "DATABASE", ..] => {
            let (if_not_exists, at) = if w.get(2..5) == Some(&["IF", "NOT", "EXISTS"]) { (true, 5) } else { (false, 2) };
            let (name, end) = name_at(&parts, at)?;
            if let Some(clause) = w.get(end) {
                // COMMENT, LOCATION, WITH DBPROPERTIES: not stored yet; say so rather than drop them.
                return Some(AthenaStatement::Unsupported(format!(
                    "CREATE DATABASE ... {clause} is not supported yet: databases have a name only"
                )));
            }
            let guard = if if_not_exists { "IF NOT EXISTS " } else { "" };
            Some(AthenaStatement::Rewritten(format!("CREATE SCHEMA {guard}{}", quote(name.last()?))))
        }
        ["DROP", "DATABASE", ..] => {
            let (if_exists, at) = if w.get(2..4) == Some(&["IF", "EXISTS"]) { (true, 4) } else { (false, 2) };
            let (name, end) = name_at(&parts, at)?;
            let cascade = match w.get(end..) {
                Some([]) | Some(["RESTRICT"]) => false,
                Some(["CASCADE"]) => true,
                _ => return None,
            };
            let guard = if if_exists { "IF EXISTS " } else { "" };
            let mode = if cascade { " CASCADE" } else { "" };
            Some(AthenaStatement::Rewritten(format!("DROP SCHEMA {guard}{}{mode}", quote(name.last()?))))
        }
        _ => None,
    }
}

/// A prepared statement's name, lowercased unless quoted.
fn prepared_name(part: &Part) -> Option<String> {
    match part {
        Part::Word(w) => Some(w.to_ascii_lowercase()),
        Part::Quoted(q) => Some(q.clone()),
        _ => None,
    }
}

/// The text of `sql` after its first `n` whitespace-separated words.
fn after_words(sql: &str, n: usize) -> Option<&str> {
    let mut rest = sql.trim_start();
    for _ in 0..n {
        let end = rest.find(char::is_whitespace)?;
        rest = rest[end..].trim_start();
    }
    Some(rest.trim_end().trim_end_matches(';').trim_end())
}

/// `a, f(b, c), 'x,y'`: the comma-separated SQL values of `EXECUTE ... USING`.
fn using_values(text: &str) -> Option<Vec<String>> {
    use datafusion::sql::sqlparser::ast::{SelectItem, SetExpr, Statement};
    let statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(&GenericDialect {}, &format!("SELECT {text}")).ok()?;
    let Some(Statement::Query(query)) = statements.first() else { return None };
    let SetExpr::Select(select) = query.body.as_ref() else { return None };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(expr) => Some(expr.to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recognize(sql: &str) -> Option<AthenaStatement> {
        super::recognize(sql, "default")
    }

    fn rewritten(sql: &str) -> String {
        match recognize(sql) {
            Some(AthenaStatement::Rewritten(s)) => s,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn recognizes_prepared_statements() {
        assert_eq!(
            recognize("PREPARE my_select FROM SELECT * FROM t WHERE x = ? AND y IN (?, 'a,b');"),
            Some(AthenaStatement::Prepare {
                name: "my_select".into(),
                statement: "SELECT * FROM t WHERE x = ? AND y IN (?, 'a,b')".into()
            })
        );
        assert_eq!(
            recognize("EXECUTE my_select USING 42, concat('a', 'b'), DATE '2023-01-01'"),
            Some(AthenaStatement::Execute {
                name: "my_select".into(),
                values: vec!["42".into(), "concat('a', 'b')".into(), "DATE '2023-01-01'".into()]
            })
        );
        assert_eq!(recognize("execute \"Q\""), Some(AthenaStatement::Execute { name: "Q".into(), values: vec![] }));
        assert_eq!(recognize("DEALLOCATE PREPARE my_select"), Some(AthenaStatement::Deallocate("my_select".into())));
    }

    #[test]
    fn recognizes_athena_statements() {
        assert!(rewritten("SHOW DATABASES").contains("information_schema.schemata"));
        assert!(rewritten("show schemas like 'sa*'").contains("schema_name LIKE 'sa%'"));
        let tables = rewritten("SHOW TABLES IN sales LIKE 'ord*|cust*';");
        assert!(tables.contains("table_schema = 'sales'"), "{tables}");
        assert!(tables.contains("table_name LIKE 'ord%' OR table_name LIKE 'cust%'"), "{tables}");
        assert!(rewritten("SHOW TABLES").contains("table_schema = 'default'"));
        assert!(matches!(recognize("CREATE DATABASE x LOCATION 's3://b/'"), Some(AthenaStatement::Unsupported(_))));
        assert_eq!(rewritten("CREATE DATABASE IF NOT EXISTS Sales"), "CREATE SCHEMA IF NOT EXISTS \"sales\"");
        assert_eq!(rewritten("DROP DATABASE \"Sales\" CASCADE"), "DROP SCHEMA \"Sales\" CASCADE");
        assert_eq!(
            recognize("SHOW CREATE TABLE db.\"T\""),
            Some(AthenaStatement::ShowCreateTable(vec!["db".into(), "T".into()]))
        );
        assert_eq!(recognize("SHOW PARTITIONS t"), Some(AthenaStatement::ShowPartitions(vec!["t".into()])));
        assert_eq!(recognize("MSCK REPAIR TABLE db.t;"), Some(AthenaStatement::RepairTable(vec!["db".into(), "t".into()])));
        assert_eq!(recognize("USE \"Sales\""), Some(AthenaStatement::Use(vec!["Sales".into()])));
        assert_eq!(
            recognize("ALTER TABLE t ADD IF NOT EXISTS PARTITION (Dt = '2023-06-18', \"H\" = 3) LOCATION 's3://b/x/' PARTITION (dt='a', h=4)"),
            Some(AthenaStatement::AddPartitions {
                table: vec!["t".into()],
                if_not_exists: true,
                partitions: vec![
                    (vec![("dt".into(), "2023-06-18".into()), ("H".into(), "3".into())], Some("s3://b/x/".into())),
                    (vec![("dt".into(), "a".into()), ("h".into(), "4".into())], None),
                ],
            })
        );
        assert_eq!(
            recognize("ALTER TABLE t DROP PARTITION (d = '1'), PARTITION (d = '2')"),
            Some(AthenaStatement::DropPartitions {
                table: vec!["t".into()],
                if_exists: false,
                partitions: vec![vec![("d".into(), "1".into())], vec![("d".into(), "2".into())]],
            })
        );
        assert_eq!(recognize("ALTER TABLE t ADD PARTITION (d = )"), None);
        assert_eq!(recognize("SELECT 1"), None);
        let columns = rewritten("SHOW COLUMNS IN t FROM \"Db\"");
        assert!(columns.contains("table_schema = 'Db' AND table_name = 't'"), "{columns}");
        assert!(rewritten("show columns from db.t").contains("table_schema = 'db'"));
    }
}
