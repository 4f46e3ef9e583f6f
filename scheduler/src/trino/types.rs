//! Types DataFusion's SQL layer does not plan: Trino's `MAP(K, V)` (of the common key and
//! value types) and `JSON` (text holding JSON, which is how Glaux keeps JSON).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlType;

/// Trino's types first, then `next` (another planner of the session, such as pg_catalog's).
#[derive(Debug)]
pub struct TrinoTypes {
    next: Option<Arc<dyn TypePlanner>>,
}

impl TrinoTypes {
    pub fn new(next: Option<Arc<dyn TypePlanner>>) -> Self {
        Self { next }
    }
}

impl TypePlanner for TrinoTypes {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        let planned = match sql_type {
            SqlType::Map(key, value) => {
                let entries =
                    Fields::from(vec![Field::new("key", inner(key)?, false), Field::new("value", inner(value)?, true)]);
                DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
            }
            SqlType::JSON => DataType::Utf8,
            SqlType::Varbinary(_) => DataType::Binary,
            _ => return self.next.as_ref().map_or(Ok(None), |next| next.plan_type_field(sql_type)),
        };
        Ok(Some(Arc::new(Field::new("", planned, true))))
    }
}

/// A map's key or value type.
fn inner(sql_type: &SqlType) -> Result<DataType> {
    Ok(match sql_type {
        SqlType::Varchar(_) | SqlType::Char(_) | SqlType::String(_) | SqlType::Text | SqlType::JSON => DataType::Utf8,
        SqlType::TinyInt(_) => DataType::Int8,
        SqlType::SmallInt(_) => DataType::Int16,
        SqlType::Int(_) | SqlType::Integer(_) => DataType::Int32,
        SqlType::BigInt(_) => DataType::Int64,
        SqlType::Real | SqlType::Float(_) => DataType::Float32,
        SqlType::Double(_) | SqlType::DoublePrecision => DataType::Float64,
        SqlType::Boolean | SqlType::Bool => DataType::Boolean,
        SqlType::Date => DataType::Date32,
        SqlType::Timestamp(..) => DataType::Timestamp(TimeUnit::Microsecond, None),
        SqlType::Bytea | SqlType::Varbinary(_) => DataType::Binary,
        SqlType::Array(datafusion::sql::sqlparser::ast::ArrayElemTypeDef::AngleBracket(element)) => {
            DataType::List(Arc::new(Field::new_list_field(inner(element)?, true)))
        }
        SqlType::Map(key, value) => {
            let entries =
                Fields::from(vec![Field::new("key", inner(key)?, false), Field::new("value", inner(value)?, true)]);
            DataType::Map(Arc::new(Field::new("entries", DataType::Struct(entries), false)), false)
        }
        other => return plan_err!("a map of {other} is not supported"),
    })
}
