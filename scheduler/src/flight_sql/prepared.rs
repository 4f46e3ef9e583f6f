//! Prepared statements' bound parameters.
//!
//! A client binds values to a prepared statement's placeholders with `DoPut` (one row, a column
//! per placeholder). The scheduler answers with a new handle that carries the row (Arrow IPC),
//! so executing it needs no state here; for drivers that keep using the handle they got at
//! creation, the row is also remembered by statement id until the statement is closed.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Mutex;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use datafusion::common::ScalarValue;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

/// Statements remembered at most, and their bytes at most; beyond, the oldest binding is
/// forgotten (its client still has the handle that carries it).
const MAX_REMEMBERED: usize = 10_000;
const MAX_REMEMBERED_BYTES: usize = 64 << 20;

/// The Arrow IPC a client may send to bind one row of parameter values.
pub const MAX_PARAMETER_BYTES: usize = 1 << 20;

/// Parameters bound per prepared statement id, for drivers that ignore the handle `DoPut` returns.
#[derive(Debug, Default)]
pub struct BoundParameters {
    by_statement: Mutex<Remembered>,
}

/// Parameter rows by statement id, the ids in the order they were bound, and their total bytes.
#[derive(Debug, Default)]
struct Remembered {
    rows: HashMap<String, Vec<u8>>,
    order: std::collections::VecDeque<String>,
    bytes: usize,
}

/// Bindings are kept per user: another user who learns a statement's id cannot rebind it.
fn key(user: Option<&str>, statement: &str) -> String {
    format!("{}\0{statement}", user.unwrap_or_default())
}

impl BoundParameters {
    pub fn bind(&self, user: Option<&str>, statement: &str, parameters: Vec<u8>) {
        let statement = &key(user, statement);
        let mut remembered = self.by_statement.lock().unwrap_or_else(|e| e.into_inner());
        remembered.bytes += parameters.len();
        match remembered.rows.insert(statement.to_string(), parameters) {
            Some(previous) => remembered.bytes -= previous.len(),
            None => remembered.order.push_back(statement.to_string()),
        }
        while remembered.rows.len() > MAX_REMEMBERED || remembered.bytes > MAX_REMEMBERED_BYTES {
            let Some(oldest) = remembered.order.pop_front() else { break };
            if let Some(row) = remembered.rows.remove(&oldest) {
                remembered.bytes -= row.len();
            }
        }
    }

    pub fn get(&self, user: Option<&str>, statement: &str) -> Option<Vec<u8>> {
        self.by_statement.lock().unwrap_or_else(|e| e.into_inner()).rows.get(&key(user, statement)).cloned()
    }

    pub fn close(&self, user: Option<&str>, statement: &str) {
        let statement = &key(user, statement);
        let mut remembered = self.by_statement.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(row) = remembered.rows.remove(statement) {
            remembered.bytes -= row.len();
            remembered.order.retain(|s| s != statement);
        }
    }
}

/// Reads the parameter row a client sent with `DoPut`, as Arrow IPC to keep in a handle. No rows
/// (or no batch) unbinds; more than one row is refused, as a query runs with one set of values.
/// At most [`MAX_PARAMETER_BYTES`] are read: bound values are a row, not a data set.
pub async fn read_parameters(stream: PeekableFlightDataStream) -> Result<Vec<u8>, Status> {
    let mut messages: Vec<Result<arrow_flight::FlightData, FlightError>> = Vec::new();
    let mut bytes = 0usize;
    let mut stream = std::pin::pin!(stream);
    while let Some(message) = stream.next().await {
        let message = message?;
        bytes += message.data_header.len() + message.data_body.len() + message.app_metadata.len();
        if bytes > MAX_PARAMETER_BYTES {
            return Err(Status::resource_exhausted(format!(
                "bound parameters are limited to {MAX_PARAMETER_BYTES} bytes (one row of values)"
            )));
        }
        messages.push(Ok(message));
    }
    let messages = futures::stream::iter(messages);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(messages)
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("malformed parameter batch: {e}")))?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let Some(batch) = batches.into_iter().find(|b| b.num_rows() > 0) else { return Ok(Vec::new()) };
    if rows > 1 {
        return Err(Status::invalid_argument(format!(
            "a query takes one row of parameters, got {rows} (run it once per row)"
        )));
    }
    let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema()).map_err(internal)?;
    writer.write(&batch).map_err(internal)?;
    writer.finish().map_err(internal)?;
    writer.into_inner().map_err(internal)
}

/// The values of a parameter row kept by [`read_parameters`], in placeholder order.
pub fn decode_parameters(bytes: &[u8]) -> Result<Vec<ScalarValue>, Status> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let malformed = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("malformed bound parameters: {e}"));
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| malformed(&e))?;
    let Some(batch) = reader.next().transpose().map_err(|e| malformed(&e))? else { return Ok(Vec::new()) };
    batch.columns().iter().map(|column| ScalarValue::try_from_array(column, 0).map_err(|e| malformed(&e))).collect()
}

fn internal(e: arrow::error::ArrowError) -> Status {
    Status::internal(format!("encoding parameters: {e}"))
}
