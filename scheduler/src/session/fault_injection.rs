//! Faults for tests, compiled in only with the `fault-injection` feature (which the test build
//! turns on; release builds never have it): `glaux_fault_panic_planning()` panics while a
//! statement is planned, `glaux_fault_panic()` while its result is produced. Tests use them to
//! show that a panic is that statement's error alone, on every door.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::SessionContext;

pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Panic {
        name: "glaux_fault_panic",
        planning: false,
        signature: signature(),
    }));
    let planning = Panic { name: "glaux_fault_panic_planning", planning: true, signature: signature() };
    ctx.register_udf(ScalarUDF::new_from_impl(planning));
}

fn signature() -> Signature {
    // Volatile: never folded into a constant while planning, so it runs with the query.
    Signature::nullary(Volatility::Volatile)
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Panic {
    name: &'static str,
    planning: bool,
    signature: Signature,
}

impl ScalarUDFImpl for Panic {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    #[allow(clippy::panic)] // the fault this function exists to inject
    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        if self.planning {
            panic!("fault injected while planning");
        }
        Ok(DataType::Int64)
    }

    #[allow(clippy::panic)] // the fault this function exists to inject
    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        panic!("fault injected while running");
    }
}
