//! Statements as PostgreSQL clients send them, made into what the engine plans: catalog queries
//! rewritten by `datafusion-pg-catalog`'s parser (regclass casts, `OPERATOR(pg_catalog.~)`), and
//! ours: unnamed result columns named as PostgreSQL names them, `version()` answering as a
//! PostgreSQL server, numeric oid arguments to catalog functions, and two idioms of SQLAlchemy's
//! reflection queries (`catalog_idioms`).

use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::SERVER_VERSION_NUMBER;

/// The statements of `sql` as the engine should see them: rewritten by the PostgreSQL
/// compatibility parser when it can read them (psql's and drivers' catalog queries), as written
/// otherwise (Athena DDL, which that parser does not know).
pub(super) fn split_and_rewrite(sql: &str) -> Vec<String> {
    match PostgresCompatibilityParser::new().parse(sql) {
        Ok(statements) => statements
            .into_iter()
            .map(|mut statement| {
                postgres_version(&mut statement);
                name_unnamed_columns(&mut statement);
                numeric_oid_arguments(&mut statement);
                catalog_idioms(&mut statement);
                statement.to_string()
            })
            .collect(),
        Err(_) => {
            let trimmed = sql.trim().trim_end_matches(';').trim();
            if trimmed.is_empty() { Vec::new() } else { vec![trimmed.to_string()] }
        }
    }
}

/// Names the top-level select list's unnamed expressions as PostgreSQL does: a function call
/// after the function (`count(*)` is `count`), anything else but a column `?column?`. Clients
/// read columns by those names (`rs.getLong("count")`). Where two would share a name, which
/// DataFusion refuses (catalog queries select several `NULL`s), later ones get their position
/// appended (`?column?2`).
fn name_unnamed_columns(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{Expr, Ident, SelectItem, SetExpr, Statement};
    /// PostgreSQL's name for an unnamed select-list expression; `None` for columns, which keep
    /// their own.
    fn postgres_name(expr: &Expr) -> String {
        match expr {
            Expr::Identifier(ident) => ident.value.clone(),
            Expr::CompoundIdentifier(parts) => parts.last().map(|part| part.value.clone()).unwrap_or_default(),
            Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => postgres_name(inner),
            Expr::Function(function) => {
                function.name.0.last().map(|part| part.to_string().trim_matches('"').to_string()).unwrap_or_default()
            }
            Expr::Case { .. } => "case".to_string(),
            _ => "?column?".to_string(),
        }
    }
    fn name(body: &mut SetExpr) {
        match body {
            SetExpr::Select(select) => {
                let mut seen = std::collections::HashSet::new();
                for (i, item) in select.projection.iter_mut().enumerate() {
                    let expr = match item {
                        SelectItem::UnnamedExpr(expr) => expr,
                        SelectItem::ExprWithAlias { alias, .. } => {
                            seen.insert(alias.value.clone());
                            continue;
                        }
                        _ => continue,
                    };
                    let own = postgres_name(expr);
                    if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
                        // Columns keep their names (DataFusion tells `a.id` from `b.id`).
                        seen.insert(own);
                        continue;
                    }
                    let alias = if seen.insert(own.clone()) { own } else { format!("{own}{}", i + 1) };
                    seen.insert(alias.clone());
                    *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::with_quote('"', alias) };
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                name(left);
                name(right);
            }
            SetExpr::Query(query) => name(&mut query.body),
            _ => {}
        }
    }
    if let Statement::Query(query) = statement {
        name(&mut query.body);
    }
}

/// `version()` answers as a PostgreSQL server would (drivers and BI tools parse it for a
/// version number), naming Glaux after it; a select-list `version()` keeps the column name
/// `version`. Flight SQL clients get DataFusion's `version()`.
fn postgres_version(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArguments, Ident, SelectItem, SetExpr, Statement, Value, visit_expressions_mut,
    };
    fn is_version(expr: &Expr) -> bool {
        matches!(expr, Expr::Function(f)
            if (f.name.to_string().eq_ignore_ascii_case("version") || f.name.to_string().eq_ignore_ascii_case("pg_catalog.version"))
            && matches!(&f.args, FunctionArguments::List(list) if list.args.is_empty()))
    }
    if let Statement::Query(query) = statement
        && let SetExpr::Select(select) = query.body.as_mut()
    {
        for item in &mut select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && is_version(expr)
            {
                *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::new("version") };
            }
        }
    }
    let _ = visit_expressions_mut(statement, |expr| {
        if is_version(expr) {
            let version = format!(
                "PostgreSQL {SERVER_VERSION_NUMBER} (Glaux {}) on {}",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH
            );
            *expr = Expr::value(Value::SingleQuotedString(version));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `pg_relation_is_publishable('16386')`: PostgreSQL reads a quoted number passed to its catalog
/// functions as an oid; DataFusion needs the number.
fn numeric_oid_arguments(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
    };
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Function(function) = expr
            && function.name.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.").starts_with("pg_")
            && let FunctionArguments::List(list) = &mut function.args
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::Expr(argument)) = arg
                    && let Expr::Value(value) = argument
                    && let Value::SingleQuotedString(text) = &value.value
                    && !text.is_empty()
                    && text.len() < 10
                    && text.chars().all(|c| c.is_ascii_digit())
                    && let Ok(mut parser) =
                        Parser::new(&GenericDialect {}).try_with_sql(&format!("CAST({text} AS INT)"))
                    && let Ok(oid) = parser.parse_expr()
                {
                    *argument = oid;
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

/// `pg_catalog`'s boolean columns, which clients compare with quoted literals (`'f'`).
const CATALOG_FLAGS: &[&str] = &[
    "indisprimary",
    "indisunique",
    "indisexclusion",
    "indimmediate",
    "indisclustered",
    "indisvalid",
    "indisready",
    "indislive",
    "indisreplident",
    "relhasindex",
    "relisshared",
    "relispartition",
    "relhasrules",
    "relhastriggers",
    "relhassubclass",
    "relrowsecurity",
    "relispopulated",
    "attnotnull",
    "atthasdef",
    "attisdropped",
    "attislocal",
    "condeferrable",
    "condeferred",
    "convalidated",
    "conislocal",
    "typisdefined",
    "typnotnull",
    "datistemplate",
    "datallowconn",
    "rolsuper",
    "rolcanlogin",
];

/// What PostgreSQL accepts and DataFusion does not, in catalog queries SQLAlchemy sends:
/// - `ix.indisprimary = 'f'`: a quoted literal takes the type of the column it is compared with,
///   here a boolean (only for `pg_catalog`'s boolean columns, [`CATALOG_FLAGS`]);
/// - `generate_subscripts(a, 1)` beside `unnest(a)`: the array's subscripts, as
///   `unnest(generate_series(1, array_length(a, 1)))`, which DataFusion zips with the other unnest.
fn catalog_idioms(statement: &mut datafusion::sql::sqlparser::ast::Statement) {
    use datafusion::sql::sqlparser::ast::{
        BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
    };
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    fn flag(expr: &Expr) -> bool {
        let name = match expr {
            Expr::Identifier(ident) => &ident.value,
            Expr::CompoundIdentifier(parts) => match parts.last() {
                Some(part) => &part.value,
                None => return false,
            },
            _ => return false,
        };
        CATALOG_FLAGS.contains(&name.to_ascii_lowercase().as_str())
    }
    fn boolean(expr: &Expr) -> Option<bool> {
        let Expr::Value(value) = expr else { return None };
        let Value::SingleQuotedString(text) = &value.value else { return None };
        match text.to_ascii_lowercase().as_str() {
            "t" | "true" => Some(true),
            "f" | "false" => Some(false),
            _ => None,
        }
    }
    let _ = visit_expressions_mut(statement, |expr| {
        match expr {
            Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right } => {
                if flag(left)
                    && let Some(value) = boolean(right)
                {
                    **right = Expr::value(Value::Boolean(value));
                } else if flag(right)
                    && let Some(value) = boolean(left)
                {
                    **left = Expr::value(Value::Boolean(value));
                }
            }
            Expr::Function(function)
                if function.name.to_string().to_ascii_lowercase().trim_start_matches("pg_catalog.")
                    == "generate_subscripts" =>
            {
                if let FunctionArguments::List(list) = &function.args
                    && let [
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(dimension)),
                    ] = &list.args[..]
                    && let Ok(mut parser) = Parser::new(&GenericDialect {})
                        .try_with_sql(&format!("unnest(generate_series(1, array_length({array}, {dimension})))"))
                    && let Ok(subscripts) = parser.parse_expr()
                {
                    *expr = subscripts;
                }
            }
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_unnamed_columns_get_names_and_athena_ddl_passes_through() {
        let statements = split_and_rewrite("SELECT NULL, NULL, a FROM t; SELECT 2");
        assert_eq!(
            statements,
            vec![
                "SELECT NULL AS \"?column?\", NULL AS \"?column?2\", a FROM t".to_string(),
                "SELECT 2 AS \"?column?\"".to_string()
            ]
        );
        let named = split_and_rewrite(
            "SELECT t.a, count(*), pg_catalog.format_type(x, y), CAST(b AS INT), max(c) AS m, a + 1 FROM t",
        );
        assert_eq!(
            named,
            vec![
                "SELECT t.a, count(*) AS \"count\", format_type(x, y) AS \"format_type\", CAST(b AS INT) AS \"b\", \
             max(c) AS m, a + 1 AS \"?column?\" FROM t"
                    .to_string()
            ]
        );
        let ddl = "CREATE EXTERNAL TABLE t (a struct<b:int>) STORED AS PARQUET LOCATION 's3://b/t/'";
        assert_eq!(split_and_rewrite(ddl), vec![ddl.to_string()]);
        let idioms = split_and_rewrite(
            "SELECT unnest(ix.indkey) attnum, generate_subscripts(ix.indkey, 1) ord FROM pg_index ix \
             WHERE ix.indisprimary = 'f' AND 't' <> i.relhasindex AND kind = 'f'",
        );
        assert_eq!(
            idioms,
            vec![
                "SELECT unnest(ix.indkey) AS attnum, unnest(generate_series(1, array_length(ix.indkey, 1))) AS ord \
                 FROM pg_catalog.pg_index ix WHERE ix.indisprimary = false AND true <> i.relhasindex AND kind = 'f'"
                    .to_string()
            ]
        );
        let grouped = split_and_rewrite("select region, count(*) from sales group by region order by count(*) desc");
        assert_eq!(
            grouped,
            vec!["SELECT region, count(*) AS \"count\" FROM sales GROUP BY region ORDER BY count(*) DESC".to_string()]
        );
    }
}
