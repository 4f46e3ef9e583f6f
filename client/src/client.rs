//! `GlauxClient`: Flight SQL to a Glaux scheduler.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::{DecodedPayload, FlightDataDecoder};
use arrow_flight::error::FlightError;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightEndpoint, FlightInfo, HandshakeRequest,
};
use futures::{StreamExt, TryStreamExt};
use glaux_proto::{QueryProgress, QueryStats};
use prost::Message;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// The server's own message, as it sent it.
    #[error("{0}")]
    Server(String),
    #[error("malformed response: {0}")]
    Protocol(String),
}

impl ClientError {
    /// What the server (or the transport) said.
    fn server(message: impl Into<String>) -> Self {
        ClientError::Server(message.into())
    }
}

impl From<FlightError> for ClientError {
    fn from(error: FlightError) -> Self {
        match error {
            FlightError::Tonic(status) => ClientError::server(status.message().to_string()),
            FlightError::Arrow(e) => ClientError::server(e.to_string()),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for ClientError {
    fn from(error: arrow::error::ArrowError) -> Self {
        // The Flight SQL client wraps server statuses in ArrowError; keep just the server's words.
        let text = error.to_string();
        let message = text
            .split_once("message: \"")
            .and_then(|(_, rest)| rest.split_once("\", details"))
            .map_or(text.as_str(), |(message, _)| message);
        ClientError::server(message.replace("\\\"", "\"").replace("\\n", "\n"))
    }
}

/// A finished statement: its batches and what the scheduler reported about it.
#[derive(Debug)]
pub struct QueryOutput {
    pub schema: Option<SchemaRef>,
    pub batches: Vec<RecordBatch>,
    pub stats: Option<QueryStats>,
}

impl QueryOutput {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

#[derive(Clone, Debug)]
pub struct GlauxClient {
    sql: FlightSqlServiceClient<Channel>,
    database: String,
    /// Headers every call carries (`set_header`), raw Flight calls included.
    headers: Vec<(tonic::metadata::AsciiMetadataKey, tonic::metadata::AsciiMetadataValue)>,
}

/// The header that carries the client's current database (see `USE`).
pub const DATABASE_HEADER: &str = "x-glaux-database";
/// The header naming the workgroup statements run in.
pub const WORKGROUP_HEADER: &str = "x-glaux-workgroup";

/// The header choosing what statements do when they lose an executor (`query` or `task`).
pub const RETRY_POLICY_HEADER: &str = "x-glaux-retry-policy";
/// The header naming the kind of client (the shell sends `shell`; the history shows it).
pub const CLIENT_HEADER: &str = "x-glaux-client";

/// How to reach a scheduler beyond its address.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// PEM certificates to trust for TLS, besides the system's roots (a private CA, or a
    /// self-signed scheduler certificate). Giving them implies TLS.
    pub tls_ca: Option<Vec<u8>>,
    /// A user name and password, exchanged in a Basic handshake for a bearer token that every
    /// later call carries.
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("tls_ca", &self.tls_ca.as_ref().map(|pem| format!("{} bytes", pem.len())))
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish()
    }
}

/// The scheduler's address as an endpoint URL, and whether it speaks TLS: `host:port`,
/// `grpc://` and `http://` are plain unless a CA is given; `grpc+tls://` and `https://` are TLS.
fn endpoint_url(url: &str, tls_ca_given: bool) -> (String, bool) {
    let (rest, tls) = if let Some(rest) = url.strip_prefix("grpc+tls://").or_else(|| url.strip_prefix("https://")) {
        (rest, true)
    } else {
        let rest = url
            .strip_prefix("grpc://")
            .or_else(|| url.strip_prefix("grpc+tcp://"))
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url);
        (rest, tls_ca_given)
    };
    let scheme = if tls { "https" } else { "http" };
    (format!("{scheme}://{}", rest.trim_end_matches('/')), tls)
}

impl GlauxClient {
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects and authenticates as `user` (a Basic handshake exchanged for a bearer token that
    /// every later call carries).
    pub async fn connect_as(url: &str, user: &str, password: &str) -> Result<Self, ClientError> {
        let options =
            ConnectOptions { credentials: Some((user.to_string(), password.to_string())), ..Default::default() };
        Self::connect_with(url, &options).await
    }

    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self, ClientError> {
        let failed = |message: String| ClientError::Connect { url: url.to_string(), message };
        let (endpoint_url, tls) = endpoint_url(url, options.tls_ca.is_some());
        let mut endpoint = Endpoint::from_shared(endpoint_url)
            .map_err(|e| failed(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if tls {
            glaux_proto::use_ring_for_tls();
            let mut config = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = &options.tls_ca {
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| failed(format!("TLS: {e}")))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            // tonic's transport error says only "transport error"; the cause says why.
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            failed(format!(
                "{e}{cause} (is a Glaux scheduler running there{}?)",
                if tls { ", speaking TLS" } else { "" }
            ))
        })?;
        let mut client =
            Self { sql: FlightSqlServiceClient::new(channel), database: "default".into(), headers: Vec::new() };
        if !tls {
            // A TLS server answers a plaintext client with bytes HTTP/2 cannot read, so the first
            // call fails in the client's own transport (a status it made, with the error it came
            // from, not one the server sent): say then what is likely wrong.
            let probe = client.sql.inner_mut().handshake(futures::stream::iter([HandshakeRequest::default()])).await;
            if let Err(status) = probe
                && std::error::Error::source(&status).is_some()
            {
                return Err(failed(format!(
                    "{} (does the server speak TLS? connect with grpc+tls://HOST:PORT or --tls-ca FILE)",
                    status.message()
                )));
            }
        }
        if let Some((user, password)) = &options.credentials {
            client.sql.handshake(user, password).await.map_err(|e| match e {
                // arrow-flight reports a refused handshake as "Can't handshake status: ..., message: ...".
                FlightError::Arrow(arrow::error::ArrowError::IpcError(message)) => {
                    let reason = message.split("message: ").nth(1).and_then(|m| m.split('"').nth(1));
                    ClientError::server(reason.map_or(message.clone(), str::to_string))
                }
                other => ClientError::from(other),
            })?;
        }
        Ok(client)
    }

    /// Submits a statement (`GetFlightInfo`): what [`GlauxClient::fetch`] reads and
    /// [`GlauxClient::cancel`] cancels.
    pub async fn submit(&mut self, sql: &str) -> Result<FlightInfo, ClientError> {
        let info = self.sql.execute(sql.to_string(), None).await?;
        self.follow_use(&info.app_metadata);
        Ok(info)
    }

    /// Starts reading one endpoint of a submitted statement (`DoGet`).
    pub async fn fetch(&mut self, endpoint: &FlightEndpoint) -> Result<FlightDataDecoder, ClientError> {
        let ticket = endpoint.ticket.clone().ok_or_else(|| ClientError::Protocol("endpoint without ticket".into()))?;
        let request = self.authorized(ticket);
        let response = self
            .sql
            .inner_mut()
            .do_get(request)
            .await
            .map_err(|status| ClientError::server(status.message().to_string()))?;
        let messages = response.into_inner().map_err(|s| FlightError::Tonic(Box::new(s)));
        Ok(FlightDataDecoder::new(messages))
    }

    /// Cancels a running statement (`CancelFlightInfo`); true if the scheduler cancelled it.
    pub async fn cancel(&mut self, info: FlightInfo) -> Result<bool, ClientError> {
        let action = Action::new("CancelFlightInfo", CancelFlightInfoRequest::new(info).encode_to_vec());
        let server = |status: tonic::Status| ClientError::server(status.message().to_string());
        let request = self.authorized(action);
        let mut results = self.sql.inner_mut().do_action(request).await.map_err(server)?.into_inner();
        let result = results
            .message()
            .await
            .map_err(server)?
            .ok_or_else(|| ClientError::Protocol("no answer to CancelFlightInfo".into()))?;
        let result = CancelFlightInfoResult::decode(result.body)
            .map_err(|e| ClientError::Protocol(format!("malformed CancelFlightInfoResult: {e}")))?;
        Ok(result.status() == CancelStatus::Cancelled)
    }

    /// How far a submitted statement is, while a `fetch` streams it (`None` before it runs and
    /// after it ends).
    pub async fn progress(&mut self, info: &FlightInfo) -> Result<Option<QueryProgress>, ClientError> {
        let Some(ticket) = info.endpoint.first().and_then(|e| e.ticket.clone()) else { return Ok(None) };
        let request = self.authorized(Action::new("GlauxQueryProgress", ticket.ticket));
        let server = |status: tonic::Status| ClientError::server(status.message().to_string());
        let mut results = self.sql.inner_mut().do_action(request).await.map_err(server)?.into_inner();
        let Some(result) = results.message().await.map_err(server)? else { return Ok(None) };
        if result.body.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&result.body)
            .map(Some)
            .map_err(|e| ClientError::Protocol(format!("malformed progress: {e}")))
    }

    /// A request for a raw Flight call, with the token from the handshake (Flight SQL calls get
    /// it from the Flight SQL client).
    fn authorized<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self.sql.token().and_then(|token| format!("Bearer {token}").parse().ok()) {
            request.metadata_mut().insert("authorization", value);
        }
        for (key, value) in &self.headers {
            request.metadata_mut().insert(key.clone(), value.clone());
        }
        request
    }

    /// Sends `name: value` with every later call (e.g. [`WORKGROUP_HEADER`]); a value that is
    /// not a valid header value is not sent.
    pub fn set_header(&mut self, name: &str, value: &str) {
        if let (Ok(key), Ok(parsed)) = (name.parse(), value.parse()) {
            self.headers.push((key, parsed));
            self.sql.set_header(name, value);
        }
    }

    /// Runs one statement to completion.
    pub async fn query(&mut self, sql: &str) -> Result<QueryOutput, ClientError> {
        let info = self.submit(sql).await?;
        self.collect(&info).await
    }

    /// Reads every endpoint of a submitted statement to its end.
    pub async fn collect(&mut self, info: &FlightInfo) -> Result<QueryOutput, ClientError> {
        let schema = info.clone().try_decode_schema().ok().map(std::sync::Arc::new);
        let mut output = QueryOutput { schema, batches: Vec::new(), stats: None };
        for endpoint in &info.endpoint {
            let mut decoder = self.fetch(endpoint).await?;
            while let Some(message) = decoder.next().await {
                let message = message?;
                if let Some(stats) = QueryStats::from_json(&message.app_metadata()) {
                    output.stats = Some(stats);
                }
                match message.payload {
                    DecodedPayload::RecordBatch(batch) if batch.num_rows() > 0 => output.batches.push(batch),
                    DecodedPayload::Schema(schema) if output.schema.is_none() => output.schema = Some(schema),
                    _ => {}
                }
            }
        }
        Ok(output)
    }

    /// After `USE db` the scheduler names the database in the `FlightInfo`'s app_metadata; later
    /// statements carry it in the `x-glaux-database` header. The session lives in the client,
    /// so it survives reconnecting to another scheduler.
    fn follow_use(&mut self, app_metadata: &[u8]) {
        #[derive(serde::Deserialize)]
        struct Use {
            database: String,
        }
        if let Ok(Use { database }) = serde_json::from_slice::<Use>(app_metadata) {
            self.sql.set_header(DATABASE_HEADER, database.clone());
            self.database = database;
        }
    }

    /// The database unqualified table names resolve in (`default` until `USE`).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs a statement through `CommandStatementUpdate` (DDL).
    pub async fn execute_update(&mut self, sql: &str) -> Result<i64, ClientError> {
        Ok(self.sql.execute_update(sql.to_string(), None).await?)
    }

    /// `(schema, table, columns)` of every table, through `GetTables` with schemas.
    pub async fn tables_with_columns(&mut self) -> Result<Vec<(String, String, Vec<String>)>, ClientError> {
        let mut tables = Vec::new();
        for batch in self.get_tables(true).await? {
            let malformed = || ClientError::Protocol("GetTables returned unexpected columns".into());
            let schemas =
                arrow::array::AsArray::as_string_opt::<i32>(batch.column(1).as_ref()).ok_or_else(malformed)?;
            let names = arrow::array::AsArray::as_string_opt::<i32>(batch.column(2).as_ref()).ok_or_else(malformed)?;
            let ipc = batch.column_by_name("table_schema").ok_or_else(malformed)?;
            let ipc = arrow::array::AsArray::as_binary_opt::<i32>(ipc.as_ref()).ok_or_else(malformed)?;
            for row in 0..batch.num_rows() {
                let columns = arrow::ipc::convert::try_schema_from_ipc_buffer(ipc.value(row))
                    .map(|schema| schema.fields().iter().map(|f| f.name().clone()).collect())
                    .unwrap_or_default();
                tables.push((schemas.value(row).to_string(), names.value(row).to_string(), columns));
            }
        }
        Ok(tables)
    }

    /// The batches `GetTables` answers, with the tables' schemas or without.
    async fn get_tables(&mut self, include_schema: bool) -> Result<Vec<RecordBatch>, ClientError> {
        let info = self.sql.get_tables(CommandGetTables { include_schema, ..Default::default() }).await?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else { continue };
            batches.extend(self.sql.do_get(ticket).await?.try_collect::<Vec<_>>().await?);
        }
        Ok(batches)
    }

    /// `(catalog, schema, table, type)` of every table, through `GetTables`.
    pub async fn tables(&mut self) -> Result<Vec<[String; 4]>, ClientError> {
        let mut tables = Vec::new();
        for batch in self.get_tables(false).await? {
            let column = |i: usize| {
                arrow::array::AsArray::as_string_opt::<i32>(batch.column(i).as_ref())
                    .ok_or_else(|| ClientError::Protocol("GetTables column is not a string".into()))
                    .cloned()
            };
            let (c, s, t, k) = (column(0)?, column(1)?, column(2)?, column(3)?);
            for row in 0..batch.num_rows() {
                tables.push([c.value(row), s.value(row), t.value(row), k.value(row)].map(String::from));
            }
        }
        Ok(tables)
    }
}
