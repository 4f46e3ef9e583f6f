//! Appending statistics to the end of a Flight stream.
//!
//! The statistics ride in the `app_metadata` of the stream's last message. When a stream ends, we
//! send one more, empty, record batch carrying them: every Flight client understands a zero-row batch,
//! while metadata-only messages trip some (the Go client under ADBC among them).

use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions};
use arrow_flight::FlightData;
use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};

/// Encodes `batches` as Flight data, then one empty batch whose `app_metadata` is `trailer()`,
/// evaluated only once the batches are exhausted. Clients get dictionaries hydrated to plain
/// arrays; cluster members keep them (their schemas say dictionary).
pub fn with_trailer<S, F>(
    schema: SchemaRef,
    batches: S,
    hydrate_dictionaries: bool,
    trailer: F,
) -> impl Stream<Item = Result<FlightData, FlightError>> + Send
where
    S: Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
    F: FnOnce() -> Bytes + Send + 'static,
{
    let dictionaries =
        if hydrate_dictionaries { DictionaryHandling::Hydrate } else { DictionaryHandling::Resend };
    // The encoder adapts the schema (hydrated dictionaries); the trailer batch must match what it sent.
    let sent_schema: Arc<Mutex<Option<SchemaRef>>> = Arc::default();
    let capture = Arc::clone(&sent_schema);
    let data = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_dictionary_handling(dictionaries)
        .build(batches)
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
        let messages: Vec<FlightData> =
            dictionaries.into_iter().map(FlightData::from).chain([batch]).collect();
        Ok::<_, FlightError>(stream::iter(messages.into_iter().map(Ok)))
    })
    .try_flatten();
    data.chain(last)
}
