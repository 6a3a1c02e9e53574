//! Webhook subscriptions (admins): create, list, read, delete, and see their
//! deliveries — dead letters included.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use stampede_app::webhooks::NewSubscription;
use stampede_domain::ValidationError;
use stampede_domain::ids::{DeliveryId, SubscriptionId};
use stampede_domain::webhook::DeliveryStatus;

use super::location;
use crate::dto::{DeliveryBody, NewSubscriptionBody, PageBody, SubscriptionBody};
use crate::extract::{Admin, ApiJson, Page, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// Subscribe a URL to events.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewSubscriptionBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Subscribed; the answer holds the signing secret, shown once", body = SubscriptionBody)))]
pub async fn create(
    State(state): State<AppState>,
    Admin(_): Admin,
    ApiJson(body): ApiJson<NewSubscriptionBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (subscription, secret) = state
        .app()
        .webhooks
        .subscribe(NewSubscription {
            url: body.url,
            event_types: body.event_types,
            secret: body.secret,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        location(format!("/api/v1/webhooks/{}", subscription.id)),
        Json(SubscriptionBody::of(&subscription, Some(&secret))),
    ))
}

/// Every subscription, oldest first.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, description = "The subscriptions", body = Vec<SubscriptionBody>)))]
pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> Result<Json<Vec<SubscriptionBody>>, ApiError> {
    let subscriptions = state.app().webhooks.list().await?;
    Ok(Json(
        subscriptions
            .iter()
            .map(|s| SubscriptionBody::of(s, None))
            .collect(),
    ))
}

/// One subscription.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 200, description = "The subscription", body = SubscriptionBody)))]
pub async fn get(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<Json<SubscriptionBody>, ApiError> {
    let id = id.parse(SubscriptionId::parse)?;
    let subscription = state.app().webhooks.get(id).await?;
    Ok(Json(SubscriptionBody::of(&subscription, None)))
}

/// Unsubscribe; pending deliveries are dropped.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id")),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<StatusCode, ApiError> {
    let id = id.parse(SubscriptionId::parse)?;
    state.app().webhooks.unsubscribe(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    pub status: Option<String>,
}

/// A subscription's deliveries, newest first; `?status=dead` lists the dead letters.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path, description = "Subscription id"),
           ("status" = Option<String>, Query, pattern = "^(pending|delivered|dead)?$", description = "`pending`, `delivered` or `dead`"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to 100, default 20"),
           ("cursor" = Option<String>, Query, pattern = r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$", description = "`next_cursor` of the previous page")),
    responses((status = 200, description = "A page of deliveries", body = PageBody<DeliveryBody>)))]
pub async fn deliveries(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    Page(page): Page,
    Query(query): Query<StatusQuery>,
) -> Result<Json<PageBody<DeliveryBody>>, ApiError> {
    let id = id.parse(SubscriptionId::parse)?;
    let status =
        match query.status.as_deref() {
            None | Some("") => None,
            Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
                ValidationError::new("status", "must be pending, delivered or dead")
            })?),
        };
    let limit = page.limit()?;
    let before = page.cursor(DeliveryId::parse)?;
    let (items, next) = state
        .app()
        .webhooks
        .deliveries(id, status, before, limit)
        .await?;
    Ok(Json(PageBody {
        items: items.iter().map(DeliveryBody::from).collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}
