//! Athena's `SHOW` statements about the catalog: `SHOW DATABASES`/`SCHEMAS [LIKE 'p']`, `SHOW
//! TABLES [IN db] [LIKE 'p']` and `SHOW COLUMNS {FROM|IN} t [{FROM|IN} db]` become queries on
//! `information_schema`, planned and run like any SQL; `SHOW CREATE TABLE` writes the catalog's
//! definition back as DDL.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use glaux_catalog::{DEFAULT_CATALOG, TableDef, show_create_table};
use glaux_proto::QueryId;

use super::words::{Part, Words, literal};
use super::{Context, Family, Recognized, Statement};
use crate::error::SchedulerError;
use crate::query::{ProgressSlot, QueryResult};

/// `SHOW CREATE TABLE [db.]t`.
pub(crate) struct ShowCreateTable(TableDef);

impl ShowCreateTable {
    /// `db.t`.
    pub fn table(&self) -> String {
        format!("{}.{}", self.0.database, self.0.name)
    }
}

#[async_trait]
impl Family for ShowCreateTable {
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("createtab_stmt", DataType::Utf8, false)]))
    }

    fn authorize(&self, ctx: &Context<'_>) -> Result<(), SchedulerError> {
        Ok(ctx.access.require_readable(&self.0.database, &self.0.name)?)
    }

    async fn run(
        &self,
        _ctx: &Context<'_>,
        query: QueryId,
        _progress: &ProgressSlot,
    ) -> Result<QueryResult, SchedulerError> {
        let ddl = StringArray::from(vec![show_create_table(&self.0)]);
        let batch =
            RecordBatch::try_new(self.schema(), vec![Arc::new(ddl)]).map_err(|e| SchedulerError::plan(e.into()))?;
        Ok(QueryResult::finished(query, self.schema(), vec![batch]))
    }
}

pub(super) fn recognize(words: &Words<'_>, ctx: &Context<'_>) -> Option<Result<Recognized, SchedulerError>> {
    let w = words.words();
    let database = ctx.session.database.as_str();
    let sql = match w.as_slice() {
        ["SHOW", "DATABASES" | "SCHEMAS", rest @ ..] => {
            let mut query = format!(
                "SELECT schema_name AS database_name FROM information_schema.schemata \
                 WHERE catalog_name = {} AND schema_name <> 'information_schema'",
                literal(DEFAULT_CATALOG)
            );
            if !rest.is_empty() {
                let pattern =
                    words.parts[2..].iter().find_map(|p| if let Part::Text(t) = p { Some(t) } else { None })?;
                query.push_str(&format!(" AND {}", like_clauses("schema_name", pattern)));
            }
            query + " ORDER BY 1"
        }
        ["SHOW", "TABLES", ..] => show_tables(words, database)?,
        ["SHOW", "COLUMNS", "FROM" | "IN", ..] => show_columns(words, database)?,
        ["SHOW", "CREATE", "TABLE", ..] => {
            let name = words.name_ending_at(3)?;
            let table = ctx.lake.table(&name, database).map_err(SchedulerError::from);
            return Some(table.map(|table| Recognized::Statement(Statement::ShowCreateTable(ShowCreateTable(table)))));
        }
        _ => return None,
    };
    Some(Ok(Recognized::Sql(sql)))
}

/// `SHOW TABLES [IN|FROM db] [[LIKE] 'pattern']`.
fn show_tables(words: &Words<'_>, database: &str) -> Option<String> {
    let w = words.words();
    let mut i = 2;
    let mut in_database = None;
    if matches!(w.get(i), Some(&"IN" | &"FROM")) {
        let (name, end) = words.name_at(i + 1)?;
        in_database = Some(name.last()?.clone());
        i = end;
    }
    if w.get(i) == Some(&"LIKE") {
        i += 1;
    }
    let pattern = match words.part(i) {
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
    Some(query + " ORDER BY 1")
}

/// Athena lists the names alone: `SHOW COLUMNS {FROM|IN} t [{FROM|IN} db]`.
fn show_columns(words: &Words<'_>, database: &str) -> Option<String> {
    let w = words.words();
    let (mut name, mut end) = words.name_at(3)?;
    if matches!(w.get(end), Some(&"FROM" | &"IN")) {
        let (database, after) = words.name_at(end + 1)?;
        name.insert(0, database.last()?.clone());
        end = after;
    }
    if end != words.len() {
        return None;
    }
    let (schema, table) = match name.as_slice() {
        [table] => (database, table),
        [.., schema, table] => (schema.as_str(), table),
        [] => return None,
    };
    Some(format!(
        "SELECT column_name AS field FROM information_schema.columns \
         WHERE table_catalog = {} AND table_schema = {} AND table_name = {} ORDER BY ordinal_position",
        literal(DEFAULT_CATALOG),
        literal(schema),
        literal(table)
    ))
}

/// Athena's SHOW patterns: `*` is any text, `|` separates alternatives.
fn like_clauses(column: &str, pattern: &str) -> String {
    let alternatives: Vec<String> =
        pattern.split('|').map(|p| format!("{column} LIKE {}", literal(&p.trim().replace('*', "%")))).collect();
    format!("({})", alternatives.join(" OR "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        let words = Words::of(sql).unwrap();
        match words.words().as_slice() {
            ["SHOW", "TABLES", ..] => show_tables(&words, "default").unwrap(),
            ["SHOW", "COLUMNS", ..] => show_columns(&words, "default").unwrap(),
            _ => panic!("{sql}"),
        }
    }

    #[test]
    fn show_statements_become_information_schema_queries() {
        let tables = rewritten("SHOW TABLES IN sales LIKE 'ord*|cust*';");
        assert!(tables.contains("table_schema = 'sales'"), "{tables}");
        assert!(tables.contains("table_name LIKE 'ord%' OR table_name LIKE 'cust%'"), "{tables}");
        assert!(rewritten("SHOW TABLES").contains("table_schema = 'default'"));
        let columns = rewritten("SHOW COLUMNS IN t FROM \"Db\"");
        assert!(columns.contains("table_schema = 'Db' AND table_name = 't'"), "{columns}");
        assert!(rewritten("show columns from db.t").contains("table_schema = 'db'"));
        assert_eq!(like_clauses("n", "sa*"), "(n LIKE 'sa%')");
    }
}
