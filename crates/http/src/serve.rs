//! The connection layer under the [`Edge`]: HTTP/1.1 over TCP, with the bounds
//! `axum::serve` does not have, so a hostile client cannot hold sockets:
//!
//! - a deadline for each request head, from its first byte (or from the
//!   connection's start), not reset by bytes trickling in (slowloris);
//! - an idle timeout for keep-alive connections between requests;
//! - a cap on open connections; past it a new one gets `503 overloaded` as
//!   problem+json and is closed.
//!
//! A connection's phase is kept in one atomic: waiting for a head, busy with
//! a request (its answer not yet fully sent: event streams stay busy), or
//! idle. Its watchdog closes it when the phase's deadline passes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::Service;

use crate::edge::Edge;
use crate::problem::{ApiError, Kind};
pub use crate::state::ConnectionSettings;

/// Refused connections being answered at once, at most.
const REFUSING_AT_ONCE: usize = 64;

/// Serves `edge` on `listener` until `shutdown` completes, then lets every
/// open connection finish its request and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    edge: Edge,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    // Answering a refused connection holds its socket a moment too; past
    // this many at once, one is closed without an answer.
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors, or a connection reset before it was
                    // taken: wait a little rather than spin.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let connection = connection(stream, peer, edge.clone(), settings, stopped.clone());
                tokio::spawn(async move {
                    connection.await;
                    drop(slot);
                });
            }
            Err(_) => {
                metrics::counter!("stampede_http_refused_total", "reason" => "connections")
                    .increment(1);
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every slot back: every connection closed.
    let _ = slots.acquire_many(settings.max_connections as u32).await;
}

/// Answers a connection past the cap, then closes it.
async fn refuse(mut stream: TcpStream) {
    // Read what the client sent first, so closing does not reset the answer.
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.readable()).await;
    let _ = stream.try_read(&mut scratch);
    let body = ApiError::new(Kind::OVERLOADED)
        .with_detail("this node has as many connections open as it serves; try again shortly")
        .retry_after(1)
        .body_bytes();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

/// Serves one connection until it closes, its phase's deadline passes, or
/// the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    edge: Edge,
    settings: ConnectionSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let phase = Arc::new(Phase::new());
    let io = TokioIo::new(Watched {
        stream,
        phase: phase.clone(),
    });
    let service = {
        let phase = phase.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            phase.set(BUSY);
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut edge = edge.clone();
            let phase = phase.clone();
            async move {
                let response = match edge.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<Response, Infallible>(response.map(|body| {
                    Body::new(Sent {
                        body,
                        phase: Some(phase),
                    })
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = phase.deadline(&settings);
        tokio::select! {
            _ = conn.as_mut() => return,
            changed = stopped.changed(), if !draining => {
                draining = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            // A new phase may have an earlier deadline: look again.
            () = phase.changed.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {
                if phase.expired(&settings) {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
        }
    }
}

const HEAD: u64 = 0;
const BUSY: u64 = 1;
const IDLE: u64 = 2;

/// A connection's phase and when it began, in one atomic: the phase in the
/// low two bits, milliseconds since `origin` above them.
struct Phase {
    origin: Instant,
    state: AtomicU64,
    /// Wakes the watchdog when a request ends or a head begins.
    changed: Notify,
}

impl Phase {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            state: AtomicU64::new(HEAD),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: u64) {
        let since = self.origin.elapsed().as_millis() as u64;
        self.state.store(since << 2 | phase, Ordering::Relaxed);
        if phase != BUSY {
            self.changed.notify_one();
        }
    }

    fn get(&self) -> (u64, Instant) {
        let state = self.state.load(Ordering::Relaxed);
        (state & 3, self.origin + Duration::from_millis(state >> 2))
    }

    /// The first byte of a head ends idleness and starts the head's clock.
    fn on_read(&self) {
        if self.get().0 == IDLE {
            self.set(HEAD);
        }
    }

    /// When the watchdog should look next.
    fn deadline(&self, settings: &ConnectionSettings) -> Instant {
        let (phase, since) = self.get();
        match phase {
            HEAD => since + settings.header_timeout,
            IDLE => since + settings.idle_timeout,
            // Busy: its request has its own deadline; look again later.
            _ => Instant::now() + settings.header_timeout,
        }
    }

    fn expired(&self, settings: &ConnectionSettings) -> bool {
        let (phase, _) = self.get();
        phase != BUSY && Instant::now() >= self.deadline(settings)
    }
}

/// The socket, telling the phase when bytes arrive.
struct Watched {
    stream: TcpStream,
    phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.phase.on_read();
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that makes its connection idle once it is sent (or
/// dropped unsent).
struct Sent {
    body: Body,
    phase: Option<Arc<Phase>>,
}

impl Sent {
    fn done(&mut self) {
        if let Some(phase) = self.phase.take() {
            phase.set(IDLE);
        }
    }
}

impl HttpBody for Sent {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Sent {
    fn drop(&mut self) {
        self.done();
    }
}
