//! The live sale page: `GET /dashboard` (the page, no data in it) and `GET
//! /api/v1/admin/live` (its data, admin only: one reading as JSON, or a
//! reading a second as server-sent events).

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};

use crate::extract::Admin;
use crate::problem::ApiError;
use crate::readings::{LiveBody, LiveSale, Reading};
use crate::routes::ops::{refresh_gauges, render};
use crate::routes::purchase::ROUTE as PURCHASE_ROUTE;
use crate::state::AppState;
use crate::streams::StreamSlot;

const PAGE: &str = include_str!("dashboard.html");

/// How often a stream sends a reading.
const EVERY: Duration = Duration::from_secs(1);

/// The page's policy: nothing but its own inline script (by hash) and
/// style, and requests to this origin.
fn content_security_policy() -> &'static HeaderValue {
    static POLICY: OnceLock<HeaderValue> = OnceLock::new();
    POLICY.get_or_init(|| {
        let script = PAGE
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(script, _)| script);
        let hash = STANDARD.encode(Sha256::digest(script.as_bytes()));
        let policy = format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'"
        );
        HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("default-src 'none'"))
    })
}

/// The live sale page. It holds no data: it asks for an admin token and
/// reads `/api/v1/admin/live` with it.
#[utoipa::path(get, path = "/dashboard", tag = "operations",
    responses((status = 200, description = "The live sale page", content_type = "text/html")))]
pub async fn dashboard() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                content_security_policy().clone(),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        PAGE,
    )
        .into_response()
}

/// The node's live sales and crowd. With `Accept: text/event-stream`, a
/// reading every second (`data:` a JSON object like the one below, with
/// rates and latency over the last second) until the client leaves or the
/// node drains; such a stream counts against the same caps as order event
/// streams.
#[utoipa::path(get, path = "/api/v1/admin/live", tag = "operations", security(("bearer" = [])),
    responses((status = 200, description = "One reading (or, with `Accept: text/event-stream`, one a second)", body = LiveBody)))]
pub async fn live(
    State(state): State<AppState>,
    Admin(caller): Admin,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let streaming = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !streaming {
        let (reading, sales) = read(&state).await;
        return Ok(Json(reading.view(None, sales, now(&state))).into_response());
    }
    let slot = state.streams().acquire(&caller.user)?;
    let drained = state.app().lifecycle.draining_token();
    let feed = Feed {
        state,
        before: None,
        _slot: slot,
    };
    // Ends when the node starts draining.
    let stream =
        futures_util::stream::unfold(feed, Feed::next).take_until(drained.cancelled_owned());
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn read(state: &AppState) -> (Reading, Vec<LiveSale>) {
    let sales = refresh_gauges(state.app())
        .await
        .into_iter()
        .map(|stock| LiveSale {
            id: stock.sale.to_string(),
            quantity: stock.quantity,
            remaining: stock.remaining,
        })
        .collect();
    let reading = Reading::of(&render(state), Instant::now(), PURCHASE_ROUTE);
    (reading, sales)
}

fn now(state: &AppState) -> String {
    state.app().clock.now().to_rfc3339()
}

/// A stream's state: the reading before, for the rates.
struct Feed {
    state: AppState,
    before: Option<Reading>,
    /// Held while the stream is open.
    _slot: StreamSlot,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.before.is_some() {
            tokio::time::sleep(EVERY).await;
        }
        let (reading, sales) = read(&self.state).await;
        let body = reading.view(self.before.as_ref(), sales, now(&self.state));
        self.before = Some(reading);
        let event = Event::default()
            .event("reading")
            .json_data(&body)
            .unwrap_or_else(|_| Event::default().comment("unreadable"));
        Some((Ok(event), self))
    }
}
