//! `glaux_delta_deleted(row, deletion_vector)`: whether a Delta deletion vector (a serialized
//! roaring bitmap of row positions, as the Delta protocol stores them) deletes the row at
//! position `row` of its file. A Delta table's scan filters its rows with it; each file's
//! deletion vector rides along as a constant (dictionary-encoded) column of that file's rows, so
//! a batch deserializes each vector once.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder};
use arrow::datatypes::{DataType, Int32Type};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};
use roaring::RoaringTreemap;

/// The type of the column carrying each file's deletion vector (null: none).
pub fn deletion_vector_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary))
}

pub fn functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(DeltaDeleted::default())]
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DeltaDeleted {
    signature: Signature,
}

impl Default for DeltaDeleted {
    fn default() -> Self {
        let signature = TypeSignature::Exact(vec![DataType::Int64, deletion_vector_type()]);
        Self { signature: Signature::new(signature, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for DeltaDeleted {
    fn name(&self) -> &str {
        "glaux_delta_deleted"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [DataType::Int64, DataType::Dictionary(_, value)] if **value == DataType::Binary => Ok(DataType::Boolean),
            _ => plan_err!("glaux_delta_deleted takes (bigint, a deletion vector column)"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [row, vector] = args.args.as_slice() else {
            return exec_err!("glaux_delta_deleted takes two arguments");
        };
        let row = row.to_array(rows)?;
        let vector = vector.to_array(rows)?;
        Ok(ColumnarValue::Array(deleted(&row, &vector)?))
    }
}

fn deleted(row: &ArrayRef, vector: &ArrayRef) -> Result<ArrayRef> {
    let Some(positions) = row.as_primitive_opt::<arrow::datatypes::Int64Type>() else {
        return exec_err!("glaux_delta_deleted: the row position is not a bigint");
    };
    let Some(vectors) = vector.as_dictionary_opt::<Int32Type>() else {
        return exec_err!("glaux_delta_deleted: the deletion vector column is not dictionary-encoded binary");
    };
    let Some(values) = vectors.values().as_binary_opt::<i32>() else {
        return exec_err!("glaux_delta_deleted: the deletion vectors are not binary");
    };
    let mut bitmaps: HashMap<usize, RoaringTreemap> = HashMap::new();
    let mut out = BooleanBuilder::with_capacity(row.len());
    for i in 0..row.len() {
        if vectors.is_null(i) || positions.is_null(i) {
            out.append_value(false);
            continue;
        }
        let key = usize::try_from(vectors.keys().value(i)).unwrap_or(usize::MAX);
        if key >= values.len() {
            return exec_err!("glaux_delta_deleted: a deletion vector key is out of range");
        }
        let bitmap = match bitmaps.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let bitmap = RoaringTreemap::deserialize_from(values.value(key)).map_err(|e| {
                    datafusion::common::DataFusionError::Execution(format!("a malformed deletion vector: {e}"))
                })?;
                entry.insert(bitmap)
            }
        };
        let position = u64::try_from(positions.value(i)).unwrap_or(u64::MAX);
        out.append_value(bitmap.contains(position));
    }
    Ok(Arc::new(out.finish()))
}

/// A deletion vector as the scan's column value (a dictionary of one).
pub fn deletion_vector_value(bitmap: Option<Vec<u8>>) -> ScalarValue {
    ScalarValue::Dictionary(Box::new(DataType::Int32), Box::new(ScalarValue::Binary(bitmap)))
}

#[cfg(test)]
mod tests {
    use arrow::array::{DictionaryArray, Int32Array, Int64Array};

    use super::*;

    #[test]
    fn rows_in_the_vector_are_deleted_and_bad_vectors_are_errors() {
        let mut bitmap = RoaringTreemap::new();
        bitmap.extend([2u64, 5, 1 << 33]);
        let mut bytes = Vec::new();
        bitmap.serialize_into(&mut bytes).unwrap();
        let values: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![bytes.as_slice()]));
        let keys = Int32Array::from(vec![Some(0), Some(0), Some(0), None]);
        let vectors: ArrayRef = Arc::new(DictionaryArray::try_new(keys, values).unwrap());
        let rows: ArrayRef = Arc::new(Int64Array::from(vec![2, 3, 1 << 33, 5]));
        let out = deleted(&rows, &vectors).unwrap();
        assert_eq!(out.as_boolean().iter().collect::<Vec<_>>(), [Some(true), Some(false), Some(true), Some(false)]);
        let garbage: ArrayRef = Arc::new(arrow::array::BinaryArray::from(vec![b"nope".as_ref()]));
        let vectors: ArrayRef = Arc::new(DictionaryArray::try_new(Int32Array::from(vec![0]), garbage).unwrap());
        let one: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        assert!(deleted(&one, &vectors).is_err());
    }
}
