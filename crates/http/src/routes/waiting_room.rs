//! `POST /api/v1/sales/{id}/queue`: a buyer joins a sale's waiting room, or
//! asks where they stand (docs/api.md §3.3, "Waiting rooms"). The answer is the same ticket
//! every time, the place once drawn, and when to ask again.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use stampede_app::room::Standing;
use stampede_domain::ids::SaleId;

use crate::dto::{QueueBody, QueueStatusBody};
use crate::extract::{Customer, PathId};
use crate::problem::ApiError;
use crate::state::AppState;
use crate::waiting;

/// Join a sale's waiting room, or see where you stand.
#[utoipa::path(post, path = "/api/v1/sales/{id}/queue", tag = "sales",
    params(("id" = String, Path, description = "Sale id")), security(("bearer" = [])),
    responses((status = 200, description = "Your ticket and place; send the ticket in `Queue-Ticket` when you buy", body = QueueBody,
        headers(("Retry-After" = String, description = "Seconds until it is worth asking again (absent once admitted)"),
                ("RateLimit-Policy" = String, description = "`\"waiting-room\";q=<purchases answered a second>;w=1`"),
                ("RateLimit" = String, description = "`\"waiting-room\";r=<1 once admitted, else 0>;t=<seconds to wait>`")))))]
pub async fn join_queue(
    State(state): State<AppState>,
    Customer(caller): Customer,
    id: PathId,
) -> Result<Response, ApiError> {
    let sale_id = id.parse(SaleId::parse)?;
    let standing = state
        .app()
        .purchases
        .join_room(sale_id, &caller.user)
        .await?;
    Ok(answer(&standing))
}

fn answer(standing: &Standing) -> Response {
    let mut response = Json(QueueBody::from(standing)).into_response();
    let headers = response.headers_mut();
    for (name, value) in waiting::fields(standing.served_per_sec, standing.retry_after) {
        headers.insert(name, value);
    }
    if !standing.admitted {
        let secs = stampede_flow::limit::headers::delay_seconds(standing.retry_after).max(1);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl From<&Standing> for QueueBody {
    fn from(s: &Standing) -> Self {
        Self {
            ticket: s.ticket.clone(),
            status: if s.admitted {
                QueueStatusBody::Admitted
            } else {
                QueueStatusBody::Waiting
            },
            position: s.position,
            ahead: s.ahead,
            retry_after_ms: u64::try_from(s.retry_after.as_millis()).unwrap_or(u64::MAX),
            served_per_sec: (s.served_per_sec * 10.0).round() / 10.0,
            draw_at: s.draw_at.to_rfc3339(),
        }
    }
}
