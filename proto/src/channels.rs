//! Connections from one cluster member to another, shared per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{ClusterAuth, ClusterSecret};
use crate::cluster_tls::ClusterTls;
use crate::generated::executor_control_client::ExecutorControlClient;
use crate::generated::scheduler_cluster_client::SchedulerClusterClient;
use crate::ids::ExecutorAddr;

/// The largest gRPC message a cluster member accepts. Senders split batches far below it
/// (arrow-flight's encoder targets 2 MiB), so this only bounds what a broken peer can make us buffer.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows of the streams a member receives (Flight data between stages):
/// how much may be in flight unread. HTTP/2's default of 64 KiB makes a stream wait for a window
/// update every 64 KiB, which caps a shuffle far below what the wire and the CPUs can do; these
/// still bound what an unread stream holds.
pub const STREAM_WINDOW_BYTES: u32 = 4 * 1024 * 1024;
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
/// The largest HTTP/2 frame a member accepts: a 2 MiB batch crosses in a few frames, not 128.
pub const FRAME_BYTES: u32 = 1024 * 1024;

pub type FlightClient = FlightServiceClient<InterceptedService<Channel, ClusterAuth>>;

/// Lazily connected channels to other cluster members, keyed by `host:port`, all carrying the
/// cluster credential. Registered as a DataFusion session-config extension so that exchange nodes
/// ([`crate::StageReaderExec`]) find it at execution time.
#[derive(Debug)]
pub struct ClusterChannels {
    secret: ClusterSecret,
    /// With cluster TLS, every channel is TLS with this member's certificate.
    tls: Option<ClusterTls>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Bytes of Arrow data this member read from other members' task outputs (for its metrics).
    received: std::sync::atomic::AtomicU64,
    /// The runtime connections live on (the one this was made on), whichever runtime first uses
    /// them: a plan on the compute runtime reads through them, but their keep-alive pings must
    /// not wait for it (`compute.rs`).
    network: Option<tokio::runtime::Handle>,
}

impl ClusterChannels {
    pub fn new(secret: ClusterSecret) -> Self {
        Self {
            secret,
            tls: None,
            channels: Mutex::new(HashMap::new()),
            received: Default::default(),
            network: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Bytes of Arrow data (IPC messages' headers and bodies) read from other members so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Channels over mutual TLS (`None`: in the clear).
    pub fn with_tls(self, tls: Option<ClusterTls>) -> Self {
        Self { tls, ..self }
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, tonic::transport::Error> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = channels.get(endpoint) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut builder = Endpoint::from_shared(format!("{scheme}://{endpoint}"))?;
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.client())?;
        }
        if let Some(network) = &self.network {
            builder = builder.executor(crate::compute::SpawnOn(network.clone()));
        }
        let channel = builder
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(FRAME_BYTES)
            // A member that vanishes without closing its connections is noticed within 5 s.
            .http2_keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(endpoint.to_string(), channel.clone());
        Ok(channel)
    }

    /// Forgets the channel to an executor that went away, so a new one at that address starts fresh.
    /// Members talk over mutual TLS, so only holders of a member's certificate reach an executor.
    pub fn mutual_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn forget(&self, executor: &ExecutorAddr) {
        self.channels.lock().unwrap_or_else(|e| e.into_inner()).remove(executor.as_str());
    }

    pub fn flight(&self, executor: &ExecutorAddr) -> Result<FlightClient, tonic::transport::Error> {
        let auth = ClusterAuth::attach(self.secret.clone());
        Ok(FlightServiceClient::with_interceptor(self.channel(executor.as_str())?, auth)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn executor_control(
        &self,
        executor: &ExecutorAddr,
    ) -> Result<ExecutorControlClient<InterceptedService<Channel, ClusterAuth>>, tonic::transport::Error> {
        let auth = ClusterAuth::attach(self.secret.clone());
        Ok(ExecutorControlClient::with_interceptor(self.channel(executor.as_str())?, auth)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    pub fn scheduler(
        &self,
        endpoint: &str,
    ) -> Result<SchedulerClusterClient<InterceptedService<Channel, ClusterAuth>>, tonic::transport::Error> {
        let auth = ClusterAuth::attach(self.secret.clone());
        Ok(SchedulerClusterClient::with_interceptor(self.channel(endpoint)?, auth))
    }
}
