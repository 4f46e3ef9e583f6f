//! Identifiers of queries, stages, tasks and executors.

use std::fmt;

use rand::Rng;

/// A query, unique within one scheduler's lifetime and across restarts with high probability.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(String);

impl QueryId {
    /// A fresh random id, shaped as Athena's query execution ids are (a version 4 UUID): one id
    /// names a statement in every door, its history record and Athena's API.
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::rng().random();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its first 16 hex digits: what names the files a statement writes (`<short>_<name>`), as
    /// unique as the old ids and short, since some statements carry file names in every row
    /// (a `MERGE` sorts its target's rows with the file each came from).
    pub fn short(&self) -> String {
        self.0.chars().filter(|c| *c != '-').take(16).collect()
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

/// Where an executor serves, `host:port`: how every member names an executor in tasks, task
/// outputs, channels and errors. An executor that restarts on the same address is the same
/// place to read from, whatever its [`ExecutorId`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExecutorAddr(String);

impl ExecutorAddr {
    /// `host:port` (a name, an IPv4 address, or a bracketed IPv6 address, and a port number).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("executor address {text:?} has no port"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("executor address {text:?} is not host:port"));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part, without IPv6 brackets.
    pub fn host(&self) -> &str {
        self.0.rsplit_once(':').map_or(self.0.as_str(), |(host, _)| host).trim_matches(['[', ']'])
    }
}

impl From<std::net::SocketAddr> for ExecutorAddr {
    fn from(addr: std::net::SocketAddr) -> Self {
        Self(addr.to_string())
    }
}

impl fmt::Display for ExecutorAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_addresses_are_host_and_port() {
        assert_eq!(ExecutorAddr::parse("10.0.0.7:5000").unwrap().host(), "10.0.0.7");
        assert_eq!(ExecutorAddr::parse("[::1]:5000").unwrap().host(), "::1");
        assert_eq!(ExecutorAddr::parse("executor-3.cluster.local:5000").unwrap().host(), "executor-3.cluster.local");
        assert!(ExecutorAddr::parse("no-port").is_err());
        assert!(ExecutorAddr::parse(":5000").is_err());
        assert!(ExecutorAddr::parse("host:http").is_err());
    }
}
