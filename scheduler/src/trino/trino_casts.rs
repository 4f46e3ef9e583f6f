//! `CAST` as Trino casts where Arrow's cast answers differently:
//! - a `double`, `real` or `decimal` cast to an integer type rounds half away from zero
//!   (`CAST(3.7 AS INTEGER)` is 4; Arrow truncates to 3);
//! - a timestamp cast to `varchar` reads `2023-06-01 10:11:12.000`, with milliseconds as Athena
//!   shows its `timestamp(3)` values (Arrow writes ISO's `2023-06-01T10:11:12`).
//!
//! An analyzer rule, so the casts the planner inserts itself after it are left alone.

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, TryCast, lit};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct TrinoCasts;

impl AnalyzerRule for TrinoCasts {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let schema = merge_schema(&node.inputs());
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(|e| trino_cast(e, &schema))?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "glaux_trino_casts"
    }
}

fn trino_cast(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, to, try_cast) = match &expr {
        Expr::Cast(Cast { expr, field }) => (expr, field.data_type(), false),
        Expr::TryCast(TryCast { expr, field }) => (expr, field.data_type(), true),
        _ => return Ok(Transformed::no(expr)),
    };
    // A column of a schema the rule cannot see (an outer query's) is left as it is.
    let Ok(from) = inner.get_type(schema) else { return Ok(Transformed::no(expr)) };
    let replacement = if to.is_integer()
        && (from.is_floating() || matches!(from, DataType::Decimal128(..) | DataType::Decimal256(..)))
    {
        let value = if from.is_floating() {
            inner.as_ref().clone()
        } else {
            inner.as_ref().clone().cast_to(&DataType::Float64, schema)?
        };
        let rounded = Expr::ScalarFunction(ScalarFunction::new_udf(datafusion::functions::math::round(), vec![value]));
        if try_cast {
            Expr::TryCast(TryCast::new(Box::new(rounded), to.clone()))
        } else {
            Expr::Cast(Cast::new(Box::new(rounded), to.clone()))
        }
    } else if matches!(to, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
        && let DataType::Timestamp(_, None) = &from
    {
        let format = "%Y-%m-%d %H:%M:%S%.3f";
        let text = Expr::ScalarFunction(ScalarFunction::new_udf(
            datafusion::functions::datetime::to_char(),
            vec![inner.as_ref().clone(), lit(format)],
        ));
        if *to == DataType::Utf8 { text } else { Expr::Cast(Cast::new(Box::new(text), to.clone())) }
    } else {
        return Ok(Transformed::no(expr));
    };
    Ok(Transformed::yes(replacement))
}
