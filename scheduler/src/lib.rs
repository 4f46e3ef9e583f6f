//! The Glaux scheduler: the one process clients talk to.
//!
//! - [`SchedulerConfig`] / [`Scheduler::start`] (`server.rs`): binds the client doors and the
//!   port executors join on, and runs the background work.
//! - Doors: `flight_sql` (Arrow Flight SQL) and `postgres` (the PostgreSQL wire protocol, for
//!   JDBC/ODBC/psql) translate their protocol into calls on `engine`'s `QueryEngine`, the one
//!   narrow API they share, with `ClientSession` (`client_session.rs`) saying where a client
//!   is; `client_auth` checks users, `client_types` makes results plain for any client, `tls`
//!   holds the doors' certificate.
//! - `statement`: what a client's SQL is, recognized once into one `Statement`, a file per
//!   family (queries, EXPLAIN, DDL, SHOW, partitions, USE, prepared statements), each saying
//!   what it returns and how it runs; `trino` reads Trino SQL into what DataFusion plans.
//! - `query`: the life of a query on the cluster: planned, cut into stages, launched, run,
//!   re-planned or re-run when an executor is lost, ended everywhere.
//! - `planner`: cutting DataFusion's physical plan into stages ([`DistributedPlan`], [`Stage`],
//!   [`Task`]) and assigning their tasks to executors.
//! - `cluster`: which executors are alive ([`ClusterState`]), fed by registrations and heartbeats.
//! - `background`: work the server owns beyond a request (a result its client reads from the
//!   executors, followed until read).
//! - `session`: the DataFusion session everything plans in (catalog from `glaux-catalog`,
//!   Glaux's functions, Parquet options).
//! - [`SchedulerError`] with its [`ErrorKind`]: the one mapping to gRPC and SQLSTATE.

mod access;
mod athena;
mod audit;
mod background;
mod client_auth;
mod client_session;
mod client_types;
mod cluster;
mod config;
mod console;
mod engine;
mod error;
mod flight_sql;
pub mod history;
mod http;
mod limits;
mod metrics;
mod ops;
mod planner;
mod postgres;
mod query;
mod reuse;
mod server;
mod session;
mod statement;
mod stopping;
mod system_tables;
mod tls;
mod trino;
mod workgroups;
mod write;

pub use athena::{issue_access_key, revoke_access_key};
pub use audit::AUDIT_TARGET;
pub use client_auth::{Users, hash_password};
pub use cluster::{ClusterState, ExecutorInfo};
pub use config::{DEFAULT_LISTING_CACHE_TTL, DEFAULT_SMALL_QUERY_BYTES, DEFAULT_TARGET_FILE_SIZE, SchedulerConfig};
pub use error::{ErrorKind, SchedulerError};
pub use flight_sql::ENDPOINTS_HEADER;
pub use limits::DoorLimits;
pub use planner::{DistributedPlan, Stage, Task};
pub use query::RetryPolicy;
pub use server::Scheduler;
pub use stopping::Drained;
pub use tls::TlsIdentity;
