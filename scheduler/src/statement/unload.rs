//! `UNLOAD (SELECT ...) TO 'location' WITH (format = ..., compression = ..., partitioned_by = ARRAY[...],
//! field_delimiter = ...)`: a query's rows written as files, registered nowhere.
//!
//! The location must be empty, as Athena requires (a warehouse-root path or a configured bucket,
//! and the user needs `LOCATION` on it). The rows are written and published as a CTAS writes them
//! (`write/`): a failed or cancelled UNLOAD leaves nothing there.

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use glaux_proto::QueryId;

use super::create_table_as::{Value, WriteOptions, byte_offset, read_properties, refused, rows_schema, written_result};
use super::{Context, Family};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};
use crate::write::StagedWrite;

/// An UNLOAD as written, before its query is planned.
#[derive(Debug, PartialEq)]
pub(super) struct Parsed {
    pub query: String,
    pub location: String,
    pub properties: Vec<(String, Value)>,
}

pub(crate) struct Unload {
    location: String,
    options: WriteOptions,
    plan: LogicalPlan,
}

/// Reads `sql` as an UNLOAD: `None` if it does not start with the word UNLOAD.
pub(super) fn parse(sql: &str) -> Option<Result<Parsed, SchedulerError>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location().ok()?;
    let tokens: Vec<TokenWithSpan> =
        tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon)).collect();
    let is_word = |i: usize, word: &str| matches!(tokens.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    if !is_word(0, "UNLOAD") {
        return None;
    }
    Some(parse_unload(sql, &tokens, is_word))
}

fn parse_unload(
    sql: &str,
    tokens: &[TokenWithSpan],
    is_word: impl Fn(usize, &str) -> bool,
) -> Result<Parsed, SchedulerError> {
    if tokens.get(1).map(|t| &t.token) != Some(&Token::LParen) {
        return Err(refused("UNLOAD needs its query in parentheses: UNLOAD (SELECT ...) TO 'location'"));
    }
    // The query is everything up to the parenthesis that closes the first.
    let mut depth = 0usize;
    let mut close = None;
    for (i, token) in tokens.iter().enumerate().skip(1) {
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| refused("UNLOAD's query has no closing parenthesis"))?;
    let at = |i: usize| tokens.get(i).map_or(sql.len(), |t| byte_offset(sql, t.span.start.line, t.span.start.column));
    let query = sql.get(at(2)..at(close)).unwrap_or_default().trim().to_string();
    if query.is_empty() {
        return Err(refused("UNLOAD needs a query"));
    }
    if !is_word(close + 1, "TO") {
        return Err(refused("UNLOAD (...) needs TO 'location'"));
    }
    let location = match tokens.get(close + 2).map(|t| &t.token) {
        Some(Token::SingleQuotedString(l)) => {
            if l.ends_with('/') {
                l.clone()
            } else {
                format!("{l}/")
            }
        }
        _ => return Err(refused("UNLOAD ... TO needs a location in quotes")),
    };
    let mut i = close + 3;
    let mut properties = Vec::new();
    if is_word(i, "WITH") && tokens.get(i + 1).map(|t| &t.token) == Some(&Token::LParen) {
        i += 2;
        properties = read_properties(tokens, &mut i)?;
    }
    if i < tokens.len() {
        return Err(refused(format!("unexpected '{}' after UNLOAD's properties", tokens[i].token)));
    }
    Ok(Parsed { query, location, properties })
}

impl Unload {
    pub(super) fn try_new(parsed: Parsed, plan: LogicalPlan) -> Result<Self, SchedulerError> {
        let options = WriteOptions::read(parsed.properties, &plan, "compression", "UNLOAD")?;
        Ok(Self { location: parsed.location, options, plan })
    }

    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }
}

#[async_trait]
impl Family for Unload {
    fn schema(&self) -> SchemaRef {
        rows_schema()
    }

    // Like a query, it runs when its result (the rows it wrote) is fetched.

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        ctx.access.require_location(&self.location)?;
        Ok(())
    }

    async fn run(
        &self,
        ctx: &Context<'_>,
        query: QueryId,
        progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        ctx.lake
            .storage()
            .check_location(&self.location)
            .map_err(|e| SchedulerError::from(glaux_catalog::CatalogError::from(e)))?;
        let mut staged = StagedWrite::begin(
            &ctx.state,
            ctx.lake.catalog(),
            &self.location,
            &query,
            self.options.partitioned_by.clone(),
        )?;
        staged.require_empty_location("UNLOAD").await?;
        let (catalog, id) = (ctx.lake.catalog(), query.to_string());
        let format = (self.options.format.clone(), self.options.compression);
        // Nothing to register: the files are the result once the journal lets them be.
        let written = staged
            .run(ctx.queries, &ctx.state, &self.plan, format, progress, |_| {
                Ok(catalog.record_write_targets(&id, &[], &[])?)
            })
            .await;
        written_result(query, written?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unload_is_read_with_its_query_location_and_properties() {
        let parsed =
            parse("UNLOAD (SELECT a, (b) FROM t WHERE c IN (1, 2)) TO 's3://b/out' WITH (format = 'JSON', partitioned_by = ARRAY['a']);")
                .unwrap()
                .unwrap();
        assert_eq!(parsed.query, "SELECT a, (b) FROM t WHERE c IN (1, 2)");
        assert_eq!(parsed.location, "s3://b/out/");
        assert_eq!(parsed.properties.len(), 2);
        assert!(parse("SELECT 1").is_none());
        for bad in [
            "UNLOAD SELECT 1 TO 'x'",
            "UNLOAD (SELECT 1 TO 'x'",
            "UNLOAD (SELECT 1) 'x'",
            "UNLOAD (SELECT 1) TO x",
            "UNLOAD (SELECT 1) TO 'x' junk",
        ] {
            assert!(parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
