//! [`ClientSession`]: what a client's statement is resolved against. The scheduler keeps no
//! session per client: each door rebuilds it from what the client sends (Flight SQL: a header
//! and the statement handle; PostgreSQL: the connection's startup database and `USE`).

use datafusion::common::ScalarValue;
use glaux_catalog::DEFAULT_DATABASE;

use crate::audit::{Caller, Door};

/// The workgroup that always exists, where statements run unless told otherwise.
pub const PRIMARY_WORKGROUP: &str = "primary";

/// Who is asking (the user the door authenticated), the database `USE` chose, and the values a
/// prepared statement's placeholders (`$1`, `?`) are bound to.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSession {
    /// `None` when the scheduler serves without users (loopback only): the one implicit admin.
    pub user: Option<String>,
    /// The door and client address, for the audit log.
    pub caller: Caller,
    pub database: String,
    pub parameters: Vec<ScalarValue>,
    /// The workgroup its statements run in; empty: its user's default (`QueryEngine::in_workgroup`).
    pub workgroup: String,
    /// The retry policy the client asked for (`query` or `task`, checked when a statement runs);
    /// empty: its workgroup's, else the cluster's.
    pub retry_policy: String,
}

impl ClientSession {
    /// A session in `database`; none (or an empty name) is the default database.
    pub fn new(database: Option<&str>, parameters: Vec<ScalarValue>) -> Self {
        let database = database.filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DATABASE);
        Self {
            user: None,
            caller: Caller::default(),
            database: database.to_string(),
            parameters,
            workgroup: String::new(),
            retry_policy: String::new(),
        }
    }

    /// The same session, for the user a door authenticated.
    pub fn for_user(self, user: Option<String>) -> Self {
        Self { user, ..self }
    }

    /// The same session, sent through `door` from `address`.
    pub fn sent_by(self, door: Door, address: Option<std::net::IpAddr>) -> Self {
        Self { caller: Caller { door, address }, ..self }
    }
}

impl Default for ClientSession {
    fn default() -> Self {
        Self::new(None, Vec::new())
    }
}
