//! The Glaux client library and the interactive shell.
//!
//! - [`GlauxClient`]: connects to a scheduler over Arrow Flight SQL and runs statements, returning
//!   Arrow batches plus the [`QueryStats`] the scheduler sends after the last batch.
//! - [`Shell`]: the `glaux shell` read-eval-print loop and its non-interactive modes.
//! - [`split_statements`]: splits SQL text into statements at `;`, respecting quotes and comments.

mod client;
mod shell;
mod statements;

pub use client::{
    CLIENT_HEADER, ClientError, ConnectOptions, DATABASE_HEADER, GlauxClient, QueryOutput, RETRY_POLICY_HEADER,
    WORKGROUP_HEADER,
};
pub use glaux_proto::{QueryProgress, QueryStats};
pub use shell::{OutputFormat, Shell, ShellOptions, write_result};
pub use statements::split_statements;
