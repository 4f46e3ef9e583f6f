//! `file_row_index()` across the wire.
//!
//! A Parquet scan that projects `file_row_index()` (each row's position in its file) reads it as
//! a virtual column of its table schema, which datafusion-proto does not carry: the decoded scan
//! would project a column it does not have. So on the wire the scan's projection names the
//! function again, and the decoding executor's scan turns it back into its virtual column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::functions::core::file_row_index;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use datafusion_proto::physical_plan::to_proto::serialize_physical_expr_with_converter;
use datafusion_proto::physical_plan::{
    DeduplicatingProtoConverter, PhysicalExtensionCodec, PhysicalPlanDecodeContext, PhysicalPlanNodeExt,
    PhysicalProtoConverterExtension,
};
use datafusion_proto::protobuf::{PhysicalExprNode, PhysicalPlanNode};

/// The name DataFusion's Parquet scan gives the virtual column it reads `file_row_index()` into
/// (with a numeric suffix when a table column already has that name).
const VIRTUAL_ROW_INDEX: &str = "__datafusion_file_row_index";

/// Encodes like [`DeduplicatingProtoConverter`], writing a scan's row-index virtual column as
/// the `file_row_index()` call it came from.
pub(crate) struct RowIndexConverter;

impl PhysicalProtoConverterExtension for RowIndexConverter {
    fn proto_to_execution_plan(
        &self,
        proto: &PhysicalPlanNode,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DeduplicatingProtoConverter {}.proto_to_execution_plan(proto, ctx)
    }

    fn execution_plan_to_proto(
        &self,
        plan: &Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> Result<PhysicalPlanNode> {
        PhysicalPlanNode::try_from_physical_plan_with_converter(Arc::clone(plan), codec, self)
    }

    fn proto_to_physical_expr(
        &self,
        proto: &PhysicalExprNode,
        input_schema: &Schema,
        ctx: &PhysicalPlanDecodeContext<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        DeduplicatingProtoConverter {}.proto_to_physical_expr(proto, input_schema, ctx)
    }

    fn physical_expr_to_proto(
        &self,
        expr: &Arc<dyn PhysicalExpr>,
        codec: &dyn PhysicalExtensionCodec,
    ) -> Result<PhysicalExprNode> {
        match expr.downcast_ref::<Column>() {
            Some(column) if column.name().starts_with(VIRTUAL_ROW_INDEX) => {
                let call: Arc<dyn PhysicalExpr> = Arc::new(ScalarFunctionExpr::new(
                    "file_row_index",
                    file_row_index(),
                    vec![],
                    Arc::new(Field::new("file_row_index", DataType::Int64, true)),
                    Arc::new(ConfigOptions::default()),
                ));
                serialize_physical_expr_with_converter(&call, codec, self)
            }
            _ => serialize_physical_expr_with_converter(expr, codec, self),
        }
    }
}
