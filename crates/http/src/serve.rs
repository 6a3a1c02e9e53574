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
//!
//! # Heads too large
//!
//! A head with more than [`MAX_HEADERS`] fields, or larger than
//! [`MAX_HEAD_BYTES`] (request line included), is refused by hyper's parser
//! itself, which then writes a bare `431` and closes. We keep hyper's limits
//! and change only its answer: the socket wrapper recognises hyper's own
//! `431` head — written before any request reached our service, so never one
//! of ours — and sends our `431 request-header-fields-too-large` problem in its
//! place, then reads what the client still sends before closing, so the
//! answer is not lost to a reset. Raising hyper's field limit instead would
//! put every request's field table on the heap (hyper documents about 5%
//! less throughput); this costs the hot path one prefix comparison per
//! write. A request line hyper cannot parse keeps hyper's bare `400`.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tower::Service;

use crate::edge::Edge;
use crate::problem::{ApiError, CONTENT_TYPE, Kind};
pub use crate::state::ConnectionSettings;

/// Refused connections being answered at once, at most.
const REFUSING_AT_ONCE: usize = 64;

/// Header fields in a request head at most: hyper's own limit, whose table
/// lives on the stack up to this size.
pub const MAX_HEADERS: usize = 100;

/// Bytes of a request head at most, request line included.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How hyper's automatic answer to a head it refused as too large begins.
const HYPER_431: &[u8] = b"HTTP/1.1 431 ";

/// Bytes read and dropped after our `431`, at most, before closing.
const DRAIN_AFTER_431: usize = 1024 * 1024;

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
        replaced: None,
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
    // hyper's default field limit (see the module documentation), and a
    // head limit below its default buffer.
    let conn = hyper::server::conn::http1::Builder::new()
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEAD_BYTES)
        .serve_connection(io, service);
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

/// The socket, telling the phase when bytes arrive, and answering heads
/// too large with our problem instead of hyper's bare `431`.
struct Watched {
    stream: TcpStream,
    phase: Arc<Phase>,
    /// Set once hyper wrote its `431`: how much of ours is sent, then how
    /// much of the client's rest was read and dropped.
    replaced: Option<Replaced>,
}

#[derive(Clone, Copy)]
struct Replaced {
    sent: usize,
    drained: usize,
}

/// Our answer to a head too large: `431` problem+json, closing.
fn headers_too_large() -> &'static [u8] {
    static RESPONSE: OnceLock<Vec<u8>> = OnceLock::new();
    RESPONSE.get_or_init(|| {
        let body = ApiError::new(Kind::HEADERS_TOO_LARGE)
            .with_detail(format!(
                "the request head has more than {MAX_HEADERS} header fields or {MAX_HEAD_BYTES} bytes"
            ))
            .body_bytes();
        let mut response = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: {CONTENT_TYPE}\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        response.extend_from_slice(&body);
        response
    })
}

impl Watched {
    /// Whether `head` is hyper's own answer to a head too large: it starts
    /// so, and no request reached our service (which never answers 431).
    fn is_hyper_431(&self, head: &[u8]) -> bool {
        head.starts_with(HYPER_431) && self.phase.get().0 != BUSY
    }

    /// Sends our `431` in place of hyper's `written` bytes, which are
    /// reported as sent; whatever hyper writes after them is dropped.
    fn poll_replace(&mut self, cx: &mut Context<'_>, written: usize) -> Poll<io::Result<usize>> {
        let ours = headers_too_large();
        let replaced = self.replaced.get_or_insert_with(|| {
            metrics::counter!("stampede_http_refused_total", "reason" => "headers_too_large")
                .increment(1);
            Replaced {
                sent: 0,
                drained: 0,
            }
        });
        while replaced.sent < ours.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &ours[replaced.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => replaced.sent += n,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(written))
    }

    /// After our `431`: reads and drops what the client still sends (up to
    /// [`DRAIN_AFTER_431`]; the head timeout bounds the time), so that
    /// closing with unread bytes does not reset the connection before the
    /// client has read the answer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut scratch = [0u8; 4096];
        loop {
            let Some(replaced) = self.replaced.as_mut() else {
                return Poll::Ready(());
            };
            if replaced.drained >= DRAIN_AFTER_431 {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    replaced.drained += buf.filled().len();
                }
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
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

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replaced.is_some() || self.is_hyper_431(buf) {
            return self.poll_replace(cx, buf.len());
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|buf| !buf.is_empty());
        if self.replaced.is_some() || first.is_some_and(|buf| self.is_hyper_431(buf)) {
            let written = bufs.iter().map(|buf| buf.len()).sum();
            return self.poll_replace(cx, written);
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let shut = std::task::ready!(Pin::new(&mut self.stream).poll_shutdown(cx));
        std::task::ready!(self.poll_drain(cx));
        Poll::Ready(shut)
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
