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
use futures::TryStreamExt;
use tonic::Status;

/// Statements remembered at most; beyond, the oldest binding is forgotten (its client still has
/// the handle that carries it).
const MAX_REMEMBERED: usize = 10_000;

/// Parameters bound per prepared statement id, for drivers that ignore the handle `DoPut` returns.
#[derive(Debug, Default)]
pub struct BoundParameters {
    by_statement: Mutex<Remembered>,
}

/// Parameter rows by statement id, and the ids in the order they were bound.
type Remembered = (HashMap<String, Vec<u8>>, std::collections::VecDeque<String>);

impl BoundParameters {
    pub fn bind(&self, statement: &str, parameters: Vec<u8>) {
        let mut guard = self.by_statement.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(statement.to_string(), parameters).is_none() {
            order.push_back(statement.to_string());
        }
        while map.len() > MAX_REMEMBERED {
            let Some(oldest) = order.pop_front() else { break };
            map.remove(&oldest);
        }
    }

    pub fn get(&self, statement: &str) -> Option<Vec<u8>> {
        self.by_statement.lock().unwrap_or_else(|e| e.into_inner()).0.get(statement).cloned()
    }

    pub fn close(&self, statement: &str) {
        let mut guard = self.by_statement.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.remove(statement).is_some() {
            order.retain(|s| s != statement);
        }
    }
}

/// Reads the parameter row a client sent with `DoPut`, as Arrow IPC to keep in a handle. No rows
/// (or no batch) unbinds; more than one row is refused, as a query runs with one set of values.
pub async fn read_parameters(stream: PeekableFlightDataStream) -> Result<Vec<u8>, Status> {
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from))
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
