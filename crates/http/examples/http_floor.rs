//! The floor under the refusals target: a server on the same HTTP stack as
//! Stampede's edge (hyper's HTTP/1.1 over tokio, two workers, `TCP_NODELAY`)
//! whose purchase handler does nothing but read the body and answer the
//! fixed `409 sold-out` problem. Whatever a purchase costs beyond `GET
//! /livez` here (a larger request with a token, a key and a body; a larger
//! answer; the generator's own work for both) no server code can take away.
//!
//! ```text
//! cargo run --release -p stampede-http --example http_floor            # no checks at all
//! FLOOR_JWT_SECRET=<secret> cargo run --release -p stampede-http --example http_floor
//!                        # also verifies each HS256 token, as Stampede does
//! stampede bench flash-sale --target http://127.0.0.1:18095 --jwt-secret <secret> \
//!     --no-audit --json --users 200000 --stock 1000 --per-user-limit 1 --duration 10s
//! ```
//!
//! It also answers the two admin calls the bench makes first (a product and a
//! sale, each with a fixed id), so the bench's refusal run works against it;
//! `--no-audit`, since there is no sale to audit. Figures: docs/benchmarks.md,
//! "Round seven".

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::response::IntoResponse;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use stampede_app::auth::JwtKey;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;
use stampede_http::problem::ApiError;

const LISTEN: &str = "127.0.0.1:18095";
const LIVEZ: &[u8] = br#"{"status":"ok"}"#;

/// A request id per answer, as Stampede's edge sets one.
fn request_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    HeaderValue::try_from(format!("{id:016x}")).unwrap_or(HeaderValue::from_static("0"))
}

fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: &'static [u8],
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("x-request-id", request_id());
    response
}

/// Whether the bearer token verifies with `key` (its cache of verified tokens included).
fn verified(request: &Request<Incoming>, key: &JwtKey) -> bool {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| key.verify(token, Timestamp::now()).is_ok())
}

/// Stampede's own sold-out answer, byte for byte (its edge renders it).
async fn sold_out_body() -> &'static [u8] {
    let answer = ApiError::refused(Refusal::SoldOut).into_response();
    let body = axum::body::to_bytes(answer.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    Box::leak(body.to_vec().into_boxed_slice())
}

async fn handle(
    request: Request<Incoming>,
    key: Option<&'static JwtKey>,
    sold_out: &'static [u8],
) -> Result<Response<Full<Bytes>>, Infallible> {
    const JSON: &str = "application/json";
    match request.uri().path() {
        "/livez" => return Ok(answer(StatusCode::OK, JSON, LIVEZ)),
        "/api/v1/products" => return Ok(answer(StatusCode::CREATED, JSON, br#"{"id":"p"}"#)),
        "/api/v1/sales" => return Ok(answer(StatusCode::CREATED, JSON, br#"{"id":"s"}"#)),
        _ => {}
    }
    let allowed = key.is_none_or(|key| verified(&request, key));
    // Read the body, as a real handler must.
    let _ = request.into_body().collect().await;
    Ok(if allowed {
        answer(StatusCode::CONFLICT, "application/problem+json", sold_out)
    } else {
        answer(StatusCode::UNAUTHORIZED, "application/problem+json", b"{}")
    })
}

fn main() -> std::io::Result<()> {
    let key: Option<&'static JwtKey> = std::env::var("FLOOR_JWT_SECRET")
        .ok()
        .map(|secret| &*Box::leak(Box::new(JwtKey::new(secret.as_bytes()))));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let sold_out = sold_out_body().await;
        let listener = tokio::net::TcpListener::bind(LISTEN).await?;
        eprintln!("http_floor on {LISTEN} (token checks: {})", key.is_some());
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |request| handle(request, key, sold_out));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
