//! `approx_percentile(x, p)` and `approx_percentile(x, ARRAY[p1, p2, ...])`, Trino's: the
//! value (or array of values) at each percentile, of `x`'s type, from one t-digest (DataFusion's,
//! so partial states merge across executors as `approx_percentile_cont`'s do).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::tdigest::TDigest;

use crate::udf::no_form;

/// Centroids kept per digest, as DataFusion's `approx_percentile_cont` keeps.
const DIGEST_SIZE: usize = 100;

pub fn function() -> AggregateUDF {
    AggregateUDF::new_from_impl(ApproxPercentile { signature: Signature::user_defined(Volatility::Immutable) })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct ApproxPercentile {
    signature: Signature,
}

fn is_list(t: &DataType) -> bool {
    matches!(t, DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..))
}

impl AggregateUDFImpl for ApproxPercentile {
    fn name(&self) -> &str {
        "approx_percentile"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, types: &[DataType]) -> Result<Vec<DataType>> {
        let forms = "(T, double) or (T, array(double))";
        match types {
            [x, p] if x.is_numeric() && (p.is_numeric() || *p == DataType::Null) => {
                Ok(vec![x.clone(), DataType::Float64])
            }
            [x, p] if x.is_numeric() && is_list(p) => {
                Ok(vec![x.clone(), DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))])
            }
            _ => no_form(self.name(), types, forms),
        }
    }

    fn return_type(&self, types: &[DataType]) -> Result<DataType> {
        Ok(if is_list(&types[1]) {
            DataType::List(Arc::new(Field::new_list_field(types[0].clone(), true)))
        } else {
            types[0].clone()
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let field = |name: &str, t: DataType| Arc::new(Field::new(format!("{}[{name}]", args.name), t, false));
        Ok(vec![
            field("max_size", DataType::UInt64),
            field("sum", DataType::Float64),
            field("count", DataType::Float64),
            field("max", DataType::Float64),
            field("min", DataType::Float64),
            Arc::new(Field::new_list(
                format!("{}[centroids]", args.name),
                Field::new_list_field(DataType::Float64, true),
                false,
            )),
        ])
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let Some(literal) = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>()) else {
            return plan_err!("approx_percentile takes constant percentages");
        };
        let (percentiles, many) = match literal.value() {
            ScalarValue::List(list) if list.len() == 1 => {
                let values = list.value(0);
                let values = arrow::compute::cast(&values, &DataType::Float64)?;
                (values.as_primitive::<Float64Type>().iter().collect::<Option<Vec<f64>>>().unwrap_or_default(), true)
            }
            ScalarValue::Float64(Some(p)) => (vec![*p], false),
            other => return plan_err!("approx_percentile takes constant percentages, not {other}"),
        };
        if let Some(bad) = percentiles.iter().find(|p| !(0.0..=1.0).contains(*p)) {
            return plan_err!("Percentile must be between 0 and 1, not {bad}");
        }
        let value_type = args.expr_fields.first().map(|f| f.data_type().clone()).unwrap_or(DataType::Float64);
        Ok(Box::new(Percentiles { digest: TDigest::new(DIGEST_SIZE), percentiles, many, value_type }))
    }
}

#[derive(Debug)]
struct Percentiles {
    digest: TDigest,
    percentiles: Vec<f64>,
    /// The percentages came as an array: so does the answer.
    many: bool,
    value_type: DataType,
}

impl Accumulator for Percentiles {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let values = arrow::compute::cast(&values[0], &DataType::Float64)?;
        let mut sorted: Vec<f64> = values.as_primitive::<Float64Type>().iter().flatten().collect();
        sorted.sort_by(f64::total_cmp);
        if !sorted.is_empty() {
            self.digest = self.digest.merge_sorted_f64(&sorted);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let answer_type = if self.many {
            DataType::List(Arc::new(Field::new_list_field(self.value_type.clone(), true)))
        } else {
            self.value_type.clone()
        };
        if self.digest.count() == 0.0 {
            return ScalarValue::try_from(answer_type);
        }
        let estimates: Vec<ScalarValue> = self
            .percentiles
            .iter()
            .map(|p| {
                let estimate = self.digest.estimate_quantile(*p);
                // An integer column's percentile is one of its values, as Trino gives it.
                let estimate = if self.value_type.is_integer() { estimate.round() } else { estimate };
                ScalarValue::Float64(Some(estimate)).cast_to(&self.value_type)
            })
            .collect::<Result<_>>()?;
        if self.many {
            return Ok(ScalarValue::List(ScalarValue::new_list_nullable(&estimates, &self.value_type)));
        }
        match estimates.into_iter().next() {
            Some(estimate) => Ok(estimate),
            None => exec_err!("approx_percentile without a percentage"),
        }
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.digest.size() + self.percentiles.len() * 8
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(self.digest.to_scalar_state())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(rows) = states.first().map(|s| s.len()) else { return Ok(()) };
        let mut digests = Vec::with_capacity(rows + 1);
        for row in 0..rows {
            let state = states.iter().map(|s| ScalarValue::try_from_array(s, row)).collect::<Result<Vec<_>>>()?;
            // Only digests of the expected shape are read: from_scalar_state asserts on others.
            let valid = matches!(state.as_slice(), [ScalarValue::UInt64(Some(_)), .., ScalarValue::List(_)])
                && state.len() == 6;
            if !valid {
                return exec_err!("approx_percentile: a partial state of the wrong shape");
            }
            digests.push(TDigest::from_scalar_state(&state));
        }
        digests.push(self.digest.clone());
        self.digest = TDigest::merge_digests(&digests);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_integers_and_from_merged_states() {
        let values: ArrayRef = Arc::new(arrow::array::Int64Array::from_iter_values(1..=100));
        let mut a = Percentiles {
            digest: TDigest::new(DIGEST_SIZE),
            percentiles: vec![0.5, 0.9],
            many: true,
            value_type: DataType::Int64,
        };
        a.update_batch(&[values.slice(0, 50)]).expect("update");
        let mut b = Percentiles {
            digest: TDigest::new(DIGEST_SIZE),
            percentiles: vec![0.5, 0.9],
            many: true,
            value_type: DataType::Int64,
        };
        b.update_batch(&[values.slice(50, 50)]).expect("update");
        let state: Vec<ArrayRef> = b.state().expect("state").iter().map(|s| s.to_array().expect("array")).collect();
        a.merge_batch(&state).expect("merge");
        let ScalarValue::List(list) = a.evaluate().expect("evaluates") else { panic!("a list") };
        let values = list.value(0);
        let values = values.as_primitive::<arrow::datatypes::Int64Type>();
        assert!((49..=51).contains(&values.value(0)), "{values:?}");
        assert!((89..=91).contains(&values.value(1)), "{values:?}");
    }
}
