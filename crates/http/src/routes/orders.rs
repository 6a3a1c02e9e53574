//! The caller's orders: read, list, cancel. Someone else's order is a 404.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::StreamExt as _;
use stampede_app::auth::Caller;
use stampede_app::ports::StoredEvent;
use stampede_domain::ids::OrderId;
use tokio::sync::broadcast;

use crate::dto::{EventBody, EventFrameBody, OrderBody, OrderDetailBody, PageBody};
use crate::extract::{Authenticated, Page, PathId};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::streams::StreamSlot;

/// Get an order (its owner, or an admin).
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order", body = OrderBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: PathId,
) -> Result<Json<OrderBody>, ApiError> {
    let id = id.parse(OrderId::parse)?;
    let order = state.app().orders.get(&caller, id).await?;
    Ok(Json(OrderBody::from(&order)))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 20"),
           ("cursor" = Option<String>, Query, pattern = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$", description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "A page of orders", body = PageBody<OrderBody>)))]
pub async fn list_orders(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Page(query): Page,
) -> Result<Json<PageBody<OrderBody>>, ApiError> {
    let limit = query.limit()?;
    let before = query.cursor(OrderId::parse)?;
    let (items, next) = state.app().orders.list(&caller, before, limit).await?;
    Ok(Json(PageBody {
        items: items.iter().map(OrderBody::from).collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}

/// Cancel an unpaid order; its units go back to the sale exactly once.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The cancelled order", body = OrderBody)))]
pub async fn cancel_order(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: PathId,
) -> Result<Json<OrderBody>, ApiError> {
    let id = id.parse(OrderId::parse)?;
    let order = state.app().orders.cancel(&caller, id).await?;
    Ok(Json(OrderBody::from(&order)))
}

/// The order with its product, sale, payments and events, gathered
/// concurrently under one deadline; parts that fail or are late are `null`
/// and named in `degraded`.
#[utoipa::path(get, path = "/api/v1/orders/{id}/detail", tag = "orders",
    params(("id" = String, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 200, description = "The order and what surrounds it", body = OrderDetailBody)))]
pub async fn detail(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: PathId,
) -> Result<Json<OrderDetailBody>, ApiError> {
    let id = id.parse(OrderId::parse)?;
    let detail = state.app().detail.detail(&caller, id).await?;
    Ok(Json(OrderDetailBody::from(&detail)))
}

/// The order's status changes as server-sent events: its history first, then
/// live. Each event's SSE `id` is its position; reconnecting with
/// `Last-Event-ID` resumes after it. The stream ends when the node drains.
#[utoipa::path(get, path = "/api/v1/orders/{id}/events", tag = "orders",
    params(("id" = String, Path, description = "Order id"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    security(("bearer" = [])),
    responses((status = 200, description = "`text/event-stream` of events (`event:` is the type, `data:` an Event)",
        content_type = "text/event-stream", body = EventFrameBody)))]
pub async fn events(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: PathId,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let id = id.parse(OrderId::parse)?;
    let slot = state.streams().acquire(&caller.user)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    // Subscribe before reading the history, so nothing falls between them.
    let live = state.app().live.subscribe();
    let history = state.app().orders.history(&caller, id, after).await?;
    let drained = state.app().lifecycle.draining_token();
    let feed = Feed {
        queue: history.into_iter().map(Arc::new).collect(),
        live,
        last_seq: after,
        order_id: id,
        aggregate: id.to_string(),
        caller,
        state,
        _slot: slot,
    };
    let stream =
        futures_util::stream::unfold(feed, Feed::next).take_until(drained.cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What an order's event stream has to send.
struct Feed {
    queue: VecDeque<Arc<StoredEvent>>,
    live: broadcast::Receiver<Arc<StoredEvent>>,
    last_seq: i64,
    order_id: OrderId,
    aggregate: String,
    caller: Caller,
    state: AppState,
    /// Held while the stream is open.
    _slot: StreamSlot,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if event.seq <= self.last_seq {
                    continue;
                }
                self.last_seq = event.seq;
                let sse = Event::default()
                    .id(event.seq.to_string())
                    .event(event.event_type.clone())
                    .json_data(EventBody::from(event.as_ref()))
                    .unwrap_or_else(|_| Event::default().comment("unserialisable event"));
                return Some((Ok(sse), self));
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.aggregate_id == self.aggregate {
                        self.queue.push_back(event);
                    }
                }
                // Fell behind the live feed: catch up from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let caught_up = self
                        .state
                        .app()
                        .orders
                        .history(&self.caller, self.order_id, self.last_seq)
                        .await
                        .ok()?;
                    self.queue.extend(caught_up.into_iter().map(Arc::new));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
