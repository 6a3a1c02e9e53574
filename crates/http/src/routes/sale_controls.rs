//! An admin's live controls of a sale: pause, resume, end, a new end or
//! limit, units added or withdrawn. Each answers the sale as it is after
//! (docs/api.md §3.2).

use axum::Json;
use axum::extract::State;
use stampede_domain::catalog::SaleControl;
use stampede_domain::ids::SaleId;
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;

use crate::dto::{SaleBody, SalePatchBody, StockAddBody, StockChangeBody, StockWithdrawBody};
use crate::extract::{Admin, ApiJson, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

async fn apply(
    state: &AppState,
    id: PathId,
    control: SaleControl,
) -> Result<Json<SaleBody>, ApiError> {
    let id = id.parse(SaleId::parse)?;
    let view = state.app().catalog.control(id, control).await?;
    Ok(Json(SaleBody::from(&view)))
}

/// Pause a sale: purchases are answered `409 sale-paused` (not remembered
/// per key) until it resumes.
#[utoipa::path(post, path = "/api/v1/sales/{id}/pause", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, paused", body = SaleBody)))]
pub async fn pause_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<Json<SaleBody>, ApiError> {
    apply(&state, id, SaleControl::Pause).await
}

/// Resume a paused sale.
#[utoipa::path(post, path = "/api/v1/sales/{id}/resume", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, running", body = SaleBody)))]
pub async fn resume_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<Json<SaleBody>, ApiError> {
    apply(&state, id, SaleControl::Resume).await
}

/// End a sale now, for good: purchases are answered `409 sale-not-active`.
#[utoipa::path(post, path = "/api/v1/sales/{id}/end", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, ended", body = SaleBody)))]
pub async fn end_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
) -> Result<Json<SaleBody>, ApiError> {
    apply(&state, id, SaleControl::End).await
}

/// Change a running sale's end and/or per-user limit.
#[utoipa::path(patch, path = "/api/v1/sales/{id}", tag = "sales", request_body = SalePatchBody,
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale as changed", body = SaleBody)))]
pub async fn patch_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    ApiJson(body): ApiJson<SalePatchBody>,
) -> Result<Json<SaleBody>, ApiError> {
    let ends_at = match body.ends_at {
        Some(Some(text)) => Some(Some(Timestamp::parse_rfc3339("ends_at", &text)?)),
        Some(None) => Some(None),
        None => None,
    };
    let per_user_limit = body
        .per_user_limit
        .map(|n| Quantity::parse("per_user_limit", n))
        .transpose()?;
    let control = SaleControl::Amend {
        ends_at,
        per_user_limit,
    };
    apply(&state, id, control).await
}

/// Put more units on sale (`add`) or take unsold ones off (`withdraw`).
#[utoipa::path(post, path = "/api/v1/sales/{id}/stock", tag = "sales", request_body = StockChangeBody,
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "The sale with its new quantity", body = SaleBody)))]
pub async fn change_stock(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    ApiJson(body): ApiJson<StockChangeBody>,
) -> Result<Json<SaleBody>, ApiError> {
    let control = match body {
        StockChangeBody::Add(StockAddBody { add }) => {
            SaleControl::AddStock(Quantity::parse("add", add)?)
        }
        StockChangeBody::Withdraw(StockWithdrawBody { withdraw }) => {
            SaleControl::WithdrawStock(Quantity::parse("withdraw", withdraw)?)
        }
    };
    apply(&state, id, control).await
}
