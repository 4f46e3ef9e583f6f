//! Errors of the executor's services, and their one mapping to gRPC status.

use datafusion::error::DataFusionError;
use glaux_proto::{QueryId, StageId, TaskId};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("task {query}/{stage}/{task} has a plan this executor cannot decode: {source}")]
    DecodePlan { query: QueryId, stage: StageId, task: TaskId, source: DataFusionError },
    #[error("task {query}/{stage}/{task} is not installed on this executor (finished, cancelled or expired)")]
    UnknownTask { query: QueryId, stage: StageId, task: TaskId },
    #[error("task {query}/{stage}/{task} has no output partition {partition}")]
    UnknownPartition { query: QueryId, stage: StageId, task: TaskId, partition: u32 },
    #[error("{0}")]
    Execute(#[from] DataFusionError),
    #[error("cannot set up the executor session: {0}")]
    Session(DataFusionError),
    #[error("{0}")]
    Config(String),
    /// A stage output asked for without the cluster credential.
    #[error(
        "this executor serves callers without the cluster credential only the result endpoints a scheduler gave them"
    )]
    MembersOnly,
    /// A task or task output asked for without a valid token from the scheduler.
    #[error("task {query}/{stage}/{task}: {source}")]
    Token { query: String, stage: u32, task: u32, source: glaux_proto::TokenError },
}

impl From<ExecutorError> for tonic::Status {
    fn from(error: ExecutorError) -> Self {
        let message = glaux_proto::status_message(error.to_string());
        match error {
            ExecutorError::Bind { .. } | ExecutorError::Session(_) | ExecutorError::Config(_) => {
                tonic::Status::internal(message)
            }
            ExecutorError::MalformedRequest(_) | ExecutorError::DecodePlan { .. } => {
                tonic::Status::invalid_argument(message)
            }
            ExecutorError::UnknownTask { .. } | ExecutorError::UnknownPartition { .. } => {
                tonic::Status::not_found(message)
            }
            ExecutorError::Execute(error) => glaux_proto::status_of(&error),
            ExecutorError::Token { .. } => tonic::Status::permission_denied(message),
            ExecutorError::MembersOnly => tonic::Status::unauthenticated(message),
        }
    }
}
