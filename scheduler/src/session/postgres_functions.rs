//! PostgreSQL session functions whose answer is the client's session, not a constant:
//! `current_schema()` and `current_schemas(bool)` name the database the client is in (its
//! connection's database, or the one `USE` chose), as drivers expect when they look up "their"
//! tables (psqlODBC's `SQLColumns` filters on `current_schema()`). They replace
//! `datafusion-pg-catalog`'s versions, which always say `public`.
//!
//! Both are `Stable`, so planning folds them into constants with the planning session's
//! options, whose default schema is the client's database.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, ListArray, StringArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{Result, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};

/// Registers the session functions, replacing any of the same name.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSchema::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSchemas::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(TypeIsVisible::new()));
}

/// `pg_type_is_visible(oid)`: every type `pg_type` lists is in `pg_catalog`, which is always on
/// the search path, so each is visible (NULL for a NULL oid, as PostgreSQL answers). SQLAlchemy
/// calls it reading a table's columns (its domain and enum lookups).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TypeIsVisible {
    signature: Signature,
}

impl TypeIsVisible {
    fn new() -> Self {
        Self { signature: Signature::uniform(1, vec![DataType::Int32, DataType::Int64], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for TypeIsVisible {
    fn name(&self) -> &str {
        "pg_type_is_visible"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(oids) = args.args.first() else { return exec_err!("pg_type_is_visible takes an oid") };
        Ok(match oids {
            ColumnarValue::Scalar(oid) => ColumnarValue::Scalar(ScalarValue::Boolean((!oid.is_null()).then_some(true))),
            ColumnarValue::Array(oids) => {
                let visible: BooleanArray = (0..oids.len()).map(|i| oids.is_valid(i).then_some(true)).collect();
                ColumnarValue::Array(Arc::new(visible))
            }
        })
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSchema {
    signature: Signature,
}

impl CurrentSchema {
    fn new() -> Self {
        Self { signature: Signature::nullary(Volatility::Stable) }
    }
}

impl ScalarUDFImpl for CurrentSchema {
    fn name(&self) -> &str {
        "current_schema"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let schema = args.config_options.catalog.default_schema.clone();
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(schema))))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSchemas {
    signature: Signature,
}

impl CurrentSchemas {
    fn new() -> Self {
        Self { signature: Signature::exact(vec![DataType::Boolean], Volatility::Stable) }
    }
}

impl ScalarUDFImpl for CurrentSchemas {
    fn name(&self) -> &str {
        "current_schemas"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
    }

    /// The client's database, preceded by `pg_catalog` when implicit schemas are asked for
    /// (PostgreSQL's order: the implicit schema is searched first).
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let include_implicit = match args.args.first() {
            Some(ColumnarValue::Scalar(ScalarValue::Boolean(value))) => value.unwrap_or(false),
            Some(ColumnarValue::Scalar(other)) => return exec_err!("current_schemas takes a boolean, not {other}"),
            _ => return exec_err!("current_schemas takes a constant boolean"),
        };
        let schema = args.config_options.catalog.default_schema.as_str();
        let names: Vec<&str> = if include_implicit { vec!["pg_catalog", schema] } else { vec![schema] };
        let values: ArrayRef = Arc::new(StringArray::from(names.clone()));
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Utf8, true)),
            OffsetBuffer::from_lengths([names.len()]),
            values,
            None,
        );
        Ok(ColumnarValue::Scalar(ScalarValue::List(Arc::new(list))))
    }
}
