//! `CAST(ROW(1, 'a') AS ROW(x integer, y varchar))`: Trino names (and casts) a row's fields by
//! position; Arrow casts structs by field name, and `ROW(...)` has none. A cast of a `ROW(...)`
//! constructor becomes `named_struct('x', CAST(1 AS integer), 'y', CAST('a' AS varchar))`.
//! (`type_syntax.rs` has already made the `ROW(...)` type a `STRUCT<...>`.)

use std::ops::ControlFlow;

use datafusion::common::{DataFusionError, Result, plan_datafusion_err, plan_err};
use datafusion::sql::sqlparser::ast::{
    CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

pub fn rewrite(statement: &mut Statement) -> Result<()> {
    let mut error = None;
    let _ = visit_expressions_mut(statement, |expr| {
        match named_struct(expr) {
            Ok(Some(replacement)) => *expr = replacement,
            Ok(None) => {}
            Err(e) => {
                error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    error.map_or(Ok(()), Err)
}

fn named_struct(expr: &Expr) -> Result<Option<Expr>> {
    let Expr::Cast { kind, expr: value, data_type: DataType::Struct(fields, _), .. } = expr else { return Ok(None) };
    let Expr::Function(function) = value.as_ref() else { return Ok(None) };
    if !function.name.to_string().eq_ignore_ascii_case("row") {
        return Ok(None);
    }
    let FunctionArguments::List(list) = &function.args else { return Ok(None) };
    let values: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    if values.len() != fields.len() || values.len() != list.args.len() {
        return plan_err!("cannot cast a row of {} fields to {} fields", list.args.len(), fields.len());
    }
    let cast = match kind {
        CastKind::TryCast | CastKind::SafeCast => "TRY_CAST",
        _ => "CAST",
    };
    let mut parts = Vec::with_capacity(fields.len());
    for (i, (field, value)) in fields.iter().zip(values).enumerate() {
        let name = field.field_name.as_ref().map_or_else(|| format!("field{i}"), |n| n.value.clone());
        parts.push(format!("'{}', {cast}({value} AS {})", name.replace('\'', "''"), field.field_type));
    }
    let sql = format!("named_struct({})", parts.join(", "));
    let mut parser = Parser::new(&GenericDialect {}).try_with_sql(&sql).map_err(|e| plan_datafusion_err!("{e}"))?;
    parser
        .parse_expr()
        .map(Some)
        .map_err(|e: datafusion::sql::sqlparser::parser::ParserError| DataFusionError::Plan(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_casts_name_fields_by_position() {
        let mut statements =
            Parser::parse_sql(&GenericDialect {}, "SELECT CAST(ROW(1, 'a') AS STRUCT<x INT, y VARCHAR>)")
                .expect("parses");
        rewrite(&mut statements[0]).expect("rewrites");
        assert_eq!(statements[0].to_string(), "SELECT named_struct('x', CAST(1 AS INT), 'y', CAST('a' AS VARCHAR))");
        let mut wrong =
            Parser::parse_sql(&GenericDialect {}, "SELECT CAST(ROW(1) AS STRUCT<x INT, y INT>)").expect("parses");
        assert!(rewrite(&mut wrong[0]).is_err());
    }
}
