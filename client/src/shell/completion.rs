//! Tab completion in the interactive shell: SQL keywords, meta commands, and the tables and
//! columns of the catalog (read when the shell starts and again after statements that change it).

use std::sync::{Arc, Mutex};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "BY",
    "ORDER",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "JOIN",
    "LEFT",
    "RIGHT",
    "FULL",
    "OUTER",
    "INNER",
    "CROSS",
    "ON",
    "USING",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "DISTINCT",
    "UNION",
    "ALL",
    "INTERSECT",
    "EXCEPT",
    "WITH",
    "VALUES",
    "CAST",
    "TRY_CAST",
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "OVER",
    "PARTITION",
    "WINDOW",
    "ROWS",
    "RANGE",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "EXPLAIN",
    "ANALYZE",
    "DESCRIBE",
    "SHOW",
    "TABLES",
    "DATABASES",
    "SCHEMAS",
    "COLUMNS",
    "PARTITIONS",
    "CREATE",
    "EXTERNAL",
    "TABLE",
    "DATABASE",
    "DROP",
    "IF",
    "EXISTS",
    "STORED",
    "PARQUET",
    "JSON",
    "CSV",
    "LOCATION",
    "PARTITIONED",
    "TBLPROPERTIES",
    "ROW",
    "FORMAT",
    "SERDE",
    "MSCK",
    "REPAIR",
    "ALTER",
    "ADD",
    "USE",
    "DATE",
    "TIMESTAMP",
    "INTERVAL",
    "UNNEST",
    "TRUE",
    "FALSE",
];

const META_COMMANDS: &[&str] = &["\\?", "\\d", "\\dt", "\\timing", "\\o", "\\format", "\\x", "\\q"];

/// Names the catalog holds: tables (qualified and not) and columns.
#[derive(Clone, Debug, Default)]
pub struct CatalogWords(Arc<Mutex<Vec<String>>>);

impl CatalogWords {
    pub fn replace(&self, mut words: Vec<String>) {
        words.sort();
        words.dedup();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = words;
    }

    fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct ShellHelper {
    pub catalog: CatalogWords,
}

impl ShellHelper {
    /// Candidates for the word `prefix` (keywords in the case the user is typing them).
    fn candidates(&self, prefix: &str, meta: bool) -> Vec<String> {
        if meta {
            return META_COMMANDS.iter().filter(|c| c.starts_with(prefix)).map(|c| c.to_string()).collect();
        }
        let lower = prefix.to_ascii_lowercase();
        let upper = prefix.chars().next().is_some_and(char::is_uppercase);
        let mut found: Vec<String> =
            self.catalog.snapshot().into_iter().filter(|w| w.to_ascii_lowercase().starts_with(&lower)).collect();
        found.extend(
            KEYWORDS
                .iter()
                .filter(|k| k.to_ascii_lowercase().starts_with(&lower))
                .map(|k| if upper { k.to_string() } else { k.to_ascii_lowercase() }),
        );
        found.dedup();
        found
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '\\')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let prefix = &before[start..];
        if prefix.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let meta = prefix.starts_with('\\') && before[..start].trim().is_empty();
        let pairs = self
            .candidates(prefix, meta)
            .into_iter()
            .map(|word| Pair { display: word.clone(), replacement: word })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}

impl Highlighter for ShellHelper {}

impl Validator for ShellHelper {}

impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_keywords_tables_columns_and_meta_commands() {
        let catalog = CatalogWords::default();
        catalog.replace(vec!["sales".into(), "default.sales".into(), "region".into(), "qty".into()]);
        let helper = ShellHelper { catalog };
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let complete = |line: &str| {
            let (start, pairs) = helper.complete(line, line.len(), &ctx).expect("complete");
            (start, pairs.into_iter().map(|p| p.replacement).collect::<Vec<_>>())
        };
        assert_eq!(complete("SELECT * FROM sa"), (14, vec!["sales".to_string()]));
        assert_eq!(complete("select reg"), (7, vec!["region".to_string()]));
        assert_eq!(complete("SEL"), (0, vec!["SELECT".to_string()]));
        assert_eq!(complete("sel"), (0, vec!["select".to_string()]));
        assert_eq!(complete("\\ti"), (0, vec!["\\timing".to_string()]));
        assert_eq!(complete("SELECT * FROM default.s"), (14, vec!["default.sales".to_string()]));
    }
}
