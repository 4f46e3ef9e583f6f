//! Connections from one cluster member to another, shared per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use hyper_util::client::legacy::connect::HttpConnector;
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
/// How long connecting to a member may take, TLS handshake included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on every connection between members, both ways: a member that vanishes without
/// closing its connections (a cut link, a killed host) is noticed within 5 s by the side that
/// calls it, and the side it called drops the connection and what it was sending.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(3);

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
        // The connect timeout bounds the TCP connect and the TLS handshake together: given a
        // connector of our own, tonic puts its TLS under the timeout. (With its built-in connector
        // the timeout covers the TCP connect only, and a link cut during a handshake would hang
        // the reader on TCP retransmissions for many minutes, before any keep-alive could run.)
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let channel = builder
            .connect_timeout(CONNECT_TIMEOUT)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(FRAME_BYTES)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .connect_with_connector_lazy(tcp);
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::task_error::TaskError;

    /// A member's certificate for 127.0.0.1, from a CA of its own.
    fn cluster_tls() -> ClusterTls {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        ClusterTls::from_pem(ca.pem().into(), cert.pem().into(), key.serialize_pem().into()).unwrap()
    }

    /// A peer whose link went down just after it accepted our connection: the TCP connect
    /// succeeds, and nothing ever answers. A read from it ends within the connect timeout with
    /// the executor lost, over TLS (the handshake never completes) and in the clear.
    #[tokio::test]
    async fn a_member_that_accepts_and_never_answers_is_lost_within_the_connect_timeout() {
        for tls in [Some(cluster_tls()), None] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let executor = ExecutorAddr::parse(&listener.local_addr().unwrap().to_string()).unwrap();
            let with_tls = tls.is_some();
            let channels = ClusterChannels::new(ClusterSecret::generate()).with_tls(tls);
            // Holds every accepted connection open, silent.
            let silent = async {
                let mut held = Vec::new();
                loop {
                    held.push(listener.accept().await.unwrap());
                }
            };
            let started = Instant::now();
            let read = async {
                let mut client = channels.flight(&executor).unwrap();
                client.do_get(arrow_flight::Ticket::new("a task")).await.map(|_| ())
            };
            let answer = tokio::select! {
                () = silent => unreachable!("the listener never stops"),
                answer = tokio::time::timeout(Duration::from_secs(30), read) => answer,
            };
            let status = answer.unwrap_or_else(|_| panic!("TLS {with_tls}: still waiting after 30 s")).unwrap_err();
            let error = TaskError::from_status(&executor, &status);
            assert_eq!(error.lost_executor(), Some(&executor), "TLS {with_tls}: {status:?}");
            assert!(started.elapsed() < Duration::from_secs(15), "TLS {with_tls}: took {:?}", started.elapsed());
        }
    }
}
