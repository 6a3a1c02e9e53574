//! What every request passes through on its way in and out: a request id and a
//! span that continues the request's W3C trace (so any log line inside carries
//! `trace_id` and `span_id`, and work it queues carries the trace on), RED metrics per
//! route, and the last line of defence that turns any error response not made
//! by our handlers — the framework's 404/405/413, a caught panic — into
//! problem+json.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use stampede_trace::TraceParent;

use crate::problem::{ApiError, CONTENT_TYPE, Kind};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: &str = "traceparent";

/// Installs the Prometheus recorder once per process and returns its handle.
/// Must run before the app is built: metric handles made before it are no-ops.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            const LATENCY: &[f64] = &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0, 10.0,
            ];
            const SIZES: &[f64] = &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("stampede_commit_batch_size".into()),
                        SIZES,
                    )
                });
            let builder = match builder {
                Ok(builder) => builder,
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            register_at_start();
            handle
        })
        .clone()
}

fn usable_id(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()))
        .then_some(text)
}

/// The `method` label: the standard methods, anything else `other`, so no
/// client can add a series.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "other",
];

fn method_slot(method: &Method) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(7)
}

/// One route's request counter and latency histogram per method and status.
type RouteHandles = [Vec<(u16, Counter, Histogram)>; 8];

thread_local! {
    /// Metric handles resolved once per thread, by route (templates only:
    /// a closed set), then method and status; the registry is not searched
    /// and no label is formatted per request.
    static HANDLES: RefCell<HashMap<&'static str, RouteHandles>> = RefCell::new(HashMap::new());
}

/// Counts a finished request and records its latency.
fn record(method: usize, route: &'static str, status: u16, seconds: f64) {
    with_handles(method, route, status, |requests, latency| {
        requests.increment(1);
        latency.record(seconds);
    });
}

/// Calls `f` with the request counter and latency histogram of one method,
/// route and status, registering them on first use.
fn with_handles(
    method: usize,
    route: &'static str,
    status: u16,
    f: impl FnOnce(&Counter, &Histogram),
) {
    HANDLES.with_borrow_mut(|routes| {
        let by_status = &mut routes.entry(route).or_default()[method];
        let at = match by_status.iter().position(|(s, _, _)| *s == status) {
            Some(at) => at,
            None => {
                let labels = [
                    ("method", METHODS[method].to_owned()),
                    ("route", route.to_owned()),
                    ("status", status.to_string()),
                ];
                by_status.push((
                    status,
                    metrics::counter!("stampede_http_requests_total", &labels),
                    metrics::histogram!("stampede_http_request_duration_seconds", &labels),
                ));
                by_status.len() - 1
            }
        };
        let (_, requests, latency) = &by_status[at];
        f(requests, latency);
    });
}

/// Series a dashboard or an alert under `deploy/` names that would otherwise
/// appear only with their first event: registered at start, zero until used.
fn register_at_start() {
    metrics::gauge!("stampede_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("stampede_ready").set(0.0);
    with_handles(
        method_slot(&Method::POST),
        crate::routes::purchase::ROUTE,
        202,
        |_, _| {},
    );
}

/// Request and trace ids, a span around the request, RED metrics by the
/// route template (`None`: no route matched).
pub(crate) async fn observe<F, Fut>(
    request: Request,
    route: Option<&'static str>,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let started = Instant::now();
    let method = method_slot(request.method());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(usable_id)
        .map_or_else(
            || format!("{:016x}", stampede_trace::ids::next()),
            str::to_owned,
        );
    let route_name = route.unwrap_or("unmatched");
    let span = stampede_trace::span!(
        "request",
        method = METHODS[method],
        route = route_name,
        request_id = %request_id,
        otel.name = tracing::field::Empty,
        otel.kind = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let parent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse);
    let exporting = stampede_trace::is_on() && !span.is_disabled();
    if exporting {
        // OpenTelemetry's HTTP conventions, for the exported span only (the
        // log line has the same facts under its own names); set before the
        // span starts, which fixes its kind.
        span.record("otel.name", format!("{} {route_name}", METHODS[method]));
        span.record("otel.kind", "server");
    }
    let trace = stampede_trace::begin(&span, parent);
    let mut response = stampede_trace::entered(trace, span.clone(), next(request)).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    record(method, route_name, status, elapsed.as_secs_f64());
    if exporting {
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "error");
        }
    }
    // The access log: one line a request at `info`, with the span's fields
    // as its own (outside the span, the formatter need not read them back).
    // `--log info,stampede_http::telemetry=warn` keeps the rest and drops it.
    if !span.is_disabled() {
        tracing::info!(
            status,
            latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            method = METHODS[method],
            route = route_name,
            request_id = %request_id,
            trace_id = %trace.trace_hex(),
            span_id = %trace.span_hex(),
            "answered"
        );
    }
    if let Ok(value) = HeaderValue::try_from(request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// Turns an error response that is not problem+json into one, keeping its
/// status and headers (`Allow` on a 405, `Retry-After`).
pub(crate) fn problemify(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = ApiError::new(Kind::for_status(status)).into_response();
    let (problem_parts, body) = problem.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &problem_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(METHODS[method_slot(&Method::POST)], "POST");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(METHODS[method_slot(&odd)], "other");
        let other = Method::from_bytes(b"X-ANYTHING").unwrap();
        assert_eq!(method_slot(&odd), method_slot(&other));
    }
}
