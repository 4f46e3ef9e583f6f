//! `glaux probe [URL]`: a container's health check without curl in the image. GETs a plain-HTTP
//! URL (the scheduler's or an executor's `/health` or `/ready`) and succeeds on a 2xx answer.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The whole exchange may take this long.
const TIMEOUT: Duration = Duration::from_secs(5);
/// An answer longer than this is not read further (a probe's is a line).
const MAX_ANSWER: u64 = 64 << 10;

/// The URL probed when none is given.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/health";

/// Whether `url` answered 2xx; an error says why it could not be asked.
pub async fn probe(url: &str) -> anyhow::Result<bool> {
    let rest = url.strip_prefix("http://").context("glaux probe speaks plain HTTP: the URL must start with http://")?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        bail!("not a host:port in {url}");
    }
    let exchange = async {
        let mut stream = TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(TIMEOUT, exchange).await.with_context(|| format!("{url} did not answer"))??;
    let status_line = answer.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let status = status_line.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else { bail!("{url} did not answer HTTP") };
    println!("{} {}", status, String::from_utf8_lossy(&answer).split("\r\n\r\n").nth(1).unwrap_or("").trim());
    Ok((200..300).contains(&status))
}
