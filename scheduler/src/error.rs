//! Errors of the scheduler's services, and their one mapping to gRPC status.

use datafusion::error::DataFusionError;
use glaux_proto::QueryId;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Plan(DataFusionError),
    #[error("query {query}: {source}")]
    Execute { query: QueryId, source: DataFusionError },
    #[error(
        "query {query} needs executors, but none is alive; start one with `glaux executor --scheduler <this scheduler>`"
    )]
    NoExecutors { query: QueryId },
    #[error("query {query}: cannot launch tasks on executor {endpoint}: {message}")]
    LaunchTasks { query: QueryId, endpoint: String, code: tonic::Code, message: String },
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    #[error("{0} is not supported")]
    Unsupported(String),
    #[error("{0}")]
    Config(String),
}

impl SchedulerError {
    pub fn plan(error: DataFusionError) -> Self {
        Self::Plan(error)
    }
}

impl From<SchedulerError> for tonic::Status {
    fn from(error: SchedulerError) -> Self {
        let message = error.to_string();
        match &error {
            SchedulerError::Bind { .. } | SchedulerError::Config(_) => tonic::Status::internal(message),
            SchedulerError::Plan(_) | SchedulerError::MalformedRequest(_) => {
                tonic::Status::invalid_argument(message)
            }
            SchedulerError::Execute { .. } | SchedulerError::LaunchTasks { .. } => {
                tonic::Status::internal(message)
            }
            SchedulerError::NoExecutors { .. } => tonic::Status::unavailable(message),
            SchedulerError::Unsupported(_) => tonic::Status::unimplemented(message),
        }
    }
}
