//! How much any one client may ask of the scheduler: connections per door, requests per second
//! per client address, and statements running at once (per user and in all). Every limit answers
//! with a clear error (gRPC `ResourceExhausted`, SQLSTATE 53300/53400) and harms nothing else.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::Connected;

use crate::error::{ErrorKind, SchedulerError};
use crate::stopping::Stopping;

/// The limits of a scheduler's doors (`SchedulerConfig::limits`).
#[derive(Clone, Debug, PartialEq)]
pub struct DoorLimits {
    /// Open connections per door (Flight SQL, PostgreSQL); one more is closed at once.
    pub max_connections: usize,
    /// Requests (Flight calls, PostgreSQL statements) per second from one client address, with
    /// bursts of twice that.
    pub requests_per_second: u32,
    /// Statements running at once for one user (without users: for everyone together).
    pub statements_per_user: usize,
    /// Statements running at once in all.
    pub statements: usize,
}

impl Default for DoorLimits {
    fn default() -> Self {
        Self { max_connections: 1024, requests_per_second: 5000, statements_per_user: 64, statements: 256 }
    }
}

/// Client addresses tracked for rates at most; idle ones are forgotten first.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Per-address token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self { per_second, burst: per_second * 2.0, buckets: Mutex::default() }
    }

    /// Takes one request's token for `address`, or says how the address is over its rate.
    pub fn admit(&self, address: IpAddr) -> Result<(), SchedulerError> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&address) {
            // Full buckets are the same as no bucket: forget those first.
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst);
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(address).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return Err(SchedulerError::refused(
                ErrorKind::Limit,
                format!("too many requests from {address}: at most {} per second", self.per_second),
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }
}

/// Statements running now, per user and in all.
#[derive(Debug)]
pub struct StatementGate {
    per_user: usize,
    all: Arc<Semaphore>,
    total: usize,
    running: Arc<Mutex<HashMap<String, usize>>>,
    /// Once closing, no statement enters.
    stopping: Stopping,
}

/// A running statement's place; dropping it (when the statement's result is dropped) frees it.
#[derive(Debug)]
pub struct StatementPermit {
    _all: OwnedSemaphorePermit,
    user: String,
    running: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for StatementPermit {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.user);
            }
        }
    }
}

impl StatementGate {
    pub fn new(limits: &DoorLimits) -> Self {
        Self {
            per_user: limits.statements_per_user.max(1),
            all: Arc::new(Semaphore::new(limits.statements.max(1))),
            total: limits.statements.max(1),
            running: Arc::default(),
            stopping: Stopping::default(),
        }
    }

    /// The scheduler's stop, which this gate obeys.
    pub fn stopping(&self) -> &Stopping {
        &self.stopping
    }

    /// Statements holding a place now (running, or queued in their workgroup).
    pub fn running(&self) -> usize {
        self.total.saturating_sub(self.all.available_permits())
    }

    /// A place for one more statement of `user` (`None`: the implicit user of a scheduler without
    /// users), or the limit it would pass.
    pub fn enter(&self, user: Option<&str>) -> Result<StatementPermit, SchedulerError> {
        if self.stopping.is_closing() {
            return Err(Stopping::refusal());
        }
        let user = user.unwrap_or_default().to_string();
        let all = Arc::clone(&self.all).try_acquire_owned().map_err(|_| {
            SchedulerError::refused(
                ErrorKind::Limit,
                format!("the scheduler runs {} statements at once; try again when one ends", self.total),
            )
        })?;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let count = running.entry(user.clone()).or_insert(0);
        if *count >= self.per_user {
            return Err(SchedulerError::refused(
                ErrorKind::Limit,
                format!("{} statements of this user are running (the most at once); let one end first", self.per_user),
            ));
        }
        *count += 1;
        Ok(StatementPermit { _all: all, user, running: Arc::clone(&self.running) })
    }
}

/// Open connections of one door.
#[derive(Clone, Debug)]
pub struct ConnectionGate {
    open: Arc<Semaphore>,
    max: usize,
}

impl ConnectionGate {
    pub fn new(max: usize) -> Self {
        Self { open: Arc::new(Semaphore::new(max.max(1))), max: max.max(1) }
    }

    /// A place for one more connection, held as long as the connection; `None` when full.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections holding a place now.
    pub fn open(&self) -> usize {
        self.max.saturating_sub(self.open.available_permits())
    }
}

/// A connection holding its place in a [`ConnectionGate`] until it closes.
pub struct Gated<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T> Gated<T> {
    pub fn new(io: T, permit: OwnedSemaphorePermit) -> Self {
        Self { io, _permit: permit }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Gated<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Gated<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Gated<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepted connections that find a place in `gate`; the others are closed at once.
pub fn gated<S, T, E>(incoming: S, gate: ConnectionGate, door: &'static str) -> impl Stream<Item = Result<Gated<T>, E>>
where
    S: Stream<Item = Result<T, E>>,
{
    incoming.filter_map(move |accepted| {
        let admitted = match accepted {
            Ok(io) => match gate.admit() {
                Some(permit) => Some(Ok(Gated::new(io, permit))),
                None => {
                    tracing::warn!(
                        door,
                        max = gate.max(),
                        "connection refused: the door has its most connections open"
                    );
                    None
                }
            },
            Err(e) => Some(Err(e)),
        };
        std::future::ready(admitted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_limited_per_user_and_in_all() {
        let gate = StatementGate::new(&DoorLimits { statements_per_user: 2, statements: 3, ..DoorLimits::default() });
        let a1 = gate.enter(Some("ana")).expect("first");
        let _a2 = gate.enter(Some("ana")).expect("second");
        let error = gate.enter(Some("ana")).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Limit, "{error}");
        let _b1 = gate.enter(Some("bob")).expect("bob's first");
        assert!(gate.enter(Some("carl")).is_err(), "three in all");
        drop(a1);
        let _a3 = gate.enter(Some("ana")).expect("ana's place came back");
    }

    #[test]
    fn an_address_over_its_rate_waits_while_others_go_on() {
        let limiter = RateLimiter::new(5);
        let (busy, other): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..10 {
            limiter.admit(busy).expect("within the burst");
        }
        assert_eq!(limiter.admit(busy).unwrap_err().kind(), ErrorKind::Limit);
        limiter.admit(other).expect("another address");
        std::thread::sleep(std::time::Duration::from_millis(250));
        limiter.admit(busy).expect("tokens came back");
    }
}
