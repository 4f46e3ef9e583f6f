//! `SHOW FUNCTIONS [LIKE 'pattern']`: every function a query may call, Trino's and DataFusion's,
//! with its kind, whether it is deterministic, and its description where it has one. Replaces
//! DataFusion's listing, which leaves out functions whose argument types are decided per call.

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Documentation, Volatility};
use glaux_proto::QueryId;

use super::words::{Part, Words};
use super::{Context, Family, Recognized, Statement};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

/// `SHOW FUNCTIONS [LIKE 'pattern']`.
pub(crate) struct ShowFunctions {
    pattern: Option<String>,
}

pub(super) fn recognize(words: &Words<'_>, _ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let pattern = match (words.words().as_slice(), words.part(3)) {
        (["SHOW", "FUNCTIONS"], _) => None,
        (["SHOW", "FUNCTIONS", "LIKE", _], Some(Part::Text(pattern))) => Some(pattern.clone()),
        _ => return None,
    };
    Some(Ok(Recognized::Statement(Statement::ShowFunctions(ShowFunctions { pattern }))))
}

#[async_trait]
impl Family for ShowFunctions {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("function", DataType::Utf8, false),
            Field::new("function_type", DataType::Utf8, false),
            Field::new("deterministic", DataType::Boolean, false),
            Field::new("description", DataType::Utf8, false),
        ]))
    }

    fn authorize(&self, _ctx: &Context<'_>) -> Result<(), SchedulerError> {
        // Functions are no one's: everyone may list them.
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let batch = functions(&ctx.state, self.schema(), self.pattern.as_deref()).map_err(SchedulerError::plan)?;
        Ok(QueryResult::finished(query, self.schema(), vec![batch]))
    }
}

/// The functions whose names match `pattern` (SQL `LIKE`: `%`, `_`; Athena's `*` too), by name.
fn functions(state: &SessionState, schema: SchemaRef, pattern: Option<&str>) -> Result<RecordBatch> {
    // The description's first line: a listing, not a manual.
    let describe = |docs: Option<&Documentation>| {
        docs.and_then(|d| d.description.lines().find(|l| !l.trim().is_empty()).map(str::to_string)).unwrap_or_default()
    };
    let mut rows: Vec<(String, &str, bool, String)> = Vec::new();
    for (name, udf) in state.scalar_functions() {
        rows.push((
            name.clone(),
            "scalar",
            udf.signature().volatility == Volatility::Immutable,
            describe(udf.documentation()),
        ));
    }
    for (name, udaf) in state.aggregate_functions() {
        rows.push((
            name.clone(),
            "aggregate",
            udaf.signature().volatility == Volatility::Immutable,
            describe(udaf.documentation()),
        ));
    }
    for (name, udwf) in state.window_functions() {
        rows.push((
            name.clone(),
            "window",
            udwf.signature().volatility == Volatility::Immutable,
            describe(udwf.documentation()),
        ));
    }
    rows.retain(|(name, ..)| !name.starts_with("__") && pattern.is_none_or(|p| like(name, p)));
    rows.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    rows.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.2)))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3.as_str()))),
        ],
    )?)
}

/// SQL `LIKE` (with `*` as `%`), case-insensitive as function names are.
///
/// Iterative, remembering only the last `%`: O(name x pattern) steps at worst and no recursion, so
/// a pattern of many `%` can neither backtrack exponentially nor overflow the stack.
fn like(name: &str, pattern: &str) -> bool {
    let name: Vec<char> = name.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    let (mut n, mut p) = (0, 0);
    // After the last `%` seen: where the pattern resumes, and where in the name it last tried.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('%' | '*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some('_') => {
                n += 1;
                p += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&name[n]) => {
                n += 1;
                p += 1;
            }
            _ => match star {
                // Let the last `%` swallow one more character and try again from there.
                Some((resume, tried)) => {
                    star = Some((resume, tried + 1));
                    n = tried + 1;
                    p = resume;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| matches!(c, '%' | '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("json_extract_scalar", "json_extract%"));
        assert!(like("json_extract_scalar", "JSON*SCALAR"));
        assert!(like("date_add", "date_ad_"));
        assert!(!like("date_add", "date"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("abcabd", "%ab_"));
        assert!(like("mississippi", "m%iss%pi"));
        assert!(!like("mississippi", "m%iss%pix"));
        assert!(like("aaa", "a%a%a"));
        assert!(!like("aa", "a%a%a"));

        // Built to be slow or deep: many `%` against a name that almost matches, and a pattern
        // of a million `%`.
        let started = std::time::Instant::now();
        let name = "a".repeat(200);
        assert!(!like(&name, &format!("{}b", "%a".repeat(100))));
        assert!(like(&name, &"%".repeat(1_000_000)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    /// LIKE by its definition: a table of which name prefixes match which pattern prefixes.
    fn like_by_definition(name: &str, pattern: &str) -> bool {
        let name: Vec<char> = name.chars().map(|c| c.to_ascii_lowercase()).collect();
        let pattern: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
        // matches[i][j]: name[..i] matches pattern[..j].
        let mut matches = vec![vec![false; pattern.len() + 1]; name.len() + 1];
        matches[0][0] = true;
        for j in 1..=pattern.len() {
            matches[0][j] = matches[0][j - 1] && matches!(pattern[j - 1], '%' | '*');
        }
        for i in 1..=name.len() {
            for j in 1..=pattern.len() {
                matches[i][j] = match pattern[j - 1] {
                    '%' | '*' => matches[i - 1][j] || matches[i][j - 1],
                    '_' => matches[i - 1][j - 1],
                    c => c == name[i - 1] && matches[i - 1][j - 1],
                };
            }
        }
        matches[name.len()][pattern.len()]
    }

    proptest::proptest! {
        #[test]
        fn like_agrees_with_its_definition(name in "[abA_%]{0,12}", pattern in "[ab_%*A]{0,10}") {
            proptest::prop_assert_eq!(like(&name, &pattern), like_by_definition(&name, &pattern));
        }
    }
}
