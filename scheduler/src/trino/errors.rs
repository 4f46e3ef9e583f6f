//! Planning errors as a Trino user can act on them: an unknown function gets the closest names
//! Glaux knows, and type errors name Trino's types (`varchar`, `bigint`, not `Utf8`, `Int64`)
//! and the expression that failed.

use std::ops::ControlFlow;

use datafusion::common::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Statement, visit_expressions};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::SchedulerError;

/// A planning error of `sql`, worded for Trino users where DataFusion's words would not help.
/// Only the words change: the error's kind comes from `source` alone.
pub fn planning_error(source: DataFusionError, sql: &str, state: &SessionState) -> SchedulerError {
    match explain_plan_error(&source.to_string(), sql, state) {
        Some(message) => SchedulerError::Plan { message, source },
        None => SchedulerError::plan(source),
    }
}

/// A clearer text for a planning error of `sql`, or `None` to keep DataFusion's. DataFusion
/// says these in text only, so this reads the text; it chooses words, never what happens next.
fn explain_plan_error(message: &str, sql: &str, state: &SessionState) -> Option<String> {
    let message = message.trim_start_matches("Error during planning: ").trim_start_matches("Internal error: ");
    // "Cannot cast string 'abc' to value of Int32 type", from folding a cast of a literal.
    if let Some(at) = message.find("Cannot cast string '") {
        let rest = &message[at + "Cannot cast string ".len()..];
        if let Some((value, target)) = rest.rsplit_once(" to value of ") {
            return Some(format!("Cannot cast {value} to {}", trino_types(target.trim_end_matches(" type"))));
        }
    }
    if let Some(name) = quoted_after(message, "Invalid function '") {
        return Some(unknown_function(&name, state));
    }
    let statements = Parser::parse_sql(&GenericDialect {}, sql).unwrap_or_default();
    if let Some(rest) = message.strip_prefix("Cannot coerce arithmetic expression ") {
        let types = rest.trim_end_matches(" to valid types");
        let operator = types.split_whitespace().nth(1).unwrap_or_default();
        let found = find_binary(&statements, operator).map(|e| format!(" in {e}")).unwrap_or_default();
        return Some(format!("Cannot apply operator: {}{found}", trino_types(types)));
    }
    let function = quoted_after(message, "Function '")?;
    let signature_problem = message.contains("failed to match any signature")
        || message.contains("No function matches")
        || message.contains("expects")
        || message.contains("Unexpected parameters");
    if !signature_problem {
        return None;
    }
    let call = find_call(&statements, &function).map(|e| format!(" in {e}")).unwrap_or_default();
    // `upper(Int64)` → `(bigint)`.
    let arguments = quoted_after(message, "argument types '").map(|a| trino_types(&a[a.find('(').unwrap_or(0)..]));
    let candidates: Vec<&str> =
        message.split("\n\t").skip(1).map(str::trim).filter(|c| !c.is_empty() && !c.ends_with(':')).collect();
    if message.contains("Unexpected parameters") {
        // Glaux's own functions already say it Trino's way; add where.
        let first = message.lines().next().unwrap_or(message);
        return Some(first.replacen(
            &format!("for function {function}."),
            &format!("for function {function}{call}."),
            1,
        ));
    }
    let mut text = match arguments {
        Some(arguments) => format!("Unexpected parameters {arguments} for function {function}{call}"),
        None => {
            format!("Function {function} cannot take these arguments{call}: {}", trino_types(first_reason(message)))
        }
    };
    if !candidates.is_empty() {
        text.push_str(&format!(". Expected: {}", trino_types(&candidates.join(", "))));
    }
    Some(text)
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let end = message[start..].find('\'')?;
    Some(message[start..start + end].to_string())
}

/// The first reason DataFusion gives among several signatures' failures.
fn first_reason(message: &str) -> &str {
    let reason = message.split("errors: ").nth(1).unwrap_or(message);
    reason.split(".,").next().unwrap_or(reason).trim_start_matches("Error during planning: ")
}

/// Arrow type names in `text` as Trino's.
fn trino_types(text: &str) -> String {
    let names = [
        ("LargeUtf8", "varchar"),
        ("Utf8View", "varchar"),
        ("Utf8", "varchar"),
        ("String", "varchar"),
        ("Int8", "tinyint"),
        ("Int16", "smallint"),
        ("Int32", "integer"),
        ("Int64", "bigint"),
        ("UInt64", "bigint"),
        ("Float32", "real"),
        ("Float64", "double"),
        ("Boolean", "boolean"),
        ("Date32", "date"),
        ("BinaryView", "varbinary"),
        ("Binary", "varbinary"),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        let at_word_start = out.chars().last().is_none_or(|c| !c.is_alphanumeric());
        if at_word_start {
            for (arrow, trino) in names {
                if let Some(after) = rest.strip_prefix(arrow)
                    && after.chars().next().is_none_or(|c| !c.is_alphanumeric())
                {
                    out.push_str(trino);
                    rest = after;
                    continue 'outer;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

fn find_binary(statements: &[Statement], operator: &str) -> Option<String> {
    let mut found = None;
    for statement in statements {
        let _ = visit_expressions(statement, |expr| {
            if let Expr::BinaryOp { op, .. } = expr
                && symbol(op) == Some(operator)
            {
                found = Some(expr.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    found
}

fn symbol(op: &BinaryOperator) -> Option<&'static str> {
    Some(match op {
        BinaryOperator::Plus => "+",
        BinaryOperator::Minus => "-",
        BinaryOperator::Multiply => "*",
        BinaryOperator::Divide => "/",
        BinaryOperator::Modulo => "%",
        _ => return None,
    })
}

fn find_call(statements: &[Statement], function: &str) -> Option<String> {
    let mut found = None;
    for statement in statements {
        let _ = visit_expressions(statement, |expr| {
            if let Expr::Function(f) = expr
                && f.name.0.last().is_some_and(|part| part.to_string().eq_ignore_ascii_case(function))
            {
                found = Some(expr.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
    }
    found
}

/// "Function 'x' not registered", with the closest names this session knows.
fn unknown_function(name: &str, state: &SessionState) -> String {
    let mut known: Vec<&String> = state
        .scalar_functions()
        .keys()
        .chain(state.aggregate_functions().keys())
        .chain(state.window_functions().keys())
        .collect();
    known.sort();
    known.dedup();
    let suggestions = closest_names(name, known.into_iter().map(String::as_str));
    if suggestions.is_empty() {
        format!("Function '{name}' not registered (SHOW FUNCTIONS lists the functions Glaux knows)")
    } else {
        format!(
            "Function '{name}' not registered. Did you mean {}? (SHOW FUNCTIONS lists them all)",
            suggestions.join(", ")
        )
    }
}

/// Up to three names close to `name`: by edit distance, and names that contain it or that it
/// contains (`regexp` finds `regexp_like`, `dayofweek` finds `day_of_week`).
///
/// Bounded: a name longer than [`MAX_SUGGESTED_NAME`] gets no suggestions, and the distance is only
/// computed for names of about the same length, so the work per known name stays small whatever
/// the statement says.
pub fn closest_names<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Vec<String> {
    if name.len() > MAX_SUGGESTED_NAME {
        return Vec::new();
    }
    let name = name.to_lowercase();
    let squashed = name.replace('_', "");
    let limit = (name.len() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = known
        .filter(|k| !k.starts_with("__") && k.len() <= MAX_SUGGESTED_NAME)
        .filter_map(|k| {
            let related = (k.contains(&name) || name.contains(k)) && k.len() > 2;
            let close_in_length = k.len().abs_diff(name.len()) <= limit + k.matches('_').count();
            let distance = if close_in_length {
                edit_distance(&name, k).min(edit_distance(&squashed, &k.replace('_', "")))
            } else {
                usize::MAX
            };
            if distance <= limit || related {
                Some((if related { distance.min(limit) } else { distance }, k))
            } else {
                None
            }
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, k)| k.to_string()).collect()
}

/// Names longer than this (in bytes) are not compared by edit distance.
pub const MAX_SUGGESTED_NAME: usize = 128;

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_by_distance_and_containment() {
        let known = [
            "json_extract_scalar",
            "json_extract",
            "day_of_week",
            "regexp_like",
            "regexp_replace",
            "sqrt",
            "split_part",
            "split",
        ];
        assert_eq!(
            closest_names("json_extract_scaler", known.into_iter()),
            vec!["json_extract_scalar", "json_extract"]
        );
        assert_eq!(closest_names("dayofweek", known.into_iter()), vec!["day_of_week"]);
        assert_eq!(closest_names("regexp", known.into_iter()), vec!["regexp_like", "regexp_replace"]);
        assert!(closest_names("zzzzzzzz", known.into_iter()).is_empty());
        // A name built to be slow gets no suggestion, at once.
        let long = "json_extract_scalar".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(closest_names(&long, known.into_iter()).is_empty());
        let long_known = [long.as_str()];
        assert!(closest_names("json", long_known.into_iter()).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[test]
    fn cast_errors_name_the_value_and_type() {
        let state = datafusion::prelude::SessionContext::new().state();
        let message = "Optimizer rule 'simplify_expressions' failed\ncaused by\nArrow error: Cast error: Cannot cast string 'abc' to value of Int32 type";
        assert_eq!(explain_plan_error(message, "", &state).as_deref(), Some("Cannot cast 'abc' to integer"));
    }

    #[test]
    fn arrow_types_read_as_trino_types() {
        assert_eq!(trino_types("Utf8 + Int64"), "varchar + bigint");
        assert_eq!(trino_types("upper(Int64, Utf8View) Int64Array"), "upper(bigint, varchar) Int64Array");
    }
}
