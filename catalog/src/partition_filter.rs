//! Choosing partitions from a query's predicates, before anything is listed.
//!
//! The filters DataFusion hands a table scan are split: those that use only partition columns
//! (`d >= '2023-06-01'`, `name IN (...)`, `CAST(year AS INT) BETWEEN ...`, `AND`/`OR` of them) are
//! evaluated here, on a batch of candidate partitions' values, with DataFusion's own expression
//! evaluation, so every operator and function it supports prunes alike. The others go to the scan.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, Operator};

/// The directory value Hive writes for a NULL partition value.
pub const HIVE_NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Whether `expr` can be decided from the partition columns `keys` alone.
pub fn uses_only(keys: &[&str], expr: &Expr) -> bool {
    let subquery = expr
        .exists(|e| Ok(matches!(e, Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_))))
        .unwrap_or(true);
    !keys.is_empty() && !subquery && expr_applicable_for_cols(keys, expr)
}

/// The partition-only filters of a scan, ready to be evaluated on candidate partitions.
#[derive(Debug)]
pub struct PartitionFilter {
    keys: Vec<Field>,
    /// Each filter (unqualified) with the names of the columns it reads.
    filters: Vec<(Expr, BTreeSet<String>)>,
}

impl PartitionFilter {
    pub fn new(keys: Vec<Field>, filters: &[Expr]) -> Self {
        let names: Vec<&str> = keys.iter().map(|f| f.name().as_str()).collect();
        let filters = filters
            .iter()
            .filter(|f| uses_only(&names, f))
            .map(|f| {
                let expr = unnormalize_col(f.clone());
                let columns = expr.column_refs().into_iter().map(|c| c.name.clone()).collect();
                (expr, columns)
            })
            .collect();
        Self { keys, filters }
    }

    /// Which rows satisfy every filter that reads only the key columns `columns` (indices into
    /// the keys). `values[i]` holds column `columns[i]` of every row, as text; text that does not
    /// convert to the key's type reads as NULL, as does Hive's NULL partition.
    pub fn select(&self, state: &dyn Session, columns: &[usize], values: &[Vec<&str>]) -> Result<Vec<bool>> {
        let rows = values.first().map_or(0, Vec::len);
        let mut selected = vec![true; rows];
        let fields: Vec<Field> = columns.iter().map(|&i| self.keys[i].clone().with_nullable(true)).collect();
        let names: BTreeSet<&String> = fields.iter().map(Field::name).collect();
        let applicable: Vec<&Expr> = self
            .filters
            .iter()
            .filter(|(_, used)| used.iter().all(|c| names.contains(c)))
            .map(|(expr, _)| expr)
            .collect();
        if applicable.is_empty() || rows == 0 {
            return Ok(selected);
        }
        let arrays = fields
            .iter()
            .zip(values)
            .map(|(field, texts)| typed_column(texts, field.data_type()))
            .collect::<Result<Vec<_>>>()?;
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let df_schema = DFSchema::try_from(schema)?;
        for expr in applicable {
            let physical = state.create_physical_expr(expr.clone(), &df_schema)?;
            let result = physical.evaluate(&batch)?.into_array(rows)?;
            let Some(result) = result.as_boolean_opt() else {
                return plan_err!("partition filter {expr} is not a predicate");
            };
            for (row, keep) in selected.iter_mut().enumerate() {
                *keep &= result.is_valid(row) && result.value(row);
            }
        }
        Ok(selected)
    }

    /// The values a filter pins column `key` to (`key = 'a'`, `key IN ('a', 'b')`, in any
    /// conjunct), as text; `None` when no conjunct pins it. For injected projection.
    pub fn pinned_values(&self, key: usize) -> Option<Vec<String>> {
        let name = self.keys[key].name();
        let mut pinned: Option<Vec<String>> = None;
        for (expr, _) in &self.filters {
            for conjunct in split_conjunction(expr) {
                let Some(values) = equality_values(conjunct, name) else { continue };
                pinned = Some(match pinned {
                    None => values,
                    Some(earlier) => earlier.into_iter().filter(|v| values.contains(v)).collect(),
                });
            }
        }
        pinned
    }
}

fn is_column(expr: &Expr, name: &str) -> bool {
    match expr {
        Expr::Column(column) => column.name == name,
        Expr::Cast(cast) => is_column(&cast.expr, name),
        _ => false,
    }
}

fn literal_text(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Literal(value, _) if !value.is_null() => Some(scalar_text(value)),
        Expr::Cast(cast) => literal_text(&cast.expr),
        _ => None,
    }
}

fn scalar_text(value: &ScalarValue) -> String {
    match value {
        ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn equality_values(expr: &Expr, name: &str) -> Option<Vec<String>> {
    match expr {
        Expr::BinaryExpr(binary) if binary.op == Operator::Eq => {
            if is_column(&binary.left, name) {
                literal_text(&binary.right).map(|v| vec![v])
            } else if is_column(&binary.right, name) {
                literal_text(&binary.left).map(|v| vec![v])
            } else {
                None
            }
        }
        Expr::InList(in_list) if !in_list.negated && is_column(&in_list.expr, name) => {
            in_list.list.iter().map(literal_text).collect()
        }
        _ => None,
    }
}

/// Partition values as text, converted to `data_type` (NULL where they do not convert).
pub fn typed_column(texts: &[&str], data_type: &DataType) -> Result<ArrayRef> {
    let strings: StringArray = texts.iter().map(|&t| (t != HIVE_NULL_PARTITION).then_some(t)).collect();
    let options = CastOptions { safe: true, ..Default::default() };
    Ok(cast_with_options(&strings, data_type, &options)?)
}

/// Whether `value` reads as a partition key's declared type (Hive's NULL partition does).
pub fn value_fits(value: &str, data_type: &DataType) -> bool {
    value == HIVE_NULL_PARTITION || typed_value(value, data_type).is_ok_and(|v| !v.is_null())
}

/// One partition value as the scalar the scan appends to its rows.
pub fn typed_value(text: &str, data_type: &DataType) -> Result<ScalarValue> {
    let array = typed_column(&[text], data_type)?;
    ScalarValue::try_from_array(&array, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::{col, lit};
    use datafusion::prelude::SessionContext;

    #[test]
    fn selects_partitions_by_predicates_on_keys() {
        let keys = vec![Field::new("name", DataType::Utf8, false), Field::new("d", DataType::Date32, false)];
        let filters = vec![
            col("name").in_list(vec![lit("a"), lit("b")], false),
            col("d").gt_eq(lit("2023-06-02")).or(col("name").eq(lit("a"))),
            col("payload").eq(lit("x")),
        ];
        let filter = PartitionFilter::new(keys, &filters);
        let state = SessionContext::new().state();
        let names = vec!["a", "b", "b", "c", "b"];
        let days = vec!["2023-06-01", "2023-06-01", "2023-06-02", "2023-06-03", "bad"];
        let selected = filter.select(&state, &[0, 1], &[names.clone(), days]).unwrap();
        assert_eq!(selected, vec![true, false, true, false, false]);
        assert_eq!(filter.select(&state, &[0], &[names]).unwrap(), vec![true, true, true, false, true]);
        assert_eq!(filter.pinned_values(0), Some(vec!["a".to_string(), "b".into()]));
        assert_eq!(filter.pinned_values(1), None);
        assert_eq!(typed_value(HIVE_NULL_PARTITION, &DataType::Int32).unwrap(), ScalarValue::Int32(None));
    }
}
