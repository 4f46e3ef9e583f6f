//! Trino's time travel, `t FOR VERSION AS OF 3` and `t FOR TIMESTAMP AS OF <expression>`,
//! rewritten token by token into the name of the snapshot (`"t$version=3"`,
//! `"t$timestamp=<ms>"`), which the catalog resolves to the Delta table at that version. The
//! timestamp is evaluated here, once, as a constant (a timestamp without a zone is UTC).

use datafusion::arrow::array::{Array, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};
use glaux_catalog::{DeltaSnapshot, snapshot_name};

/// Words that end a `FOR TIMESTAMP AS OF` expression when met outside parentheses.
const ENDS_EXPRESSION: [&str; 22] = [
    "AS",
    "WHERE",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "FULL",
    "CROSS",
    "NATURAL",
    "ON",
    "USING",
    "GROUP",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "HAVING",
    "WINDOW",
    "OFFSET",
    "FETCH",
    "FOR",
];
/// Words that continue an expression after an operand (`INTERVAL '1' HOUR`, `... AT TIME ZONE`).
const CONTINUES_OPERAND: [&str; 16] = [
    "YEAR", "MONTH", "WEEK", "DAY", "HOUR", "MINUTE", "SECOND", "TO", "AT", "TIME", "ZONE", "AND", "OR", "IS", "NOT",
    "BETWEEN",
];
/// Words after which an operand follows (so a word after them is not an alias).
const TAKES_OPERAND: [&str; 12] =
    ["TIMESTAMP", "DATE", "TIME", "INTERVAL", "AT", "ZONE", "NOT", "AND", "OR", "IS", "BETWEEN", "CAST"];

/// `sql` with each time-travel clause turned into its snapshot's table name; unchanged when it
/// has none.
pub async fn rewrite(state: &SessionState, sql: &str) -> Result<String> {
    let upper = sql.to_ascii_uppercase();
    let word = |w| super::contains_word(&upper, w);
    if !(word("VERSION") || word("TIMESTAMP")) || !word("OF") {
        return Ok(sql.to_string());
    }
    let Ok(mut tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return Ok(sql.to_string()) };
    let mut changed = false;
    let mut i = 0;
    while i < tokens.len() {
        let Some((kind, after)) = clause_at(&tokens, i) else {
            i += 1;
            continue;
        };
        let Some(name_at) = (0..i).rev().find(|&j| !matches!(tokens[j], Token::Whitespace(_))) else {
            return plan_err!("FOR {kind} AS OF must follow a table name");
        };
        let Token::Word(table) = tokens[name_at].clone() else {
            return plan_err!("FOR {kind} AS OF must follow a table name");
        };
        let (snapshot, end) = if kind == "VERSION" {
            let at = next_significant(&tokens, after).unwrap_or(tokens.len());
            let version = match tokens.get(at) {
                Some(Token::Number(n, _)) => n.parse::<u64>().ok(),
                _ => None,
            };
            let Some(version) = version else { return plan_err!("FOR VERSION AS OF takes a version number") };
            (DeltaSnapshot::Version(version), at + 1)
        } else {
            let end = expression_end(&tokens, after);
            let expression: String = tokens[after..end].iter().map(ToString::to_string).collect();
            (DeltaSnapshot::AsOf(timestamp_millis(state, expression.trim()).await?), end)
        };
        // Unquoted names are lower case, as the planner would make them.
        let base = if table.quote_style.is_some() { table.value.clone() } else { table.value.to_lowercase() };
        tokens[name_at] = Token::Word(Word {
            value: snapshot_name(&base, snapshot),
            quote_style: Some('"'),
            keyword: Keyword::NoKeyword,
        });
        tokens.drain(name_at + 1..end);
        changed = true;
        i = name_at + 1;
    }
    Ok(if changed { tokens.iter().map(ToString::to_string).collect() } else { sql.to_string() })
}

/// At `i`, `FOR VERSION|TIMESTAMP AS OF`: which, and the index after `OF`.
fn clause_at(tokens: &[Token], i: usize) -> Option<(&'static str, usize)> {
    if !word_is(&tokens[i], "FOR") {
        return None;
    }
    let kind_at = next_significant(tokens, i + 1)?;
    let kind = ["VERSION", "TIMESTAMP"].into_iter().find(|k| word_is(&tokens[kind_at], k))?;
    let as_at = next_significant(tokens, kind_at + 1)?;
    let of_at = next_significant(tokens, as_at + 1)?;
    (word_is(&tokens[as_at], "AS") && word_is(&tokens[of_at], "OF")).then_some((kind, of_at + 1))
}

/// Where the expression starting at `from` ends: at a clause word, a comma, a closing
/// parenthesis or `;` outside parentheses, or at an alias after a complete literal.
fn expression_end(tokens: &[Token], from: usize) -> usize {
    let mut depth = 0usize;
    let mut previous: Option<&Token> = None;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        match token {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => return i,
            Token::RParen => depth -= 1,
            Token::Comma | Token::SemiColon if depth == 0 => return i,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                let upper = w.value.to_ascii_uppercase();
                if ENDS_EXPRESSION.contains(&upper.as_str()) {
                    return i;
                }
                // An alias: a word right after a complete operand (a literal, `)`, a function
                // without parentheses such as `current_timestamp`).
                let after_operand = match previous {
                    Some(Token::SingleQuotedString(_) | Token::Number(..) | Token::RParen) => true,
                    Some(Token::Word(p)) => !TAKES_OPERAND.contains(&p.value.to_ascii_uppercase().as_str()),
                    _ => false,
                };
                if after_operand && !CONTINUES_OPERAND.contains(&upper.as_str()) {
                    return i;
                }
            }
            _ => {}
        }
        previous = Some(token);
    }
    tokens.len()
}

/// The constant `expression` as milliseconds since the epoch (UTC).
async fn timestamp_millis(state: &SessionState, expression: &str) -> Result<i64> {
    if expression.is_empty() {
        return plan_err!("FOR TIMESTAMP AS OF takes a timestamp");
    }
    let plan = state.create_logical_plan(&format!("SELECT {expression}")).await?;
    let mut reads_tables = false;
    plan.apply_with_subqueries(|node| {
        reads_tables |= matches!(node, LogicalPlan::TableScan(_));
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })?;
    let data_type = plan.schema().field(0).data_type().clone();
    if reads_tables || !matches!(data_type, DataType::Timestamp(..) | DataType::Date32 | DataType::Date64) {
        return plan_err!("FOR TIMESTAMP AS OF takes a constant timestamp, not {expression} ({data_type})");
    }
    let batches = DataFrame::new(state.clone(), plan).collect().await?;
    let column = batches.first().filter(|b| b.num_rows() == 1).map(|b| b.column(0).clone());
    let Some(column) = column else { return plan_err!("FOR TIMESTAMP AS OF {expression} has no value") };
    let millis = cast(&column, &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())))?;
    let millis = millis
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .filter(|m| m.is_valid(0))
        .map(|m| m.value(0))
        .ok_or_else(|| DataFusionError::Plan(format!("FOR TIMESTAMP AS OF {expression} is null")))?;
    Ok(millis)
}

fn next_significant(tokens: &[Token], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !matches!(tokens[i], Token::Whitespace(_)))
}

fn word_is(token: &Token, name: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(name))
}
