//! Trino's SQL, as Athena users write it, turned into statements DataFusion plans.
//!
//! A statement goes through three steps before DataFusion's planner sees it:
//! 1. `check_quotes`: typographic quotes (`‘Watches’`, pasted from a document) are refused
//!    with their position, before they turn into a confusing parse error.
//! 2. `type_syntax`: Trino's type syntax (`ARRAY(bigint)`, `ROW(x integer)`, `VARBINARY`),
//!    rewritten token by token into what the SQL parser reads; `time_travel`: `t FOR VERSION |
//!    TIMESTAMP AS OF x` into the name of that snapshot of a Delta table (`"t$version=3"`).
//! 3. After parsing, the AST rewrites: `CROSS JOIN UNNEST(...) [WITH ORDINALITY] AS t(x)`
//!    (`rewrite_unnest`), `TABLESAMPLE` (`rewrite_tablesample`), `AT TIME ZONE` on a timestamp
//!    without a zone (`rewrite_at_time_zone`), casts of `ROW(...)` to named rows
//!    (`rewrite_row_cast`), and Athena's names for unnamed result columns
//!    (`name_columns`: `_col0`, `_col1`, ...).
//!
//! `types.rs` plans the types DataFusion's SQL layer does not know (`MAP(K, V)`),
//! `trino_casts.rs` (an analyzer rule) makes casts round and format as Trino's do, and
//! `errors.rs` makes planning errors read like Trino's (closest function names, Trino type
//! names). The functions themselves are `glaux-functions`, registered here and on executors.

mod check_quotes;
mod errors;
mod name_columns;
mod rewrite_at_time_zone;
mod rewrite_row_cast;
mod rewrite_tablesample;
mod rewrite_unnest;
mod time_travel;
mod trino_casts;
mod type_syntax;
mod types;

use std::collections::HashMap;

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::execution::SessionState;
use datafusion::sql::parser::Statement;

pub use errors::{closest_names, planning_error};
pub use trino_casts::TrinoCasts;
pub use types::TrinoTypes;

/// Refuses typographic quotes outside literals, with where they are and what to type instead.
pub fn check_quotes(sql: &str) -> std::result::Result<(), String> {
    check_quotes::check(sql)
}

/// Parses one statement of Trino SQL into a statement DataFusion can plan (after
/// [`check_quotes`]).
pub async fn parse(state: &SessionState, sql: &str) -> Result<Statement> {
    let sql = type_syntax::rewrite(sql);
    let sql = time_travel::rewrite(state, &sql).await?;
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(&sql, &dialect)?;
    if let Statement::Statement(statement) = &mut statement {
        // An UNNEST may need its array's type: rewritten on a copy first, to learn which.
        if contains_word(&sql.to_ascii_uppercase(), "UNNEST") {
            let mut first = statement.clone();
            let probes = rewrite_unnest::rewrite(&mut first, &HashMap::new())?;
            if probes.is_empty() {
                *statement = first;
            } else {
                let types = array_types(state, &probes).await;
                rewrite_unnest::rewrite(statement, &types)?;
            }
        }
        rewrite_tablesample::rewrite(statement)?;
        rewrite_at_time_zone::rewrite(statement);
        rewrite_row_cast::rewrite(statement)?;
        name_columns::rewrite(statement);
    }
    Ok(statement)
}

/// Whether `upper` (uppercased text) holds `word` whole, not inside a longer name (`ROW` in
/// `ROW(x int)`, not in `'brown'`): the cheap test that spares a statement a tokenization for a
/// rewrite it does not need (TPC-DS q41's colors cost 0.15 ms). Anything but a letter, a digit or
/// `_` bounds a word, so a doubtful case is tokenized.
pub(crate) fn contains_word(upper: &str, word: &str) -> bool {
    let in_name = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    upper
        .match_indices(word)
        .any(|(at, _)| !in_name(upper[..at].chars().next_back()) && !in_name(upper[at + word.len()..].chars().next()))
}

/// The types of the arrays UNNEST probes name, as far as they plan (a probe that does not, for
/// a table it cannot see alone, leaves its UNNEST to the rewrite without a type).
async fn array_types(state: &SessionState, probes: &[rewrite_unnest::Probe]) -> HashMap<String, DataType> {
    let dialect = state.config().options().sql_parser.dialect;
    let mut types = HashMap::new();
    for probe in probes {
        let Ok(statement) = state.sql_to_statement(&probe.sql, &dialect) else { continue };
        if let Ok(plan) = state.statement_to_plan(statement).await
            && let Some(field) = plan.schema().fields().first()
        {
            types.insert(probe.key.clone(), field.data_type().clone());
        }
    }
    types
}
