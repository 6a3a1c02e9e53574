//! `POST /api/v1/sales/{id}/purchase`: the hot path. Everything here is cheap:
//! a token check, two small parses, one call into the purchase service.
//!
//! The edge calls [`direct`] for this route instead of going through the
//! router: the same extractors in the same order as the [`purchase`]
//! handler (which stays for the OpenAPI document and for paths that need
//! percent-decoding), without the router's per-request tables, and with the
//! usual body `{"quantity":N}` read without serde.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use stampede_app::abuse;
use stampede_app::auth::Caller;
use stampede_app::purchase::PurchaseRequest;
use stampede_app::room::ticket;
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::SaleId;
use stampede_domain::quantity::Quantity;

use crate::dto::{OrderBody, PurchaseBody};
use crate::extract::{self, ApiJson, Customer, IdempotencyKeyHeader, PathId};
use crate::problem::ApiError;
use crate::state::AppState;

/// The route's template.
pub const ROUTE: &str = "/api/v1/sales/{id}/purchase";

/// A buyer's purchase token for the sale, when the service asks for them.
pub const PURCHASE_TOKEN: HeaderName = HeaderName::from_static("purchase-token");

/// A buyer's waiting-room ticket, for a sale that has a room.
pub const QUEUE_TICKET: HeaderName = HeaderName::from_static("queue-ticket");

/// Set on a purchase answered from an earlier request with the same key.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Buy units of a sale. A 202 means the order is durable.
#[utoipa::path(post, path = "/api/v1/sales/{id}/purchase", tag = "sales",
    request_body = PurchaseBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Sale id"),
           ("Idempotency-Key" = String, Header, min_length = 1, max_length = 128, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "1–128 printable ASCII characters; a retry with the same key gets the first answer"),
           ("Purchase-Token" = Option<String>, Header, max_length = 64, description = "Your token for this sale from `POST /sales/{id}/token`, when the service asks for purchase tokens (`403 purchase-token` without it)"),
           ("Queue-Ticket" = Option<String>, Header, max_length = 53, description = "For a sale with a waiting room: your ticket from `POST /sales/{id}/queue` (`403 queue-ticket` without it, `409 not-your-turn` before your place is reached)")),
    responses((status = 202, description = "The order is durable", body = OrderBody,
        headers(("Location" = String, description = "The order's URL"),
                ("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same key")))))]
pub async fn purchase(
    State(state): State<AppState>,
    Customer(caller): Customer,
    id: PathId,
    IdempotencyKeyHeader(key): IdempotencyKeyHeader,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<Response, ApiError> {
    let sale_id = id.parse(SaleId::parse)?;
    let shown = Shown::read(&headers);
    buy(&state, caller, sale_id, key, shown, body.quantity).await
}

/// What a purchase shows besides its key: a waiting-room ticket and a
/// purchase token, each kept short (one too long to be either is refused as
/// any wrong one is).
struct Shown {
    ticket: Option<String>,
    token: Option<String>,
}

impl Shown {
    fn read(headers: &HeaderMap) -> Self {
        let field = |name: &HeaderName, max: usize| {
            let value = headers.get(name)?.as_bytes();
            Some(String::from_utf8_lossy(&value[..value.len().min(max + 1)]).into_owned())
        };
        Self {
            ticket: field(&QUEUE_TICKET, ticket::MAX_LEN),
            token: field(&PURCHASE_TOKEN, abuse::MAX_LEN),
        }
    }
}

/// The purchase as the edge calls it; `Err` hands the request back for the
/// router (an id that needs percent-decoding).
pub(crate) async fn direct(state: &AppState, request: Request) -> Result<Response, Request> {
    let Some(segment) = request.uri().path().split('/').nth(4) else {
        return Err(request);
    };
    if segment.contains('%') {
        return Err(request);
    }
    let sale_id = SaleId::parse(segment);
    let (mut parts, body) = request.into_parts();
    let answer = async {
        // The handler's order: credentials, headers, the body, the id.
        let Customer(caller) = Customer::from_request_parts(&mut parts, state).await?;
        let IdempotencyKeyHeader(key) =
            IdempotencyKeyHeader::from_request_parts(&mut parts, state).await?;
        let shown = Shown::read(&parts.headers);
        let quantity = body_quantity(Request::from_parts(parts, body), state).await?;
        let sale_id = sale_id.ok_or_else(ApiError::not_found)?;
        buy(state, caller, sale_id, key, shown, quantity).await
    };
    Ok(answer.await.unwrap_or_else(IntoResponse::into_response))
}

/// The body's quantity: `{"quantity":N}` as clients send it is read by
/// hand; any other body goes through [`ApiJson`] and its problems.
async fn body_quantity(request: Request, state: &AppState) -> Result<i64, ApiError> {
    let plain_json = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !plain_json {
        let ApiJson(body) = ApiJson::<PurchaseBody>::from_request(request, state).await?;
        return Ok(body.quantity);
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|err| extract::json_problem(JsonRejection::from(err)))?;
    match plain_quantity(&bytes) {
        Some(quantity) => Ok(quantity),
        None => extract::json_object::<PurchaseBody>(&bytes).map(|body| body.quantity),
    }
}

/// `N` of exactly `{"quantity":N}`, N a JSON integer of at most 18 digits;
/// `None` for anything else, which serde then reads (and judges).
fn plain_quantity(body: &[u8]) -> Option<i64> {
    let digits = body.strip_prefix(b"{\"quantity\":")?.strip_suffix(b"}")?;
    let leading_zero = digits.len() > 1 && digits[0] == b'0';
    if digits.is_empty() || digits.len() > 18 || leading_zero {
        return None;
    }
    digits.iter().try_fold(0i64, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })
}

async fn buy(
    state: &AppState,
    caller: Caller,
    sale_id: SaleId,
    key: IdempotencyKey,
    shown: Shown,
    quantity: i64,
) -> Result<Response, ApiError> {
    let quantity = Quantity::parse("quantity", quantity)?;
    let app = state.app();
    app.abuse
        .check(sale_id, &caller.user, shown.token.as_deref())?;
    let purchased = app
        .purchases
        .purchase(PurchaseRequest {
            user: caller.user,
            key,
            sale_id,
            quantity,
            ticket: shown.ticket,
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
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_plain_form_is_read_by_hand() {
        assert_eq!(plain_quantity(br#"{"quantity":1}"#), Some(1));
        assert_eq!(plain_quantity(br#"{"quantity":0}"#), Some(0));
        assert_eq!(
            plain_quantity(br#"{"quantity":999999999999999999}"#),
            Some(999_999_999_999_999_999)
        );
        for other in [
            &br#"{"quantity":01}"#[..],
            br#"{"quantity":}"#,
            br#"{"quantity":-1}"#,
            br#"{"quantity":1.0}"#,
            br#"{"quantity":1e3}"#,
            br#"{"quantity":"1"}"#,
            br#"{"quantity": 1}"#,
            br#"{"quantity":1,"x":2}"#,
            br#"{"quantity":1000000000000000000}"#,
            br#"{}"#,
            b"",
        ] {
            assert_eq!(
                plain_quantity(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn what_is_read_by_hand_is_what_serde_reads() {
        for body in ["{\"quantity\":1}", "{\"quantity\":42}", "{\"quantity\":0}"] {
            let by_hand = plain_quantity(body.as_bytes());
            let by_serde = serde_json::from_str::<PurchaseBody>(body)
                .ok()
                .map(|b| b.quantity);
            assert_eq!(by_hand, by_serde, "{body}");
        }
    }
}
