//! `pg_catalog` as PostgreSQL clients' reflection queries expect its columns, over
//! `datafusion-pg-catalog`'s tables: SQLAlchemy (and so Superset) reads a table's keys and indexes
//! with `a.attnum = ANY(ix.indkey)`, `unnest(ix.indkey)` and `i.reloptions`, which need arrays
//! where that crate keeps PostgreSQL's own system rows as text, and a column it lacks.
//!
//! - `pg_index` and `pg_constraint` are empty, with their `int2vector`/`oidvector` columns as
//!   arrays: lake tables have no indexes and declare no keys, and the rows the crate carries
//!   describe a PostgreSQL server's own system tables, which are not Glaux's.
//! - `pg_class` gains `reloptions` (NULL: no relation of Glaux's has storage options).
//! - OIDs agree between statements: the crate numbers catalogs, schemas and tables as each table
//!   first meets them, and `pg_class` meets the catalog and schema before the tables where
//!   `pg_attribute` meets tables first; a client that reads a table's oid from `pg_class` and its
//!   columns from `pg_attribute` in a second statement (SQLAlchemy does) would find none. So
//!   `pg_class` is listed once, first, when any of `pg_class`, `pg_attribute`, `pg_namespace` or
//!   `pg_database` is planned.
//!
//! Every other table is the crate's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::{MemTable, provider_as_source};
use datafusion::logical_expr::{LogicalPlanBuilder, col, lit};

/// `pg_catalog` reshaped where clients need it (see the module's documentation).
#[derive(Debug)]
pub struct ShapedPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    /// `pg_class` has numbered every object, or is numbering them now.
    numbering: AtomicBool,
}

impl ShapedPgCatalog {
    pub fn new(inner: Arc<dyn SchemaProvider>) -> Self {
        Self { inner, numbering: AtomicBool::new(false) }
    }

    /// Lists `pg_class` once, so that objects get the OIDs `pg_class` gives them. Listing it
    /// reads this schema's own tables (they are relations too), so a call made while it runs
    /// returns at once rather than wait for itself (the listing holds the crate's OID lock); so
    /// does a concurrent statement's (it shares this schema's numbering, which stays consistent
    /// within it).
    async fn number_objects(&self) -> Result<()> {
        if self.numbering.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(classes) = self.inner.table("pg_class").await? {
            let ctx = datafusion::prelude::SessionContext::new();
            let plan = classes.scan(&ctx.state(), None, &[], None).await?;
            datafusion::physical_plan::collect(plan, ctx.task_ctx()).await?;
        }
        Ok(())
    }
}

/// Replaces `catalog`'s `pg_catalog` schema in `ctx` with its reshaped self.
pub fn reshape(ctx: &datafusion::prelude::SessionContext, catalog: &str) -> Result<()> {
    let catalog = ctx
        .catalog(catalog)
        .ok_or_else(|| datafusion::common::DataFusionError::Plan(format!("no catalog {catalog}")))?;
    if let Some(schema) = catalog.schema("pg_catalog") {
        catalog.register_schema("pg_catalog", Arc::new(ShapedPgCatalog::new(schema)))?;
    }
    Ok(())
}

/// The array columns of the empty tables, and their element types.
fn array_column(table: &str, column: &str) -> Option<DataType> {
    match (table, column) {
        ("pg_index", "indkey" | "indoption") => Some(DataType::Int16),
        ("pg_index", "indclass" | "indcollation") => Some(DataType::Int32),
        ("pg_constraint", "conkey" | "confkey") => Some(DataType::Int16),
        ("pg_constraint", "conpfeqop" | "conppeqop" | "conffeqop" | "conexclop") => Some(DataType::Int32),
        _ => None,
    }
}

/// `table`'s columns, empty, its vectors as arrays.
fn emptied(table: &str, provider: &dyn TableProvider) -> Result<Arc<dyn TableProvider>> {
    let fields: Vec<Field> = provider
        .schema()
        .fields()
        .iter()
        .map(|field| match array_column(table, field.name()) {
            Some(element) => Field::new(field.name(), DataType::new_list(element, true), true),
            None => field.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?))
}

/// `pg_class` with a `reloptions` column of NULLs.
fn with_reloptions(provider: Arc<dyn TableProvider>) -> Result<Arc<dyn TableProvider>> {
    let columns = provider.schema().fields().iter().map(|f| col(f.name().as_str())).collect::<Vec<_>>();
    let options = lit(ScalarValue::try_from(DataType::new_list(DataType::Utf8, true))?).alias("reloptions");
    let plan = LogicalPlanBuilder::scan("pg_class", provider_as_source(provider), None)?
        .project(columns.into_iter().chain([options]))?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

#[async_trait]
impl SchemaProvider for ShapedPgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let lower = name.to_ascii_lowercase();
        // At planning, before any of them is listed: a listing holds the crate's OID lock while it
        // reads this schema's tables, so numbering must not start from inside one.
        if matches!(lower.as_str(), "pg_class" | "pg_attribute" | "pg_namespace" | "pg_database") {
            self.number_objects().await?;
        }
        let Some(table) = self.inner.table(name).await? else { return Ok(None) };
        Ok(Some(match lower.as_str() {
            lower @ ("pg_index" | "pg_constraint") => emptied(lower, table.as_ref())?,
            "pg_class" if table.schema().field_with_name("reloptions").is_err() => with_reloptions(table)?,
            _ => table,
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// A session with the reshaped pg_catalog and a table `sales`.
    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        fresh_pg_catalog(&ctx);
        ctx.sql("CREATE TABLE sales (id BIGINT, product VARCHAR)").await.unwrap().collect().await.unwrap();
        ctx
    }

    /// A new pg_catalog (numbering objects anew), as each of Glaux's statements gets.
    fn fresh_pg_catalog(ctx: &SessionContext) {
        let empty = datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
        datafusion_pg_catalog::setup_pg_catalog(ctx, "datafusion", empty).unwrap();
        reshape(ctx, "datafusion").unwrap();
    }

    #[tokio::test]
    async fn keys_and_indexes_read_as_sqlalchemy_reads_them() {
        let ctx = context().await;
        // SQLAlchemy's primary key, index and unique constraint lookups, abridged.
        for sql in [
            "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN (SELECT unnest(ix.indkey) attnum \
             FROM pg_catalog.pg_index ix WHERE ix.indrelid = 1 AND ix.indisprimary) k ON a.attnum = k.attnum",
            "SELECT i.relname, ix.indkey::varchar, ix.indoption::varchar, i.reloptions FROM pg_catalog.pg_class t \
             JOIN pg_catalog.pg_index ix ON t.oid = ix.indrelid JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid \
             LEFT JOIN pg_catalog.pg_attribute a ON t.oid = a.attrelid AND a.attnum = ANY(ix.indkey)",
            "SELECT cons.conname FROM pg_catalog.pg_constraint cons JOIN pg_catalog.pg_attribute a \
             ON cons.conrelid = a.attrelid AND a.attnum = ANY(cons.conkey) WHERE cons.contype = 'u'",
        ] {
            let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 0, "{sql}");
        }
        // A table's oid read from pg_attribute in one statement is the one pg_class gives in the
        // next, though each statement has a pg_catalog of its own (as each of Glaux's has).
        async fn answer(ctx: &SessionContext, sql: &str) -> String {
            fresh_pg_catalog(ctx);
            let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
        }
        let attributes = "SELECT DISTINCT attrelid FROM pg_catalog.pg_attribute WHERE attname = 'product'";
        let from_attributes = answer(&ctx, attributes).await;
        let from_classes =
            answer(&ctx, "SELECT oid AS attrelid FROM pg_catalog.pg_class WHERE relname = 'sales'").await;
        let row = from_classes.lines().nth(3).unwrap_or_default();
        assert!(row.chars().any(|c| c.is_ascii_digit()), "one table, one oid: {from_classes}");
        assert_eq!(from_attributes, from_classes);
        let classes = ctx.sql("SELECT count(*) FROM pg_catalog.pg_class WHERE reloptions IS NULL").await.unwrap();
        let count = classes.collect().await.unwrap()[0].column(0).clone();
        assert!(arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(&count).value(0) > 0);
    }
}
