//! Statement parameters: `?` placeholders numbered, their types described, values bound.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;

use crate::error::{ErrorKind, SchedulerError};

fn plan_error(message: String) -> SchedulerError {
    SchedulerError::refused(ErrorKind::InvalidStatement, message)
}

/// JDBC/ODBC/ADBC-style `?` placeholders as `$1`, `$2`, ... in order of appearance (DataFusion
/// reads every `?` as one and the same placeholder). Text that does not tokenize is left alone
/// for the planner to report.
pub(crate) fn number_question_marks(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    if !sql.contains('?') {
        return sql.into();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else { return sql.into() };
    // Where each `?` placeholder is, as a byte offset (spans count lines and characters from 1).
    let lines: Vec<&str> = sql.split('\n').collect();
    let line_starts: Vec<usize> = lines
        .iter()
        .scan(0, |offset, line| {
            let start = *offset;
            *offset += line.len() + 1;
            Some(start)
        })
        .collect();
    let offsets: Vec<usize> = tokens
        .iter()
        .filter(|t| matches!(&t.token, Token::Placeholder(p) if p == "?"))
        .filter_map(|t| {
            let (line, column) = (t.span.start.line as usize, t.span.start.column as usize);
            let text = lines.get(line.checked_sub(1)?)?;
            let within = text.char_indices().nth(column.checked_sub(1)?)?.0;
            Some(line_starts[line - 1] + within)
        })
        .filter(|&offset| sql.as_bytes().get(offset) == Some(&b'?'))
        .collect();
    if offsets.is_empty() {
        return sql.into();
    }
    let mut numbered = String::with_capacity(sql.len() + 2 * offsets.len());
    let mut copied = 0;
    for (i, offset) in offsets.into_iter().enumerate() {
        numbered.push_str(&sql[copied..offset]);
        numbered.push_str(&format!("${}", i + 1));
        copied = offset + 1;
    }
    numbered.push_str(&sql[copied..]);
    numbered.into()
}

/// `EXECUTE ... USING`: a prepared statement's text with each `?` (or `$n`) replaced by the
/// SQL value given for it, in parentheses. The count must match.
pub(crate) fn substitute_parameters(sql: &str, values: &[String]) -> Result<String, SchedulerError> {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let numbered = number_question_marks(sql);
    let tokens = Tokenizer::new(&GenericDialect {}, &numbered)
        .tokenize()
        .map_err(|e| plan_error(format!("the prepared statement does not read as SQL: {e}")))?;
    let index = |p: &str| p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|&n| n > 0);
    let parameters: std::collections::BTreeSet<usize> =
        tokens.iter().filter_map(|t| if let Token::Placeholder(p) = t { index(p) } else { None }).collect();
    if parameters.len() != values.len() || parameters.last().is_some_and(|&last| last != values.len()) {
        return Err(plan_error(format!(
            "EXECUTE gives {} value(s) for a statement with {} parameter(s)",
            values.len(),
            parameters.len()
        )));
    }
    let mut out = String::with_capacity(numbered.len());
    for token in &tokens {
        match token {
            Token::Placeholder(p) if index(p).is_some() => {
                let value = index(p)
                    .and_then(|n| values.get(n - 1))
                    .ok_or_else(|| plan_error(format!("unexpected parameter {p}")))?;
                out.push_str(&format!("({value})"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// The placeholders of `plan` in order, `$1` first.
pub(crate) fn parameter_schema(plan: &LogicalPlan) -> Result<SchemaRef, SchedulerError> {
    let mut placeholders: Vec<(usize, String, Option<DataType>)> = plan
        .get_parameter_fields()
        .map_err(SchedulerError::plan)?
        .into_iter()
        .map(|(name, field)| {
            let position = name.trim_start_matches('$').parse().unwrap_or(usize::MAX);
            (position, name, field.map(|f| f.data_type().clone()))
        })
        .collect();
    placeholders.sort();
    let fields: Vec<Field> = placeholders
        .into_iter()
        .map(|(_, name, data_type)| Field::new(name, data_type.unwrap_or(DataType::Utf8), true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// Puts the bound values into the plan's placeholders, each cast to the type its placeholder
/// compares with (a client binds a Python int as Int64 to a placeholder compared with an INT column).
pub(crate) fn bind_parameters(plan: LogicalPlan, values: &[ScalarValue]) -> Result<LogicalPlan, SchedulerError> {
    let types = plan.get_parameter_types().map_err(SchedulerError::plan)?;
    let values = values
        .iter()
        .enumerate()
        .map(|(i, value)| match types.get(&format!("${}", i + 1)) {
            Some(Some(data_type)) if value.data_type() != *data_type => value
                .cast_to(data_type)
                .map_err(|e| plan_error(format!("parameter ${}: cannot use {value} as {data_type}: {e}", i + 1))),
            _ => Ok(value.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    plan.with_param_values(values).map_err(SchedulerError::plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_values_take_the_parameters_places() {
        let sql = "SELECT * FROM t WHERE a = ? AND b IN (?, '?')";
        assert_eq!(
            substitute_parameters(sql, &["1".into(), "'x'".into()]).expect("substitutes"),
            "SELECT * FROM t WHERE a = (1) AND b IN (('x'), '?')"
        );
        assert!(substitute_parameters(sql, &["1".into()]).is_err());
        assert!(substitute_parameters("SELECT 1", &["1".into()]).is_err());
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(
            number_question_marks("SELECT a FROM t WHERE b = ? AND c > ? AND d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c > $2 AND d = '?'"
        );
        assert_eq!(number_question_marks("SELECT 'it''s' WHERE x = ?"), "SELECT 'it''s' WHERE x = $1");
        assert_eq!(number_question_marks("SELECT 1"), "SELECT 1");
        assert_eq!(
            number_question_marks("SELECT 'é'\n  , ? -- why?\n, \"a?\" FROM t"),
            "SELECT 'é'\n  , $1 -- why?\n, \"a?\" FROM t"
        );
    }
}
