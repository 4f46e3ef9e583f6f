//! [`TaskError`]: why reading a task's output failed, by kind, on both sides of the wire.
//!
//! An executor that fails a stream sends its error as a gRPC status whose details are a
//! [`FailureDetail`] ([`status_of`]); the reader turns the status back into a `TaskError`
//! ([`TaskError::from_status`]), so a failure keeps its kind through any number of stages, and
//! the scheduler decides on the kind (re-plan without a lost executor), never on the text.

use std::error::Error;

use datafusion::common::DataFusionError;
use prost::Message;

use crate::generated::FailureDetail;
use crate::generated::failure_detail::Kind as WireKind;
use crate::ids::ExecutorAddr;

/// What kind of failure a task's output met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskFailure {
    /// The task (or one it read) failed: bad data, a bug, an error in a function.
    Failed,
    /// The executor could not be reached, or its connection broke.
    LostExecutor(ExecutorAddr),
    /// The task did not fit in its executor's memory.
    ResourcesExhausted,
    /// The task was cancelled (its query ended).
    Cancelled,
}

/// A failed read of a task output (or a failure relayed from further down the stage tree).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub failure: TaskFailure,
    pub message: String,
}

impl TaskError {
    pub fn new(failure: TaskFailure, message: impl Into<String>) -> Self {
        Self { failure, message: message.into() }
    }

    /// The executor this error says was lost, if it says so.
    pub fn lost_executor(&self) -> Option<&ExecutorAddr> {
        match &self.failure {
            TaskFailure::LostExecutor(executor) => Some(executor),
            _ => None,
        }
    }

    /// What a call to `executor` that ended with `status` means: the failure its details carry
    /// when the peer sent them, a lost executor when the status was made by our own transport
    /// (the connection could not be made or broke), the peer's own words otherwise.
    pub fn from_status(executor: &ExecutorAddr, status: &tonic::Status) -> Self {
        if let Some(detail) = failure_detail(status) {
            return Self::new(detail, status.message());
        }
        // A status the peer sent has no source; one our transport made from a failed connection
        // (refused, reset, a keep-alive that went unanswered) keeps the error it came from.
        // A cancelled stream is not a loss (the peer ended the task: its query was cancelled)
        // unless our connection was what cancelled it: hyper cancels the requests a closed
        // connection was carrying ("operation was canceled").
        let connection_gone = find_cause::<hyper::Error>(status).is_some_and(|e| e.is_canceled() || e.is_closed());
        let transport = status.source().is_some() && (status.code() != tonic::Code::Cancelled || connection_gone);
        if status.code() == tonic::Code::Unavailable || transport {
            let message = format!("{} ({})", lost_executor_words(executor), transport_words(status));
            return Self::new(TaskFailure::LostExecutor(executor.clone()), message);
        }
        let failure = match status.code() {
            tonic::Code::ResourceExhausted => TaskFailure::ResourcesExhausted,
            tonic::Code::Cancelled => TaskFailure::Cancelled,
            _ => TaskFailure::Failed,
        };
        Self::new(failure, status.message())
    }

    /// This error with `context` in front of its message, keeping its kind.
    pub fn context(self, context: impl std::fmt::Display) -> Self {
        Self { message: format!("{context}: {}", self.message), ..self }
    }
}

/// What broke a connection, as the status and the errors under it say ("http2 error: keep-alive
/// timed out"), each said once.
fn transport_words(status: &tonic::Status) -> String {
    let mut words = vec![status.message().to_string()];
    let mut next = status.source();
    while let Some(error) = next {
        let said = error.to_string();
        if !words.iter().any(|w| w.contains(&said)) {
            words.push(said);
        }
        next = error.source();
    }
    words.retain(|w| !w.is_empty());
    words.join(": ")
}

/// How messages name a lost executor (users read it; code reads [`TaskFailure`]).
pub fn lost_executor_words(executor: &ExecutorAddr) -> String {
    format!("lost executor {executor}")
}

/// The error of type `T` somewhere in `error`'s chain of sources: our own errors travel inside
/// DataFusion's (`External`, `Context`, `Shared`, Arrow's `ExternalError`), which all name their
/// inner error as their source.
pub fn find_cause<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        next = error.source();
    }
    None
}

impl From<&DataFusionError> for TaskError {
    /// A task's failure in this process: the kind a `TaskError` inside it says (one relayed
    /// from further down), or exhausted memory, or a plain failure; with the whole message.
    fn from(error: &DataFusionError) -> Self {
        let failure = match find_cause::<TaskError>(error) {
            Some(task) => task.failure.clone(),
            None => match error.find_root() {
                DataFusionError::ResourcesExhausted(_) => TaskFailure::ResourcesExhausted,
                _ => TaskFailure::Failed,
            },
        };
        Self::new(failure, error.to_string())
    }
}

/// The gRPC status that carries `error` to a reader on another member, with its kind in the
/// status details.
pub fn status_of(error: &DataFusionError) -> tonic::Status {
    let failure = TaskError::from(error).failure;
    let (kind, executor, code) = match &failure {
        TaskFailure::Failed => (WireKind::Failed, String::new(), tonic::Code::Internal),
        TaskFailure::LostExecutor(executor) => (WireKind::LostExecutor, executor.to_string(), tonic::Code::Internal),
        TaskFailure::ResourcesExhausted => {
            (WireKind::ResourcesExhausted, String::new(), tonic::Code::ResourceExhausted)
        }
        TaskFailure::Cancelled => (WireKind::Cancelled, String::new(), tonic::Code::Cancelled),
    };
    let detail = FailureDetail { kind: kind as i32, executor };
    tonic::Status::with_details(code, status_message(error.to_string()), detail.encode_to_vec().into())
}

/// The longest status message sent: it travels in an HTTP/2 header (trailer), and a longer one
/// than the peer accepts breaks the whole connection instead of reporting the error.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// `message`, cut to [`MAX_STATUS_MESSAGE_BYTES`] at a character boundary, saying how much was cut.
pub fn status_message(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_STATUS_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ... ({} more bytes)", &message[..end], message.len() - end)
}

/// The failure a status's details carry, if they are a well-formed [`FailureDetail`].
fn failure_detail(status: &tonic::Status) -> Option<TaskFailure> {
    if status.details().is_empty() {
        return None;
    }
    let detail = FailureDetail::decode(status.details()).ok()?;
    Some(match WireKind::try_from(detail.kind).ok()? {
        WireKind::Failed => TaskFailure::Failed,
        WireKind::LostExecutor => TaskFailure::LostExecutor(ExecutorAddr::parse(&detail.executor).ok()?),
        WireKind::ResourcesExhausted => TaskFailure::ResourcesExhausted,
        WireKind::Cancelled => TaskFailure::Cancelled,
    })
}

#[cfg(test)]
mod status_message_tests {
    use super::{MAX_STATUS_MESSAGE_BYTES, status_message};

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        assert_eq!(status_message("short".into()), "short");
        let long = "é".repeat(10_000);
        let cut = status_message(long.clone());
        assert!(cut.len() <= MAX_STATUS_MESSAGE_BYTES, "{}", cut.len());
        assert!(cut.ends_with(" more bytes)") && long.starts_with(cut.split(" ... (").next().unwrap_or("")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_survive_the_wire_and_any_wrapping() {
        let lost = ExecutorAddr::parse("10.0.0.7:5000").unwrap();
        let reader = ExecutorAddr::parse("10.0.0.8:5000").unwrap();
        // A transport failure names the executor that cannot be reached.
        let refused = TaskError::from_status(&lost, &tonic::Status::unavailable("tcp connect error"));
        assert_eq!(refused.lost_executor(), Some(&lost));
        assert!(refused.to_string().contains("lost executor 10.0.0.7:5000"), "{refused}");
        // Relayed by the reader's executor inside DataFusion's wrappers, it keeps its kind.
        let wrapped = DataFusionError::Context(
            "join".into(),
            Box::new(DataFusionError::Shared(std::sync::Arc::new(DataFusionError::External(Box::new(
                refused.context("stage 2 task 0"),
            ))))),
        );
        let status = status_of(&wrapped);
        let relayed = TaskError::from_status(&reader, &status);
        assert_eq!(relayed.lost_executor(), Some(&lost));
        // A peer's own error is its message; no source, so not a lost connection.
        let internal = TaskError::from_status(&reader, &tonic::Status::internal("Parquet error"));
        assert_eq!((internal.failure, internal.message.as_str()), (TaskFailure::Failed, "Parquet error"));
        let memory = status_of(&DataFusionError::ResourcesExhausted("too big".into()));
        assert_eq!(TaskError::from_status(&reader, &memory).failure, TaskFailure::ResourcesExhausted);
    }

    /// A request whose HTTP/2 connection closes under it: hyper cancels it, and tonic says
    /// `Cancelled`. That is a lost executor, not a cancelled task.
    #[tokio::test]
    async fn a_request_cancelled_by_its_closed_connection_is_a_lost_executor() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let io = hyper_util::rt::TokioIo::new(client);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
        let mut driving = tokio::task::JoinSet::new();
        driving.spawn(connection);
        let request = hyper::Request::post("/arrow.flight.protocol.FlightService/DoGet")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request);
        drop(server);
        let error = response.await.unwrap_err();
        let status = tonic::Status::from_error(Box::new(error));
        let lost = ExecutorAddr::parse("10.0.0.7:5000").unwrap();
        let error = TaskError::from_status(&lost, &status);
        assert_eq!(error.lost_executor(), Some(&lost), "{status:?}");
    }
}
