//! Plan fragments on the wire: datafusion-proto for DataFusion's own nodes, [`GlauxCodec`] for ours.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use datafusion::common::{Result, exec_datafusion_err, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;

use crate::generated::{StageReaderNode, TaskOutputLocation};
use crate::ids::{QueryId, StageId, TaskId};
use crate::stage_reader::{StageReaderExec, TaskOutput, reader_from_parts};

/// Encodes Glaux's own plan nodes inside datafusion-proto plans.
#[derive(Debug, Default)]
pub struct GlauxCodec;

impl PhysicalExtensionCodec for GlauxCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return internal_err!("StageReaderExec has no inputs, got {}", inputs.len());
        }
        let node = StageReaderNode::decode(buf)
            .map_err(|e| exec_datafusion_err!("malformed StageReaderNode: {e}"))?;
        let schema = Schema::try_from(IpcMessage(node.schema.into()))
            .map_err(|e| exec_datafusion_err!("malformed stage schema: {e}"))?;
        let outputs = node
            .outputs
            .into_iter()
            .map(|o| TaskOutput { endpoint: o.endpoint, task: TaskId(o.task_id), partition: o.partition })
            .collect();
        let reader = reader_from_parts(
            QueryId::from(node.query_id),
            StageId(node.stage_id),
            Arc::new(schema),
            outputs,
        )?;
        Ok(Arc::new(reader))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(reader) = node.downcast_ref::<StageReaderExec>() else {
            return internal_err!("GlauxCodec cannot encode {}", node.name());
        };
        let schema = reader.schema();
        let IpcMessage(schema) = SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map_err(|e| exec_datafusion_err!("encoding stage schema: {e}"))?;
        let node = StageReaderNode {
            query_id: reader.query().to_string(),
            stage_id: reader.stage().0,
            schema: schema.to_vec(),
            outputs: reader
                .outputs()
                .iter()
                .map(|o| TaskOutputLocation {
                    endpoint: o.endpoint.clone(),
                    task_id: o.task.0,
                    partition: o.partition,
                })
                .collect(),
        };
        node.encode(buf).map_err(|e| exec_datafusion_err!("encoding StageReaderNode: {e}"))
    }
}

pub fn encode_plan(plan: Arc<dyn ExecutionPlan>) -> Result<Vec<u8>> {
    Ok(physical_plan_to_bytes_with_extension_codec(plan, &GlauxCodec)?.to_vec())
}

/// Decodes a plan fragment; the context supplies functions and object stores.
pub fn decode_plan(bytes: &[u8], ctx: &TaskContext) -> Result<Arc<dyn ExecutionPlan>> {
    physical_plan_from_bytes_with_extension_codec(bytes, ctx, &GlauxCodec)
}
