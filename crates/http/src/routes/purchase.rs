//! `POST /api/v1/sales/{id}/purchase`: the hot path. Everything here is cheap:
//! a token check, two small parses, one call into the purchase service.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use stampede_app::purchase::PurchaseRequest;
use stampede_domain::ids::SaleId;
use stampede_domain::quantity::Quantity;

use crate::dto::{OrderBody, PurchaseBody};
use crate::extract::{ApiJson, Customer, IdempotencyKeyHeader, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// Set on a purchase answered from an earlier request with the same key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Buy units of a sale. A 202 means the order is durable.
#[utoipa::path(post, path = "/api/v1/sales/{id}/purchase", tag = "sales",
    request_body = PurchaseBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Sale id"),
           ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "1–128 printable ASCII characters; a retry with the same key gets the first answer")),
    responses((status = 202, description = "The order is durable", body = OrderBody,
        headers(("Location" = String, description = "The order's URL"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same key")))))]
pub async fn purchase(
    State(state): State<AppState>,
    Customer(caller): Customer,
    id: PathId,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<impl IntoResponse, ApiError> {
    let sale_id = id.parse(SaleId::parse)?;
    let quantity = Quantity::parse("quantity", body.quantity)?;
    let purchased = state
        .app()
        .purchases
        .purchase(PurchaseRequest {
            user: caller.user,
            key,
            sale_id,
            quantity,
        })
        .await?;
    let order = purchased.order;
    let location = HeaderValue::try_from(format!("/api/v1/orders/{}", order.id))
        .unwrap_or_else(|_| HeaderValue::from_static("/"));
    let replayed = HeaderValue::from_static(if purchased.replayed { "true" } else { "false" });
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location), (REPLAYED, replayed)],
        Json(OrderBody::from(&order)),
    ))
}
