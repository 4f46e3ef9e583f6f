//! The Glaux executor: a stateless worker.
//!
//! An executor registers with its scheduler, heartbeats, accepts plan fragments ([`TaskTable`] holds
//! them until their output is read) and serves each task's output partitions over Arrow Flight. It
//! keeps no state about a query beyond its installed tasks, so losing one loses only those tasks.
//!
//! - [`ExecutorConfig`]: what to bind, where the scheduler is, slots, memory, credentials.
//! - [`Executor::start`]: binds, serves, registers; the returned [`Executor`] stops everything on drop.

mod config;
mod control_service;
mod error;
mod flight_service;
mod metrics;
mod page_index;
mod registration;
mod server;
mod session;
mod spool;
mod task_key;
mod task_table;

pub use config::ExecutorConfig;
pub use error::ExecutorError;
pub use server::Executor;
