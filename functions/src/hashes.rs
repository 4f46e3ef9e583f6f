//! `sha2(x, bits)` as Spark, Hive and Redshift have it (the SCD type 2 loads users bring hash
//! rows with it): the SHA-2 digest of `bits` 224, 256 (or 0), 384 or 512 of a string's UTF-8
//! bytes or of a varbinary, as lowercase hex text; NULL for other `bits`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF};

use crate::udf::{Udf, as_binary, as_integer, as_string, coerce_each, delegate_values};

pub fn functions() -> Vec<ScalarUDF> {
    vec![Udf::new("sha2", coerce_sha2, |_| Ok(DataType::Utf8), sha2).build()]
}

fn coerce_sha2(name: &str, types: &[DataType]) -> Result<Vec<DataType>> {
    let data = |t: &DataType| as_string(t).or_else(|| as_binary(t));
    coerce_each(name, types, &[data, as_integer], "(varchar | varbinary, integer)")
}

/// DataFusion's `digest` algorithm for a bit length.
fn algorithm(bits: i64) -> Option<&'static str> {
    match bits {
        224 => Some("sha224"),
        0 | 256 => Some("sha256"),
        384 => Some("sha384"),
        512 => Some("sha512"),
        _ => None,
    }
}

fn sha2(args: &[ArrayRef], rows: usize, _: &DataType) -> Result<ArrayRef> {
    let bits = args[1].as_primitive::<Int64Type>();
    // One digest of the whole column per algorithm some row asks for.
    let mut digests: Vec<(&str, ArrayRef)> = Vec::new();
    for bits in bits.iter().flatten() {
        if let Some(name) = algorithm(bits)
            && !digests.iter().any(|(n, _)| *n == name)
        {
            let arguments = vec![
                ColumnarValue::Array(Arc::clone(&args[0])),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(name.to_string()))),
            ];
            let digest = datafusion::functions::crypto::digest();
            digests.push((name, delegate_values(&digest, arguments, rows, &DataType::Binary)?));
        }
    }
    let mut out = StringBuilder::with_capacity(rows, rows * 64);
    for row in 0..rows {
        let digest = bits
            .is_valid(row)
            .then(|| algorithm(bits.value(row)))
            .flatten()
            .and_then(|name| digests.iter().find(|(n, _)| *n == name))
            .map(|(_, digest)| digest.as_binary::<i32>())
            .filter(|digest| digest.is_valid(row));
        match digest {
            Some(digest) => out.append_value(hex(digest.value(row))),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{BinaryArray, Int64Array, StringArray};

    use super::*;

    #[test]
    fn sha2_is_lowercase_hex_of_the_bit_length_asked_and_null_otherwise() {
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("abc"), Some("abc"), None, Some("abc")]));
        let bits: ArrayRef = Arc::new(Int64Array::from(vec![Some(256), Some(512), Some(256), Some(100)]));
        let out = sha2(&[text, bits], 4, &DataType::Utf8).unwrap();
        let out = out.as_string::<i32>();
        // FIPS 180-2's "abc" test vectors.
        assert_eq!(out.value(0), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(out.value(1).starts_with("ddaf35a193617abacc417349ae204131"));
        assert_eq!(out.value(1).len(), 128);
        assert!(out.is_null(2) && out.is_null(3));
        let binary: ArrayRef = Arc::new(BinaryArray::from(vec![b"abc".as_ref()]));
        let zero: ArrayRef = Arc::new(Int64Array::from(vec![0]));
        let out = sha2(&[binary, zero], 1, &DataType::Utf8).unwrap();
        assert_eq!(out.as_string::<i32>().value(0), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
