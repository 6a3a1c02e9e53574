//! Paying orders, and the provider's signed webhook that confirms payments.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use stampede_app::auth::signature;
use stampede_app::payments::Confirmation;
use stampede_domain::ids::OrderId;

use crate::dto::{ConfirmationBody, OrderBody};
use crate::extract::{Authenticated, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// Pay an order. The provider confirms later and the order becomes `paid`.
#[utoipa::path(post, path = "/api/v1/orders/{id}/pay", tag = "orders",
    params(("id" = String, Path, description = "Order id")), security(("bearer" = [])),
    responses((status = 202, description = "The payment is on its way", body = OrderBody)))]
pub async fn pay(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    id: PathId,
) -> Result<impl IntoResponse, ApiError> {
    let id = id.parse(OrderId::parse)?;
    let order = state.app().payments.pay(&caller, id).await?;
    Ok((StatusCode::ACCEPTED, Json(OrderBody::from(&order))))
}

/// The payment provider's answer on a payment, signed with the webhook secret
/// (`Stampede-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`).
/// Repeats are answered `already_settled` and change nothing.
#[utoipa::path(post, path = "/api/v1/payments/webhook", tag = "payments",
    request_body(content = Object, description = r#"`{"payment_id", "status": "approved"|"declined", "provider_ref"?, "reason"?}`"#),
    params(("Stampede-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256>")),
    responses((status = 200, description = "Applied (or a repeat)", body = ConfirmationBody)))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ConfirmationBody>, ApiError> {
    let signature = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let confirmation = state.app().payments.confirm(&body, signature).await?;
    Ok(Json(ConfirmationBody {
        outcome: match confirmation {
            Confirmation::Paid => "paid",
            Confirmation::RefundRequired => "refund_required",
            Confirmation::NotPaid => "not_paid",
            Confirmation::AlreadySettled => "already_settled",
        },
    }))
}
