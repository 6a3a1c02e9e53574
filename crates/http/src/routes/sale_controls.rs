//! An admin's live controls of a sale: pause, resume, end, a new end or
//! limit, units added or withdrawn. Each answers the sale as it is after,
//! with its version as `ETag`; `If-Match` with a version applies the control
//! only to that version (docs/api.md §3.3).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use stampede_domain::catalog::SaleControl;
use stampede_domain::ids::SaleId;
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;

use crate::dto::{SaleBody, SalePatchBody, StockAddBody, StockChangeBody, StockWithdrawBody};
use crate::extract::{Admin, ApiJson, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// A sale as an answer: its body and its version as a strong `ETag`.
pub(crate) fn with_etag(body: SaleBody) -> Response {
    let etag = HeaderValue::try_from(format!("\"{}\"", body.version))
        .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
    ([(header::ETAG, etag)], Json(body)).into_response()
}

/// The version an `If-Match` names: `"7"` (or `7`); absent: any version.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let unquoted = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    unquoted
        .parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::bad_request("If-Match must be a sale's version, e.g. \"3\""))
}

async fn apply(
    state: &AppState,
    id: PathId,
    headers: &HeaderMap,
    control: SaleControl,
) -> Result<Response, ApiError> {
    let id = id.parse(SaleId::parse)?;
    let expected = if_match(headers)?;
    let view = state.app().catalog.control(id, control, expected).await?;
    Ok(with_etag(SaleBody::from(&view)))
}

/// Pause a sale: purchases are answered `409 sale-paused` (not remembered
/// per key) until it resumes.
#[utoipa::path(post, path = "/api/v1/sales/{id}/pause", tag = "sales",
    params(("id" = String, Path, description = "Sale id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^"?[0-9]{1,19}"?$"#,
         description = "A version of the sale (`\"3\"`, its `ETag`): the control applies only to it, else 412")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, paused", body = SaleBody)))]
pub async fn pause_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    apply(&state, id, &headers, SaleControl::Pause).await
}

/// Resume a paused sale.
#[utoipa::path(post, path = "/api/v1/sales/{id}/resume", tag = "sales",
    params(("id" = String, Path, description = "Sale id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^"?[0-9]{1,19}"?$"#,
         description = "A version of the sale (`\"3\"`, its `ETag`): the control applies only to it, else 412")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, running", body = SaleBody)))]
pub async fn resume_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    apply(&state, id, &headers, SaleControl::Resume).await
}

/// End a sale now, for good: purchases are answered `409 sale-not-active`.
#[utoipa::path(post, path = "/api/v1/sales/{id}/end", tag = "sales",
    params(("id" = String, Path, description = "Sale id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^"?[0-9]{1,19}"?$"#,
         description = "A version of the sale (`\"3\"`, its `ETag`): the control applies only to it, else 412")), security(("bearer" = [])),
    responses((status = 200, description = "The sale, ended", body = SaleBody)))]
pub async fn end_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    apply(&state, id, &headers, SaleControl::End).await
}

/// Change a running sale's end and/or per-user limit.
#[utoipa::path(patch, path = "/api/v1/sales/{id}", tag = "sales", request_body = SalePatchBody,
    params(("id" = String, Path, description = "Sale id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^"?[0-9]{1,19}"?$"#,
         description = "A version of the sale (`\"3\"`, its `ETag`): the control applies only to it, else 412")), security(("bearer" = [])),
    responses((status = 200, description = "The sale as changed", body = SaleBody)))]
pub async fn patch_sale(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SalePatchBody>,
) -> Result<Response, ApiError> {
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
    apply(&state, id, &headers, control).await
}

/// Put more units on sale (`add`) or take unsold ones off (`withdraw`).
#[utoipa::path(post, path = "/api/v1/sales/{id}/stock", tag = "sales", request_body = StockChangeBody,
    params(("id" = String, Path, description = "Sale id"),
        ("If-Match" = Option<String>, Header, pattern = r#"^"?[0-9]{1,19}"?$"#,
         description = "A version of the sale (`\"3\"`, its `ETag`): the control applies only to it, else 412")), security(("bearer" = [])),
    responses((status = 200, description = "The sale with its new quantity", body = SaleBody)))]
pub async fn change_stock(
    State(state): State<AppState>,
    Admin(_): Admin,
    id: PathId,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StockChangeBody>,
) -> Result<Response, ApiError> {
    let control = match body {
        StockChangeBody::Add(StockAddBody { add }) => {
            SaleControl::AddStock(Quantity::parse("add", add)?)
        }
        StockChangeBody::Withdraw(StockWithdrawBody { withdraw }) => {
            SaleControl::WithdrawStock(Quantity::parse("withdraw", withdraw)?)
        }
    };
    apply(&state, id, &headers, control).await
}
