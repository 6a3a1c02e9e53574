//! The HTTP driver: one keep-alive HTTP/1.1 connection per task, on hyper's
//! connection API (`hyper::client::conn::http1`) over a `TcpStream`.
//!
//! No pool, no redirects, no TLS: the generator shares the machine's cores
//! with the server it measures, so every request should cost it as little as
//! possible. Targets are plain `http://` (a TLS terminator in front of
//! Stampede is measured by pointing at it with another tool).
//!
//! [`Conn`] is the bare connection the crowd drives; [`Api`] wraps one with
//! reconnects and JSON for the admin calls and the audit.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

/// A parsed `--target`: where to connect and what to put in `Host`.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given, without a trailing slash; for reports.
    pub url: String,
    pub addr: SocketAddr,
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://host[:port][/]` and resolves the host once.
    pub async fn resolve(url: &str) -> anyhow::Result<Self> {
        let url = url.trim_end_matches('/');
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--target `{url}` is not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => bail!(
                "--target `{url}`: plain http:// only; the generator speaks no TLS \
                 (point it at Stampede itself)"
            ),
            _ => bail!("--target `{url}`: expected http://host:port"),
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            bail!("--target `{url}`: give the server's base URL, without a path");
        }
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("--target `{url}` has no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((authority.host(), port))
            .await
            .with_context(|| format!("resolving {}", authority.host()))?
            .next()
            .ok_or_else(|| anyhow!("{} resolves to no address", authority.host()))?;
        let host = HeaderValue::from_str(authority.as_str())
            .with_context(|| format!("--target `{url}`: host is not a header value"))?;
        Ok(Self {
            url: url.to_owned(),
            addr,
            host,
        })
    }
}

/// One answer, body read to the end (so the connection can be reused).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Connection = http1::Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One keep-alive connection. Dropping it closes the socket.
///
/// hyper's `Connection` future (the socket I/O) is polled by whoever sends,
/// in the same task, instead of in a task of its own: a request then costs
/// no cross-task channel hop and no extra wake-ups, which on two shared
/// cores is CPU taken from the server being measured.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Boxed once per connection so it can be polled by reference.
    connection: Pin<Box<Connection>>,
    /// The connection future has finished: the socket is gone.
    closed: bool,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        // Requests are small and sent whole: waiting for Nagle only adds latency.
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        Ok(Self {
            sender,
            connection: Box::pin(connection),
            closed: false,
        })
    }

    /// Sends `request` and reads the whole answer, driving the socket meanwhile.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Answer, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        let sender = &mut self.sender;
        let exchange = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            biased;
            answer = &mut exchange => answer.map_err(SendError::Http),
            ended = self.connection.as_mut() => {
                // Never poll a finished connection again.
                self.closed = true;
                match ended {
                    Err(err) => Err(SendError::Http(err)),
                    Ok(()) => Err(SendError::Closed),
                }
            }
        }
    }
}

/// Why a request on a [`Conn`] got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error("connection closed by the server")]
    Closed,
}

/// A connection for JSON calls that reconnects when the server closed it.
/// Not for the measured crowd (see [`crate::crowd`]).
pub struct Api {
    target: Target,
    conn: Option<Conn>,
    timeout: Duration,
}

impl Api {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            conn: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// One call. GETs are retried twice on a broken connection (they change
    /// nothing); other methods are sent once.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&HeaderValue>,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<Answer> {
        let body = match body {
            Some(value) => Bytes::from(serde_json::to_vec(value).context("encoding JSON")?),
            None => Bytes::new(),
        };
        let attempts = if method == Method::GET { 3 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let conn = match self.conn.as_mut() {
                Some(conn) => conn,
                None => self.conn.insert(Conn::open(self.target.addr).await?),
            };
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path
                .parse()
                .with_context(|| format!("`{path}` is not a request path"))?;
            let headers = request.headers_mut();
            headers.insert(HOST, self.target.host.clone());
            if let Some(token) = token {
                headers.insert(AUTHORIZATION, token.clone());
            }
            if !body.is_empty() {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            match tokio::time::timeout(self.timeout, conn.send(request)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(err)) => last = Some(anyhow::Error::new(err)),
                Err(_) => last = Some(anyhow!("no answer within {:?}", self.timeout)),
            }
            self.conn = None;
        }
        Err(last
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!("{method} {path}")))
    }

    /// A call whose answer must be `expected`; its JSON body, parsed.
    pub async fn json<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&HeaderValue>,
        body: Option<&serde_json::Value>,
        expected: StatusCode,
    ) -> anyhow::Result<T> {
        let answer = self.call(method.clone(), path, token, body).await?;
        if answer.status != expected {
            bail!(
                "{method} {path}: expected {expected}, got {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        serde_json::from_slice(&answer.body)
            .with_context(|| format!("{method} {path}: parsing the answer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_plain_http_base_urls() {
        let target = Target::resolve("http://127.0.0.1:8080/").await.unwrap();
        assert_eq!(target.url, "http://127.0.0.1:8080");
        assert_eq!(target.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(target.host, "127.0.0.1:8080");
        let https = Target::resolve("https://127.0.0.1:8443").await.unwrap_err();
        assert!(https.to_string().contains("plain http://"), "{https}");
        assert!(Target::resolve("http://127.0.0.1:8080/api").await.is_err());
        assert!(Target::resolve("127.0.0.1:8080").await.is_err());
    }
}
