//! Identifiers of queries, stages, tasks and executors.

use std::fmt;

use rand::Rng;

/// A query, unique within one scheduler's lifetime and across restarts with high probability.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(String);

impl QueryId {
    /// A fresh random id (16 hex digits).
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::rng().random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for QueryId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An executor, chosen by the executor at start-up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorId(String);

impl ExecutorId {
    pub fn random() -> Self {
        Self(format!("exec-{:08x}", rand::rng().random::<u32>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for ExecutorId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for ExecutorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stage within one query, numbered from 1 in the order the planner cuts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId(pub u32);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A task within one stage, numbered from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u32);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
