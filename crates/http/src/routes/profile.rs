//! `GET /api/v1/admin/profile?seconds=N`: a CPU profile of this node for N
//! seconds, as a flamegraph SVG. Sampling is pprof-rs's (`SIGPROF` at 99 Hz
//! on every thread, stacks unwound in the signal handler); the SVG is
//! inferno's. One profile at a time per node: the profiler is process-wide.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stampede_app::AppError;
use stampede_domain::ValidationError;
use utoipa::IntoParams;

use crate::extract::Admin;
use crate::problem::{ApiError, Kind};

/// Samples per second per thread: off the beat of 100 Hz timers.
const FREQUENCY: i32 = 99;
const MAX_SECONDS: u64 = 60;

/// Set while a profile is being recorded.
static RECORDING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProfileQuery {
    /// How long to record, 1 to 60 seconds (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 60)]
    seconds: Option<String>,
}

impl ProfileQuery {
    fn seconds(&self) -> Result<u64, ValidationError> {
        match &self.seconds {
            None => Ok(10),
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_SECONDS).contains(n))
                .ok_or_else(|| ValidationError::new("seconds", "must be an integer from 1 to 60")),
        }
    }
}

/// Records a CPU profile of this node and answers a flamegraph.
#[utoipa::path(get, path = "/api/v1/admin/profile", tag = "operations", security(("bearer" = [])),
    params(ProfileQuery),
    responses((status = 200, description = "A flamegraph of the node's CPU time (SVG)", content_type = "image/svg+xml")))]
pub async fn profile(
    Admin(_): Admin,
    query: Result<Query<ProfileQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let seconds = query.seconds().map_err(ApiError::validation)?;
    let Some(turn) = Turn::take() else {
        return Err(ApiError::new(Kind::RATE_LIMITED)
            .with_detail("a profile is already being recorded on this node; one at a time")
            .retry_after(u32::try_from(seconds).unwrap_or(60)));
    };
    // The profiler's guard is not `Send`: it lives on a blocking thread.
    let svg = tokio::task::spawn_blocking(move || {
        let svg = record(Duration::from_secs(seconds));
        drop(turn);
        svg
    })
    .await
    .map_err(|err| AppError::internal_because("the profiler's thread stopped", err))??;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            ),
            // inferno's SVG carries a script for its search and zoom.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        svg,
    )
        .into_response())
}

/// The right to record, given back when dropped.
struct Turn;

impl Turn {
    fn take() -> Option<Self> {
        RECORDING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Self)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        RECORDING.store(false, Ordering::Release);
    }
}

/// Failures are internal errors: logged with their cause, never sent.
fn record(length: Duration) -> Result<Vec<u8>, AppError> {
    let failed = |err: pprof::Error| AppError::internal_because("recording a CPU profile", err);
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(failed)?;
    std::thread::sleep(length);
    let report = guard.report().build().map_err(failed)?;
    drop(guard);
    if report.data.is_empty() {
        return Ok(no_samples(length));
    }
    let mut svg = Vec::new();
    report.flamegraph(&mut svg).map_err(failed)?;
    Ok(svg)
}

/// A flamegraph's place when nothing ran: an idle node is not an error.
fn no_samples(length: Duration) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"60\" viewBox=\"0 0 600 60\">\
         <text x=\"10\" y=\"35\" font-family=\"sans-serif\" font-size=\"16\">\
         No CPU samples in {} s: the node was idle.</text></svg>",
        length.as_secs()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_recording_at_a_time() {
        let first = Turn::take().unwrap();
        assert!(Turn::take().is_none());
        drop(first);
        assert!(Turn::take().is_some());
    }

    #[test]
    fn an_idle_profile_is_still_an_svg() {
        let svg = String::from_utf8(no_samples(Duration::from_secs(3))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("3 s"), "{svg}");
    }
}
