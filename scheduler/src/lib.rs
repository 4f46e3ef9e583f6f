//! The Glaux scheduler: the one process clients talk to.
//!
//! - [`SchedulerConfig`] / [`Scheduler::start`]: binds one port that serves Arrow Flight SQL to
//!   clients and the `SchedulerCluster` gRPC service to executors (two ports with TLS: clients
//!   speak TLS, executors join on a port of their own; `tls` holds the identity).
//! - `athena_statements`: Athena statements DataFusion does not parse (`SHOW DATABASES`, ...),
//!   rewritten into SQL it runs.
//! - `catalog`: databases, tables and partitions in SQLite ([`Catalog`], [`SqliteCatalog`]),
//!   presented to DataFusion as its `glaux` catalog; partitioned tables choose their partitions
//!   (registered, or projected) from a query's predicates before listing anything.
//! - `create_table`, `partitions`: DDL and the crawler; `MSCK REPAIR TABLE`, `ALTER TABLE
//!   ADD|DROP PARTITION`, `SHOW PARTITIONS`.
//! - `cluster`: which executors are alive ([`ClusterState`]), fed by registrations and heartbeats.
//! - `planner`: DataFusion plans SQL; `cut_stages` cuts the physical plan into a tree of stages
//!   joined by shuffles, gathers and broadcasts ([`DistributedPlan`], [`Stage`], [`Task`]),
//!   `assign_tasks` balances each stage's partitions over executors by bytes, `restrict_to_task`
//!   gives each task its share.
//! - `statement`: what a client's SQL is (an Athena statement, `EXECUTE` of a prepared one, or
//!   Trino SQL planned by DataFusion).
//! - `query`: runs a statement: DDL on the catalog, queries by launching tasks and streaming the
//!   final gather, which runs here and reads the last executor stage over Flight; `EXPLAIN
//!   ANALYZE`; re-planning when an executor is lost before any row went out.
//! - `rerun`: re-running a storage-only task of the final gather on another executor when its own
//!   is lost mid-stream.
//! - `flight_sql`: the Flight SQL front door (with `CancelFlightInfo`); converts and delegates to `query`.
//! - `postgres`: the PostgreSQL wire protocol front door (`--postgres-addr`), for JDBC/ODBC/psql;
//!   the same engine, plus `SET`/`SHOW`/transactions and `pg_catalog` (datafusion-pg-catalog).
//! - `client_types`: the Arrow types both doors send clients (views and dictionaries made plain);
//!   `placeholders`: `?`/`$n` parameters numbered, described and bound.
//! - `trino`: Trino's SQL as Athena users write it (UNNEST, TABLESAMPLE, type syntax, `_col0`
//!   names, clearer errors), rewritten for DataFusion before planning; the functions are
//!   `glaux-functions`.
//! - `client_auth`: Flight SQL users (Argon2id hashes), Basic-for-bearer-token handshakes, and the
//!   layer that refuses unauthenticated calls.

mod athena_statements;
mod catalog;
mod client_auth;
mod client_types;
mod cluster;
mod config;
mod create_table;
mod error;
mod flight_sql;
mod partitions;
mod placeholders;
mod planner;
mod postgres;
mod query;
mod rerun;
mod server;
mod session;
mod show_functions;
mod statement;
mod tls;
mod trino;

pub use catalog::{Catalog, ColumnDef, SqliteCatalog, TableDef, TableFormat};
pub use client_auth::{Users, hash_password};
pub use cluster::{ClusterState, ExecutorInfo};
pub use config::SchedulerConfig;
pub use error::SchedulerError;
pub use planner::{DistributedPlan, Stage, Task};
pub use server::Scheduler;
pub use tls::TlsIdentity;
