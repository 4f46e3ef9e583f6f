//! `try(expression)`: the expression's value, or NULL for rows where evaluating it fails
//! (`try(CAST(x AS INTEGER))`, `try(a / b)`, `try(date_parse(s, '%Y'))`), as Trino does.
//!
//! Function arguments are evaluated before a function runs, so `try` cannot catch its
//! argument's errors as a function. While planning, `try(e)` is rewritten into
//! `__try_eval(<e serialized>, columns of e...)`: `e` travels as bytes (with its columns renamed
//! `c0`, `c1`, ...), and `__try_eval` evaluates it itself over its column arguments, first for
//! the whole batch and, if that fails, row by row with NULL for the rows that fail. Executors
//! register both functions, so a fragment calling them runs anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, Result, ScalarValue, exec_err, plan_err};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, lit,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::{PhysicalExpr, create_physical_expr};
use datafusion::prelude::SessionContext;
use datafusion_proto::bytes::Serializeable;

pub fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(Try::default()), ScalarUDF::new_from_impl(TryEval::default())]
}

/// The functions an expression inside `try` may call: DataFusion's and Glaux's.
fn registry() -> &'static Arc<TaskContext> {
    static REGISTRY: OnceLock<Arc<TaskContext>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let ctx = SessionContext::new();
        crate::register(&ctx);
        ctx.task_ctx()
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Try {
    signature: Signature,
}

impl Default for Try {
    fn default() -> Self {
        Self { signature: Signature::user_defined(Volatility::Volatile) }
    }
}

impl ScalarUDFImpl for Try {
    fn name(&self) -> &str {
        "try"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        match types {
            [_] => Ok(types.to_vec()),
            _ => plan_err!("try takes one expression, not {}", types.len()),
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(types[0].clone())
    }

    fn simplify(&self, args: Vec<Expr>, _: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match args.as_slice() {
            [expression] => {
                Ok(eval_call(expression).map_or(ExprSimplifyResult::Original(args), ExprSimplifyResult::Simplified))
            }
            _ => Ok(ExprSimplifyResult::Original(args)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Reached only where planning did not simplify: the value passes through.
        args.args.into_iter().next().map_or_else(|| exec_err!("try without an argument"), Ok)
    }
}

/// `__try_eval(<expression serialized>, its columns...)` for `try(expression)`; `None` for an
/// expression that cannot travel (a subquery), which then passes through unprotected.
fn eval_call(expression: &Expr) -> Option<Expr> {
    // The columns the expression reads become arguments, named c0, c1, ... inside it.
    let mut columns: Vec<Column> = expression.column_refs().into_iter().cloned().collect();
    columns.sort_by_key(|c| c.flat_name());
    columns.dedup();
    let renamed = expression
        .clone()
        .transform(|e| match e {
            Expr::Column(c) => {
                let i = columns.iter().position(|known| *known == c).unwrap_or_default();
                Ok(Transformed::yes(Expr::Column(Column::new_unqualified(format!("c{i}")))))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    let bytes = renamed.to_bytes().ok()?;
    let mut call = vec![lit(ScalarValue::Binary(Some(bytes.to_vec())))];
    call.extend(columns.into_iter().map(Expr::Column));
    let eval = Arc::new(ScalarUDF::new_from_impl(TryEval::default()));
    Some(Expr::ScalarFunction(ScalarFunction::new_udf(eval, call)))
}

/// Rewrites `try(...)` calls before the optimizer folds constants inside them (folding
/// `CAST('x' AS INTEGER)` would fail the whole query). Output names stay as written.
#[derive(Debug, Default)]
pub struct TryRule;

impl AnalyzerRule for TryRule {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let rewritten = expr.transform_up(|e| match &e {
                    Expr::ScalarFunction(f) if f.func.name() == "try" && f.args.len() == 1 => {
                        Ok(eval_call(&f.args[0]).map_or(Transformed::no(e.clone()), Transformed::yes))
                    }
                    _ => Ok(Transformed::no(e)),
                })?;
                Ok(rewritten.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "glaux_try"
    }
}

/// A serialized expression and the types of its arguments.
type ExpressionKey = (Vec<u8>, Vec<DataType>);

/// Evaluates a serialized expression over its column arguments, NULL where it fails.
#[derive(Debug)]
struct TryEval {
    signature: Signature,
    /// Planned expressions by their bytes and argument types.
    planned: Mutex<HashMap<ExpressionKey, Arc<dyn PhysicalExpr>>>,
}

impl Default for TryEval {
    fn default() -> Self {
        Self { signature: Signature::variadic_any(Volatility::Volatile), planned: Mutex::default() }
    }
}

impl PartialEq for TryEval {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for TryEval {}

impl std::hash::Hash for TryEval {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

/// The schema the expression's columns `c0`, `c1`, ... have.
fn columns_schema(types: &[DataType]) -> Result<DFSchema> {
    let fields: Vec<Field> =
        types.iter().enumerate().map(|(i, t)| Field::new(format!("c{i}"), t.clone(), true)).collect();
    DFSchema::try_from(Schema::new(fields))
}

fn expression(bytes: &[u8]) -> Result<Expr> {
    Expr::from_bytes_with_ctx(bytes, registry())
}

impl TryEval {
    fn planned(&self, bytes: &[u8], types: &[DataType]) -> Result<Arc<dyn PhysicalExpr>> {
        let key = (bytes.to_vec(), types.to_vec());
        if let Some(planned) = self.planned.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Arc::clone(planned));
        }
        let schema = columns_schema(types)?;
        let props = datafusion::execution::context::ExecutionProps::new();
        let planned = create_physical_expr(&expression(bytes)?, &schema, &props, &PhysicalPlanningContext::default())?;
        self.planned.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::clone(&planned));
        Ok(planned)
    }
}

impl ScalarUDFImpl for TryEval {
    fn name(&self) -> &str {
        "__try_eval"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        exec_err!("__try_eval's type comes from its expression")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let Some(Some(ScalarValue::Binary(Some(bytes)))) = args.scalar_arguments.first() else {
            return plan_err!("__try_eval needs its expression");
        };
        let types: Vec<DataType> = args.arg_fields[1..].iter().map(|f| f.data_type().clone()).collect();
        let data_type = expression(bytes)?.get_type(&columns_schema(&types)?)?;
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(ColumnarValue::Scalar(ScalarValue::Binary(Some(bytes)))) = args.args.first() else {
            return exec_err!("__try_eval needs its expression");
        };
        let rows = args.number_rows;
        let columns = args.args[1..].iter().map(|a| a.to_array(rows)).collect::<Result<Vec<ArrayRef>>>()?;
        let types: Vec<DataType> = columns.iter().map(|c| c.data_type().clone()).collect();
        let planned = self.planned(bytes, &types)?;
        let schema = Arc::new(columns_schema(&types)?.as_arrow().clone());
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let output = args.return_field.data_type();
        if let Ok(value) = planned.evaluate(&batch).and_then(|v| v.to_array(rows)) {
            return Ok(ColumnarValue::Array(value));
        }
        // Some row failed: each row alone, NULL for those that fail.
        let mut pieces = Vec::with_capacity(rows);
        for row in 0..rows {
            let one = batch.slice(row, 1);
            let value = planned.evaluate(&one).and_then(|v| v.to_array(1));
            pieces.push(match value {
                Ok(value) if value.data_type() == output => value,
                _ => new_null_array(output, 1),
            });
        }
        let pieces: Vec<&dyn arrow::array::Array> = pieces.iter().map(|p| p.as_ref()).collect();
        Ok(ColumnarValue::Array(arrow::compute::concat(&pieces)?))
    }
}
