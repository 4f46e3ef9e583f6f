//! Trino's conditional functions: `if(condition, then [, else])` (a `CASE`, so only the chosen
//! branch is evaluated) and `typeof(x)` (the Trino name of `x`'s type, known when planning).
//! `try` lives in `try_eval.rs`; `try_cast`, `coalesce` and `nullif` are DataFusion's.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::type_union_resolution;
use datafusion::logical_expr::{Case, Expr, ScalarUDF, lit};

use crate::types::trino_type_name;
use crate::udf::{Udf, no_form};

pub fn functions() -> Vec<ScalarUDF> {
    vec![
        Udf::new("if", coerce_if, |types| Ok(types[1].clone()), if_then_else).simplify(simplify_if).build(),
        Udf::new("typeof", |_, types| Ok(types.to_vec()), |_| Ok(DataType::Utf8), type_of)
            .simplify(simplify_typeof)
            .build(),
    ]
}

fn coerce_if(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let forms = "(boolean, T) or (boolean, T, T)";
    let (condition, branches) = match types.split_first() {
        Some((condition, branches)) if (1..=2).contains(&branches.len()) => (condition, branches),
        _ => return no_form(name, types, forms),
    };
    if !matches!(condition, DataType::Boolean | DataType::Null) {
        return no_form(name, types, forms);
    }
    let Some(common) = type_union_resolution(branches) else { return no_form(name, types, forms) };
    let mut coerced = vec![DataType::Boolean];
    coerced.extend(branches.iter().map(|_| common.clone()));
    Ok(coerced)
}

fn simplify_if(args: Vec<Expr>, _: &SimplifyContext) -> Result<ExprSimplifyResult> {
    let mut args = args.into_iter();
    let (Some(condition), Some(then)) = (args.next(), args.next()) else {
        return Ok(ExprSimplifyResult::Original(Vec::new()));
    };
    let otherwise = args.next().map(Box::new);
    Ok(ExprSimplifyResult::Simplified(Expr::Case(Case::new(
        None,
        vec![(Box::new(condition), Box::new(then))],
        otherwise,
    ))))
}

fn if_then_else(args: &[ArrayRef], rows: usize, return_type: &DataType) -> Result<ArrayRef> {
    let condition = args[0].as_boolean();
    let otherwise = match args.get(2) {
        Some(otherwise) => std::sync::Arc::clone(otherwise),
        None => ScalarValue::try_from(return_type)?.to_array_of_size(rows)?,
    };
    // A NULL condition chooses the else branch, as CASE does.
    let condition =
        if condition.null_count() > 0 { arrow::compute::prep_null_mask_filter(condition) } else { condition.clone() };
    Ok(arrow::compute::kernels::zip::zip(&condition, &args[1], &otherwise)?)
}

fn simplify_typeof(args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
    match args.as_slice() {
        [arg] => Ok(ExprSimplifyResult::Simplified(lit(trino_type_name(&info.get_data_type(arg)?)))),
        _ => Ok(ExprSimplifyResult::Original(args)),
    }
}

fn type_of(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let name = args.first().map(|a| trino_type_name(a.data_type())).unwrap_or_else(|| "unknown".into());
    ScalarValue::Utf8(Some(name)).to_array_of_size(rows)
}
