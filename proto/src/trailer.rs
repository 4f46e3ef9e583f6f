//! Sending record batches over Flight: sized for the wire, with statistics at the end.
//!
//! No message may outgrow a gRPC limit whatever the data. A batch is cut into pieces of about
//! [`TARGET_MESSAGE_BYTES`], and the string/binary *view* columns of each piece are compacted:
//! a view array sliced from a large batch (or a 20-row top-k result of a join) still points into
//! every data buffer of its source, and IPC would send them all (TPC-H Q10 at SF 1 made a
//! 9.8 MB message of 20 rows that way).
//!
//! The statistics ride in the `app_metadata` of the stream's last message. When a stream ends, we
//! send one more, empty, record batch carrying them: every Flight client understands a zero-row batch,
//! while metadata-only messages trip some (the Go client under ADBC among them).

use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::CompressionType;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_flight::FlightData;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};

/// The size a piece of a batch aims at on the wire, well below any gRPC limit.
pub const TARGET_MESSAGE_BYTES: usize = 2 * 1024 * 1024;

/// The array with its view buffers rewritten to hold only what its rows use.
fn compact(array: &ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Utf8View => Arc::new(array.as_string_view().gc()),
        DataType::BinaryView => Arc::new(array.as_binary_view().gc()),
        _ => Arc::clone(array),
    }
}

/// `batch` with its view columns compacted ([`compact`]); the batch itself when it has none.
pub(crate) fn compacted(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    if !batch.columns().iter().any(|c| matches!(c.data_type(), DataType::Utf8View | DataType::BinaryView)) {
        return Ok(batch.clone());
    }
    let columns: Vec<ArrayRef> = batch.columns().iter().map(compact).collect();
    RecordBatch::try_new(batch.schema(), columns)
}

/// `batch` as pieces of about [`TARGET_MESSAGE_BYTES`] each, compacted.
pub fn wire_sized(batch: &RecordBatch) -> Result<Vec<RecordBatch>, FlightError> {
    let whole = compacted(batch)?;
    let bytes = whole.get_array_memory_size();
    let rows = whole.num_rows();
    if bytes <= TARGET_MESSAGE_BYTES || rows <= 1 {
        return Ok(vec![whole]);
    }
    let rows_per_piece = rows.div_ceil(bytes.div_ceil(TARGET_MESSAGE_BYTES)).max(1);
    (0..rows)
        .step_by(rows_per_piece)
        .map(|offset| Ok(compacted(&whole.slice(offset, rows_per_piece.min(rows - offset)))?))
        .collect()
}

/// Encodes `batches` as Flight data (each cut to size by [`wire_sized`]), then one empty batch whose `app_metadata` is `trailer()`,
/// evaluated only once the batches are exhausted. Clients get dictionaries hydrated to plain
/// arrays; cluster members keep them (their schemas say dictionary).
pub fn with_trailer<S, F>(
    schema: SchemaRef,
    batches: S,
    hydrate_dictionaries: bool,
    compress: bool,
    trailer: F,
) -> impl Stream<Item = Result<FlightData, FlightError>> + Send
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
    F: FnOnce() -> Bytes + Send + 'static,
{
    let dictionaries = if hydrate_dictionaries { DictionaryHandling::Hydrate } else { DictionaryHandling::Resend };
    // The encoder adapts the schema (hydrated dictionaries); the trailer batch must match what it sent.
    let sent_schema: Arc<Mutex<Option<SchemaRef>>> = Arc::default();
    let capture = Arc::clone(&sent_schema);
    let pieces = batches
        .map(|batch| batch.and_then(|b| wire_sized(&b)).map(|pieces| stream::iter(pieces.into_iter().map(Ok))))
        .try_flatten();
    let options = if compress {
        IpcWriteOptions::default().try_with_compression(Some(CompressionType::LZ4_FRAME))
    } else {
        Ok(IpcWriteOptions::default())
    };
    let data = FlightDataEncoderBuilder::new()
        .with_options(options.unwrap_or_default())
        .with_schema(schema)
        .with_dictionary_handling(dictionaries)
        .with_max_flight_data_size(TARGET_MESSAGE_BYTES)
        .build(pieces)
        .inspect_ok(move |message| {
            let mut sent = capture.lock().unwrap_or_else(|e| e.into_inner());
            if sent.is_none() {
                *sent = Schema::try_from(message).ok().map(Arc::new);
            }
        });
    let last = stream::once(async move {
        let schema = sent_schema
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| FlightError::ProtocolError("stream ended before its schema".into()))?;
        let empty = RecordBatch::new_empty(schema);
        let mut tracker = DictionaryTracker::new(false);
        let (dictionaries, batch) = IpcDataGenerator::default().encode(
            &empty,
            &mut tracker,
            &IpcWriteOptions::default(),
            &mut IpcWriteContext::default(),
        )?;
        let mut batch = FlightData::from(batch);
        batch.app_metadata = trailer();
        let messages: Vec<FlightData> = dictionaries.into_iter().map(FlightData::from).chain([batch]).collect();
        Ok::<_, FlightError>(stream::iter(messages.into_iter().map(Ok)))
    })
    .try_flatten();
    data.chain(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringViewArray;
    use arrow::datatypes::Field;

    #[test]
    fn view_columns_are_compacted_and_large_batches_cut() {
        let long = "x".repeat(1000);
        let strings: StringViewArray = (0..10_000).map(|i| Some(format!("{i}{long}"))).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8View, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(strings)]).unwrap();
        // Twenty rows sliced from ten megabytes send twenty rows' worth.
        let top = wire_sized(&batch.slice(100, 20)).unwrap();
        assert_eq!(top.len(), 1);
        assert!(top[0].get_array_memory_size() < 100_000, "{}", top[0].get_array_memory_size());
        // The whole batch goes in pieces under the target, every row once.
        let pieces = wire_sized(&batch).unwrap();
        assert!(pieces.len() >= 5);
        assert!(pieces.iter().all(|p| p.get_array_memory_size() <= TARGET_MESSAGE_BYTES + 64 * 1024));
        assert_eq!(pieces.iter().map(RecordBatch::num_rows).sum::<usize>(), 10_000);
    }

    #[tokio::test]
    async fn compressed_streams_decode_to_the_same_rows() {
        use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
        let strings: arrow::array::StringArray = (0..50_000).map(|i| Some(format!("row {}", i % 100))).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(strings)]).unwrap();
        let mut sizes = Vec::new();
        for compress in [false, true] {
            let input = futures::stream::iter([Ok(batch.clone())]);
            let messages: Vec<FlightData> =
                with_trailer(Arc::clone(&schema), input, false, compress, || Bytes::from_static(b"{}"))
                    .try_collect()
                    .await
                    .unwrap();
            sizes.push(messages.iter().map(|m| m.data_body.len()).sum::<usize>());
            let mut decoded = FlightDataDecoder::new(futures::stream::iter(messages.into_iter().map(Ok)));
            let mut rows = Vec::new();
            while let Some(message) = decoded.next().await {
                if let DecodedPayload::RecordBatch(b) = message.unwrap().payload {
                    rows.push(b);
                }
            }
            let rows = arrow::compute::concat_batches(&schema, &rows).unwrap();
            assert_eq!(rows, batch);
        }
        assert!(sizes[1] * 2 < sizes[0], "LZ4 shrinks repetitive strings: {sizes:?}");
    }
}
