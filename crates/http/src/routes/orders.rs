//! The caller's orders: read, list, cancel. Someone else's order is a 404.

use axum::Json;
use axum::extract::State;
use stampede_domain::ids::OrderId;

use crate::dto::{OrderBody, PageBody};
use crate::extract::{Authenticated, Page, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

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
