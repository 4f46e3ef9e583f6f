//! [`Udf`]: a scalar function described by plain functions (argument coercion, return type,
//! evaluation over arrays), so each Trino function is a few lines of what it does. Arguments
//! reach `invoke` as arrays of exactly the types `coerce` asked for, one row per input row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::types::trino_type_name;

/// Types the arguments are cast to, or an error naming the function's accepted forms.
pub type Coerce = fn(&str, &[DataType]) -> Result<Vec<DataType>>;
/// The result type for the coerced argument types.
pub type ReturnType = fn(&[DataType]) -> Result<DataType>;
/// Evaluates the function over `rows` rows; arguments are arrays of the coerced types.
pub type Invoke = fn(&[ArrayRef], usize, &DataType) -> Result<ArrayRef>;
/// A rewrite into other expressions, tried before evaluation.
pub type Simplify = fn(Vec<Expr>, &SimplifyContext) -> Result<ExprSimplifyResult>;

/// Two functions are the same function when they have the same name and aliases: each name
/// has one definition here.
#[derive(Debug)]
pub struct Udf {
    name: &'static str,
    aliases: Vec<String>,
    signature: Signature,
    coerce: Coerce,
    return_type: ReturnType,
    invoke: Invoke,
    simplify: Option<Simplify>,
}

impl PartialEq for Udf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.aliases == other.aliases && self.signature == other.signature
    }
}

impl Eq for Udf {}

impl std::hash::Hash for Udf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.aliases.hash(state);
    }
}

impl Udf {
    pub fn new(name: &'static str, coerce: Coerce, return_type: ReturnType, invoke: Invoke) -> Self {
        Self {
            name,
            aliases: Vec::new(),
            signature: Signature::user_defined(Volatility::Immutable),
            coerce,
            return_type,
            invoke,
            simplify: None,
        }
    }

    pub fn aliases(mut self, aliases: &[&str]) -> Self {
        self.aliases = aliases.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn volatile(mut self) -> Self {
        self.signature = Signature::user_defined(Volatility::Volatile);
        self
    }

    pub fn stable(mut self) -> Self {
        self.signature = Signature::user_defined(Volatility::Stable);
        self
    }

    pub fn simplify(mut self, simplify: Simplify) -> Self {
        self.simplify = Some(simplify);
        self
    }

    pub fn build(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }
}

impl ScalarUDFImpl for Udf {
    fn name(&self) -> &str {
        self.name
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        (self.coerce)(self.name, arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        (self.return_type)(arg_types)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match self.simplify {
            Some(simplify) => simplify(args, info),
            None => Ok(ExprSimplifyResult::Original(args)),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // A function of constants is computed once; one without arguments (`rand()`) once a row.
        let scalar = !args.args.is_empty() && args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = args.args.iter().map(|a| a.to_array(rows)).collect::<Result<Vec<_>>>()?;
        let result = (self.invoke)(&arrays, rows, args.return_field.data_type())?;
        if scalar && result.len() == 1 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?));
        }
        Ok(ColumnarValue::Array(result))
    }
}

/// The function's argument list as Trino writes it, for error messages: `f(varchar, bigint)`.
pub fn call_text(name: &str, types: &[DataType]) -> String {
    let types: Vec<String> = types.iter().map(trino_type_name).collect();
    format!("{name}({})", types.join(", "))
}

/// An error for arguments no form of the function accepts: `Unexpected parameters (bigint)
/// for function upper. Expected: upper(varchar)`, as Trino words it.
pub fn no_form<T>(name: &str, types: &[DataType], forms: &str) -> Result<T> {
    let expected: Vec<String> = forms
        .split(" or ")
        .flat_map(|f| f.split(", ("))
        .map(|f| {
            let f = f.trim();
            if f.starts_with('(') { format!("{name}{f}") } else { format!("{name}({f}") }
        })
        .collect();
    plan_err!("Unexpected parameters {} for function {name}. Expected: {}", call_text("", types), expected.join(", "))
}

/// What a string argument becomes: `Utf8` for any string type or NULL, `None` for others.
pub fn as_string(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => Some(DataType::Utf8),
        DataType::Dictionary(_, value) if value.is_string() => Some(DataType::Utf8),
        _ => None,
    }
}

/// What an integer argument becomes: `Int64` for any integer type or NULL.
pub fn as_integer(t: &DataType) -> Option<DataType> {
    (t.is_integer() || *t == DataType::Null).then_some(DataType::Int64)
}

/// What a number argument becomes: `Float64` for any numeric type or NULL.
pub fn as_double(t: &DataType) -> Option<DataType> {
    (t.is_numeric() || *t == DataType::Null).then_some(DataType::Float64)
}

/// What a binary argument becomes: `Binary` for any binary type or NULL.
pub fn as_binary(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Null => Some(DataType::Binary),
        _ => None,
    }
}

/// Coerces each argument with its rule (`rules[i]`), or fails naming the accepted forms.
pub fn coerce_each(
    name: &str,
    types: &[DataType],
    rules: &[fn(&DataType) -> Option<DataType>],
    forms: &str,
) -> Result<Vec<DataType>> {
    if types.len() != rules.len() {
        return no_form(name, types, forms);
    }
    match types.iter().zip(rules).map(|(t, rule)| rule(t)).collect::<Option<Vec<_>>>() {
        Some(coerced) => Ok(coerced),
        None => no_form(name, types, forms),
    }
}

pub fn arc(array: impl Array + 'static) -> ArrayRef {
    Arc::new(array)
}

/// Runs another scalar function (DataFusion's own) over arrays, for functions that keep
/// DataFusion's behaviour for some argument types.
pub fn delegate(udf: &ScalarUDF, args: &[ArrayRef], rows: usize, return_type: &DataType) -> Result<ArrayRef> {
    delegate_values(udf, args.iter().map(|a| ColumnarValue::Array(Arc::clone(a))).collect(), rows, return_type)
}

/// [`delegate`] with scalar arguments where the function needs constants.
pub fn delegate_values(
    udf: &ScalarUDF,
    args: Vec<ColumnarValue>,
    rows: usize,
    return_type: &DataType,
) -> Result<ArrayRef> {
    let arg_fields = args.iter().map(|a| Arc::new(arrow::datatypes::Field::new("arg", a.data_type(), true))).collect();
    let result = udf.invoke_with_args(ScalarFunctionArgs {
        args,
        arg_fields,
        number_rows: rows,
        return_field: Arc::new(arrow::datatypes::Field::new(udf.name(), return_type.clone(), true)),
        config_options: Arc::default(),
    })?;
    result.to_array(rows)
}
