//! `SchedulerError`, its [`ErrorKind`], and the one mapping from kind to gRPC status and to
//! PostgreSQL SQLSTATE that every door uses.
//!
//! Variants say which operation failed and carry its context; [`SchedulerError::kind`] says what
//! kind of failure it was, read from the variant and from the typed errors inside it
//! (DataFusion's variants, [`CatalogError`], [`TaskError`] from the executors). Code decides on
//! kinds, never on message text.

use std::error::Error;

use datafusion::common::{DataFusionError, SchemaError};
use glaux_catalog::CatalogError;
use glaux_proto::{ExecutorAddr, QueryId, TaskError, TaskFailure, find_cause};
use glaux_storage::LocationError;

/// What kind of failure an error is: what a client can do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The statement does not read as SQL.
    Parse,
    UnknownDatabase,
    UnknownTable,
    UnknownColumn,
    /// An unknown prepared statement or partition.
    UnknownObject,
    AlreadyExists,
    /// The statement reads but does not make sense (types, names, values).
    InvalidStatement,
    /// What Glaux does not do (yet), named.
    Unsupported,
    /// The deployment does not allow it (a location outside the warehouse roots).
    PermissionDenied,
    /// The catalog's own storage failed.
    Catalog,
    /// Running the query failed (bad data, an error in a function).
    Execution,
    /// An executor could not be reached while the query ran.
    LostExecutor {
        executor: ExecutorAddr,
    },
    /// The query needs executors and none is alive.
    NoExecutors,
    /// The scheduler is stopping: it starts no new statement (try again, or another scheduler).
    ShuttingDown,
    Cancelled,
    /// The query did not fit in memory.
    ResourceLimit,
    /// A limit of the doors (connections, request rate, statements at once) was reached.
    Limit,
    /// A request that is not what the protocol says (a handle that is not Glaux's).
    MalformedRequest,
    /// A bug or a broken setup: nothing the client can change.
    Internal,
}

impl ErrorKind {
    /// The gRPC status code Flight SQL clients get.
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::Parse | Self::InvalidStatement | Self::MalformedRequest => Code::InvalidArgument,
            Self::UnknownDatabase | Self::UnknownTable | Self::UnknownColumn | Self::UnknownObject => Code::NotFound,
            Self::AlreadyExists => Code::AlreadyExists,
            Self::Unsupported => Code::Unimplemented,
            Self::PermissionDenied => Code::PermissionDenied,
            Self::NoExecutors | Self::ShuttingDown => Code::Unavailable,
            Self::Cancelled => Code::Cancelled,
            Self::ResourceLimit | Self::Limit => Code::ResourceExhausted,
            Self::Catalog | Self::Execution | Self::LostExecutor { .. } | Self::Internal => Code::Internal,
        }
    }

    /// The SQLSTATE PostgreSQL clients get, as PostgreSQL would class the failure.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::Parse => "42601",                                      // syntax_error
            Self::UnknownDatabase => "3D000",                            // invalid_catalog_name
            Self::UnknownTable => "42P01",                               // undefined_table
            Self::UnknownColumn => "42703",                              // undefined_column
            Self::UnknownObject => "42704",                              // undefined_object
            Self::AlreadyExists => "42P07",                              // duplicate_table
            Self::InvalidStatement => "42000",                           // syntax_error_or_access_rule_violation
            Self::Unsupported => "0A000",                                // feature_not_supported
            Self::PermissionDenied => "42501",                           // insufficient_privilege
            Self::Cancelled => "57014",                                  // query_canceled
            Self::ResourceLimit => "53200",                              // out_of_memory
            Self::Limit => "53400",                                      // configuration_limit_exceeded
            Self::NoExecutors => "57P03",                                // cannot_connect_now
            Self::ShuttingDown => "57P01",                               // admin_shutdown
            Self::LostExecutor { .. } => "58000",                        // system_error (outside the database proper)
            Self::MalformedRequest => "08P01",                           // protocol_violation
            Self::Catalog | Self::Execution | Self::Internal => "XX000", // internal_error
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Config(String),
    /// A statement refused before (or instead of) planning it, for a reason of `kind`.
    #[error("{message}")]
    Refused { kind: ErrorKind, message: String },
    /// DataFusion could not plan the statement: `message` is what the client reads (worded for
    /// Trino users where DataFusion's words would not help), `source` what it is.
    #[error("{message}")]
    Plan { message: String, source: DataFusionError },
    /// The catalog refused or failed (DDL, partitions, prepared statements).
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error("query {query}: {source}")]
    Execute { query: QueryId, source: DataFusionError },
    #[error(
        "query {query} needs executors, but none is alive; start one with `glaux executor --scheduler <this scheduler>`"
    )]
    NoExecutors { query: QueryId },
    #[error("query {query}: cannot launch tasks on executor {executor}: {message}")]
    LaunchTasks { query: QueryId, executor: ExecutorAddr, lost: bool, message: String },
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// A bug met while planning or running one statement: that statement's error alone.
    #[error("the scheduler hit a bug {during} this statement: {message}")]
    Panicked { during: &'static str, message: String },
    #[error("query cancelled by the client")]
    Cancelled,
    /// A broken invariant of the scheduler's own.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SchedulerError {
    /// A statement refused for a reason of `kind`.
    pub fn refused(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::Refused { kind, message: message.into() }
    }

    /// A planning failure in DataFusion's own words (or the catalog's, when it says more).
    pub fn plan(source: DataFusionError) -> Self {
        let catalog = find_cause::<CatalogError>(&source);
        let message = catalog.map_or_else(|| source.to_string(), ToString::to_string);
        Self::Plan { message, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Bind { .. } | Self::Config(_) | Self::Panicked { .. } | Self::Internal(_) => ErrorKind::Internal,
            Self::Refused { kind, .. } => kind.clone(),
            Self::Plan { source, .. } => kind_in(source).unwrap_or(ErrorKind::InvalidStatement),
            Self::Catalog(error) => catalog_kind(error),
            Self::Execute { source, .. } => kind_in(source).unwrap_or(ErrorKind::Execution),
            Self::NoExecutors { .. } => ErrorKind::NoExecutors,
            Self::LaunchTasks { executor, lost: true, .. } => ErrorKind::LostExecutor { executor: executor.clone() },
            Self::LaunchTasks { .. } => ErrorKind::Execution,
            Self::MalformedRequest(_) => ErrorKind::MalformedRequest,
            Self::Cancelled => ErrorKind::Cancelled,
        }
    }
}

impl From<SchedulerError> for tonic::Status {
    fn from(error: SchedulerError) -> Self {
        tonic::Status::new(error.kind().grpc_code(), glaux_proto::status_message(error.to_string()))
    }
}

/// The kind a typed error somewhere in `error`'s chain says; `None` where nothing in it says
/// more than "it failed" (the caller knows whether that was planning or running).
/// The kind of a failure met while running a query.
pub(crate) fn execution_kind(error: &DataFusionError) -> ErrorKind {
    kind_in(error).unwrap_or(ErrorKind::Execution)
}

pub fn kind_in(error: &DataFusionError) -> Option<ErrorKind> {
    let mut next: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(error) = next {
        if let Some(kind) = own_kind(error) {
            return Some(kind);
        }
        next = error.source();
    }
    None
}

fn own_kind(error: &(dyn Error + 'static)) -> Option<ErrorKind> {
    if let Some(scheduler) = error.downcast_ref::<SchedulerError>() {
        return Some(scheduler.kind());
    }
    if let Some(task) = error.downcast_ref::<TaskError>() {
        return Some(match &task.failure {
            TaskFailure::LostExecutor(executor) => ErrorKind::LostExecutor { executor: executor.clone() },
            TaskFailure::ResourcesExhausted => ErrorKind::ResourceLimit,
            TaskFailure::Cancelled => ErrorKind::Cancelled,
            TaskFailure::Failed => ErrorKind::Execution,
        });
    }
    if let Some(catalog) = error.downcast_ref::<CatalogError>() {
        return match catalog {
            // Only what the catalog says itself; a DataFusion error inside is read on its own.
            CatalogError::DataFusion(_) => None,
            other => Some(catalog_kind(other)),
        };
    }
    if let Some(location) = error.downcast_ref::<LocationError>() {
        return Some(location_kind(location));
    }
    if error.is::<datafusion::sql::sqlparser::parser::ParserError>() {
        return Some(ErrorKind::Parse);
    }
    match error.downcast_ref::<DataFusionError>()? {
        DataFusionError::SQL(..) => Some(ErrorKind::Parse),
        DataFusionError::SchemaError(schema, _) if matches!(**schema, SchemaError::FieldNotFound { .. }) => {
            Some(ErrorKind::UnknownColumn)
        }
        DataFusionError::SchemaError(..) => Some(ErrorKind::InvalidStatement),
        DataFusionError::NotImplemented(_) => Some(ErrorKind::Unsupported),
        DataFusionError::ResourcesExhausted(_) => Some(ErrorKind::ResourceLimit),
        _ => None,
    }
}

fn catalog_kind(error: &CatalogError) -> ErrorKind {
    match error {
        CatalogError::Parse(_) => ErrorKind::Parse,
        CatalogError::Unsupported(_) => ErrorKind::Unsupported,
        CatalogError::Invalid(_) | CatalogError::DatabaseNotEmpty { .. } => ErrorKind::InvalidStatement,
        CatalogError::UnknownDatabase { .. } => ErrorKind::UnknownDatabase,
        CatalogError::UnknownTable { .. } => ErrorKind::UnknownTable,
        CatalogError::UnknownPartition(_) => ErrorKind::UnknownObject,
        CatalogError::TableExists { .. } | CatalogError::PartitionExists(_) => ErrorKind::AlreadyExists,
        CatalogError::Location(location) => location_kind(location),
        CatalogError::Store(_) => ErrorKind::Catalog,
        CatalogError::PermissionDenied(_) => ErrorKind::PermissionDenied,
        CatalogError::UnknownRole(_) => ErrorKind::UnknownObject,
        CatalogError::RoleExists(_) => ErrorKind::AlreadyExists,
        CatalogError::ReadFile { .. } => ErrorKind::Execution,
        CatalogError::DataFusion(source) => kind_in(source).unwrap_or(ErrorKind::InvalidStatement),
    }
}

fn location_kind(error: &LocationError) -> ErrorKind {
    match error {
        LocationError::Invalid(_) | LocationError::Missing(_) => ErrorKind::InvalidStatement,
        LocationError::OutsideRoots { .. } | LocationError::Private(_) | LocationError::UnconfiguredBucket { .. } => {
            ErrorKind::PermissionDenied
        }
        LocationError::UnsupportedScheme { .. } => ErrorKind::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_types_through_any_wrapping() {
        let missing_column = DataFusionError::Context(
            "planning".into(),
            Box::new(DataFusionError::SchemaError(
                Box::new(SchemaError::FieldNotFound {
                    field: Box::new(datafusion::common::Column::from_name("x")),
                    valid_fields: vec![],
                }),
                Box::new(None),
            )),
        );
        let error = SchedulerError::plan(missing_column);
        assert_eq!(error.kind(), ErrorKind::UnknownColumn);
        assert_eq!(error.kind().sqlstate(), "42703");
        let unknown = CatalogError::UnknownTable { database: "d".into(), table: "t".into() };
        let through_datafusion = SchedulerError::plan(DataFusionError::from(unknown));
        assert_eq!(through_datafusion.kind(), ErrorKind::UnknownTable);
        let lost = ExecutorAddr::parse("10.0.0.7:5000").unwrap();
        let task = TaskError::new(TaskFailure::LostExecutor(lost.clone()), "lost executor 10.0.0.7:5000");
        let error = SchedulerError::Execute {
            query: QueryId::random(),
            source: DataFusionError::Shared(std::sync::Arc::new(DataFusionError::External(Box::new(task)))),
        };
        assert_eq!(error.kind(), ErrorKind::LostExecutor { executor: lost });
        let plain = SchedulerError::plan(DataFusionError::Plan("Invalid function 'nope'".into()));
        assert_eq!(plain.kind(), ErrorKind::InvalidStatement);
        assert_eq!(tonic::Status::from(plain).code(), tonic::Code::InvalidArgument);
    }
}
