//! RFC 9457 problem details: the one error type of the HTTP edge. Every 4xx and
//! 5xx this service sends is `application/problem+json` with a stable `type`
//! slug from docs/api.md §5; internal causes are logged here and never sent.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stampede_app::AppError;
use stampede_app::abuse::AbuseRefusal;
use stampede_app::failure::Chain;
use stampede_app::room::TicketProblem;
use stampede_domain::ValidationError;
use stampede_domain::stock::Refusal;
use utoipa::ToSchema;

use crate::waiting;

/// Base of every problem `type`; the slug after it is the stable code.
pub const TYPE_BASE: &str = "https://stampede.dev/problems/";

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem kind: status, slug and title fixed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
}

macro_rules! kinds {
    ($($name:ident = $status:ident, $slug:literal, $title:literal;)*) => {
        impl Kind {
            $(pub const $name: Kind = Kind { status: StatusCode::$status, slug: $slug, title: $title };)*
            /// Every kind, for documentation and tests.
            pub const ALL: &'static [Kind] = &[$(Kind::$name),*];
        }
    };
}

kinds! {
    BAD_REQUEST = BAD_REQUEST, "bad-request", "Bad request";
    UNAUTHORIZED = UNAUTHORIZED, "unauthorized", "Missing or invalid credentials";
    FORBIDDEN = FORBIDDEN, "forbidden", "Not allowed for this role";
    NOT_FOUND = NOT_FOUND, "not-found", "Not found";
    METHOD_NOT_ALLOWED = METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed";
    SOLD_OUT = CONFLICT, "sold-out", "Sold out";
    LIMIT_EXCEEDED = CONFLICT, "limit-exceeded", "Per-user limit exceeded";
    SALE_NOT_ACTIVE = CONFLICT, "sale-not-active", "Sale not active";
    SALE_PAUSED = CONFLICT, "sale-paused", "Sale paused";
    NO_WAITING_ROOM = CONFLICT, "no-waiting-room", "The sale has no waiting room";
    QUEUE_TICKET = FORBIDDEN, "queue-ticket", "Waiting-room ticket required";
    NOT_YOUR_TURN = CONFLICT, "not-your-turn", "Not your turn yet";
    TOO_EARLY = CONFLICT, "too-early", "Too early";
    VERIFICATION_FAILED = FORBIDDEN, "verification-failed", "Verification failed";
    PURCHASE_TOKEN = FORBIDDEN, "purchase-token", "Purchase token required";
    INSUFFICIENT_STOCK = CONFLICT, "insufficient-stock", "Insufficient stock";
    PRECONDITION_FAILED = PRECONDITION_FAILED, "precondition-failed", "Precondition failed";
    INVALID_STATE = CONFLICT, "invalid-state", "Invalid state for this operation";
    CONFLICT = CONFLICT, "conflict", "Already exists";
    PAYLOAD_TOO_LARGE = PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large";
    HEADERS_TOO_LARGE = REQUEST_HEADER_FIELDS_TOO_LARGE, "request-header-fields-too-large", "Request header fields too large";
    UNSUPPORTED_MEDIA_TYPE = UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type";
    VALIDATION = UNPROCESSABLE_ENTITY, "validation", "Invalid request";
    IDEMPOTENCY_MISMATCH = UNPROCESSABLE_ENTITY, "idempotency-mismatch", "Idempotency key reused for another request";
    RATE_LIMITED = TOO_MANY_REQUESTS, "rate-limited", "Too many requests";
    OVERLOADED = SERVICE_UNAVAILABLE, "overloaded", "Overloaded";
    UNAVAILABLE = SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable";
    INTERNAL = INTERNAL_SERVER_ERROR, "internal", "Internal error";
}

impl Kind {
    /// The kind a bare status maps to, for responses made outside our handlers
    /// (the framework's own rejections).
    pub fn for_status(status: StatusCode) -> Kind {
        match status {
            StatusCode::BAD_REQUEST => Kind::BAD_REQUEST,
            StatusCode::UNAUTHORIZED => Kind::UNAUTHORIZED,
            StatusCode::FORBIDDEN => Kind::FORBIDDEN,
            StatusCode::NOT_FOUND => Kind::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED => Kind::METHOD_NOT_ALLOWED,
            StatusCode::CONFLICT => Kind::CONFLICT,
            StatusCode::PAYLOAD_TOO_LARGE => Kind::PAYLOAD_TOO_LARGE,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Kind::HEADERS_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Kind::UNSUPPORTED_MEDIA_TYPE,
            StatusCode::UNPROCESSABLE_ENTITY => Kind::VALIDATION,
            StatusCode::TOO_MANY_REQUESTS => Kind::RATE_LIMITED,
            StatusCode::SERVICE_UNAVAILABLE => Kind::UNAVAILABLE,
            s if s.is_client_error() => Kind {
                status: s,
                ..Kind::BAD_REQUEST
            },
            s => Kind {
                status: s,
                ..Kind::INTERNAL
            },
        }
    }
}

/// One invalid field, in a `validation` problem's `errors` member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `https://stampede.dev/problems/<slug>`; the slug is the stable code.
    #[serde(rename = "type")]
    #[schema(example = "https://stampede.dev/problems/sold-out")]
    pub type_: String,
    pub title: &'static str,
    #[schema(value_type = u16)]
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'static, str>>,
    /// Invalid fields (`validation` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Seconds to wait before retrying (`429` and `503`; also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u32>,
}

/// An error answer of the HTTP edge.
#[derive(Debug)]
pub struct ApiError {
    kind: Kind,
    detail: Option<Cow<'static, str>>,
    errors: Vec<FieldError>,
    retry_after: Option<u32>,
    /// The body, when it never changes and was rendered once (refusals).
    rendered: Option<&'static [u8]>,
    /// More response fields (a waiting answer's `RateLimit`); boxed, so
    /// every other answer's error stays small.
    fields: Option<Box<[(HeaderName, HeaderValue); 2]>>,
}

impl ApiError {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            detail: None,
            errors: Vec::new(),
            retry_after: None,
            rendered: None,
            fields: None,
        }
    }

    /// A refused purchase: the answer most of a crowd gets, and always the
    /// same bytes, so each refusal's body is rendered once per process.
    pub fn refused(refusal: Refusal) -> Self {
        static BODIES: [OnceLock<&'static [u8]>; 4] = [const { OnceLock::new() }; 4];
        let slot = match refusal {
            Refusal::SoldOut => 0,
            Refusal::LimitExceeded => 1,
            Refusal::SaleNotActive => 2,
            Refusal::SalePaused => 3,
        };
        let (kind, detail) = refusal_kind(refusal);
        let mut error = Self::new(kind).with_detail(detail);
        let body =
            BODIES[slot].get_or_init(|| Box::leak(render(&error.problem()).into_boxed_slice()));
        error.rendered = Some(body);
        error
    }

    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::BAD_REQUEST).with_detail(detail)
    }

    pub fn not_found() -> Self {
        Self::new(Kind::NOT_FOUND)
    }

    pub fn validation(err: ValidationError) -> Self {
        let detail = err.to_string();
        let mut problem = Self::new(Kind::VALIDATION).with_detail(detail);
        problem.errors.push(FieldError {
            field: err.field.to_owned(),
            message: err.message,
        });
        problem
    }

    /// A `validation` problem naming one field by a path built at run time
    /// (`rules[2].limit`).
    pub fn invalid(field: String, message: String) -> Self {
        let mut problem = Self::new(Kind::VALIDATION).with_detail(format!("{field}: {message}"));
        problem.errors.push(FieldError { field, message });
        problem
    }

    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("{TYPE_BASE}{}", self.kind.slug),
            title: self.kind.title,
            status: self.kind.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            retry_after: self.retry_after,
        }
    }
}

fn refusal_kind(refusal: Refusal) -> (Kind, &'static str) {
    match refusal {
        Refusal::SoldOut => (Kind::SOLD_OUT, "fewer units are left than were asked for"),
        Refusal::LimitExceeded => (
            Kind::LIMIT_EXCEEDED,
            "this purchase would pass the sale's per-user limit",
        ),
        Refusal::SaleNotActive => (
            Kind::SALE_NOT_ACTIVE,
            "the sale has not started or has ended",
        ),
        Refusal::SalePaused => (
            Kind::SALE_PAUSED,
            "the sale is paused; try again once it resumes",
        ),
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        let retry_after = err.retry_after_secs();
        let problem = match err {
            AppError::NotFound => Self::not_found(),
            AppError::Validation(v) => Self::validation(v),
            AppError::Conflict { field } => {
                Self::new(Kind::CONFLICT).with_detail(format!("{field} already exists"))
            }
            AppError::Refused(refusal) => Self::refused(refusal),
            AppError::InvalidState(detail) => Self::new(Kind::INVALID_STATE).with_detail(detail),
            AppError::InsufficientStock => Self::new(Kind::INSUFFICIENT_STOCK)
                .with_detail("fewer units are unsold than the withdrawal takes"),
            AppError::PreconditionFailed { current } => Self::new(Kind::PRECONDITION_FAILED)
                .with_detail(format!(
                    "If-Match names another version; the sale is at \"{current}\""
                )),
            AppError::NoWaitingRoom => Self::new(Kind::NO_WAITING_ROOM)
                .with_detail("this sale sells without a waiting room: buy directly"),
            AppError::QueueTicket(problem) => {
                Self::new(Kind::QUEUE_TICKET).with_detail(match problem {
                    TicketProblem::Missing => {
                        "this sale sells through its waiting room: join with POST \
                         /api/v1/sales/{id}/queue and send the ticket in Queue-Ticket"
                    }
                    TicketProblem::Invalid => {
                        "the Queue-Ticket is not one this service issued to you for this sale"
                    }
                })
            }
            AppError::NotYourTurn(wait) => {
                let mut error = Self::new(Kind::NOT_YOUR_TURN).with_detail(match wait.ahead {
                    Some(ahead) => format!(
                        "{ahead} places before this ticket's are not admitted yet; ask again \
                         after Retry-After"
                    ),
                    None => "places are drawn when the sale starts".to_owned(),
                });
                let fields = waiting::fields(wait.served_per_sec, wait.retry_after);
                error.fields = Some(Box::new(fields));
                error
            }
            AppError::TooEarly(_) => Self::new(Kind::TOO_EARLY).with_detail(
                "purchase tokens of this sale are not issued yet; ask again after Retry-After",
            ),
            AppError::Abuse(refusal) => match refusal {
                AbuseRefusal::ProofOfWork => Self::new(Kind::VERIFICATION_FAILED).with_detail(
                    "a proof of work is asked: a fresh challenge of yours from GET \
                     /api/v1/sales/{id}/challenge and a nonce reaching its bits",
                ),
                AbuseRefusal::Captcha => Self::new(Kind::VERIFICATION_FAILED)
                    .with_detail("a solved captcha is asked: send its answer as `captcha`"),
                AbuseRefusal::PurchaseToken => Self::new(Kind::PURCHASE_TOKEN).with_detail(
                    "purchases need your token for this sale: POST /api/v1/sales/{id}/token \
                     and send it as Purchase-Token",
                ),
            },
            AppError::IdempotencyMismatch => Self::new(Kind::IDEMPOTENCY_MISMATCH)
                .with_detail("this Idempotency-Key was first used with another path or body"),
            AppError::Unauthorized(detail) => Self::new(Kind::UNAUTHORIZED).with_detail(detail),
            AppError::Forbidden => Self::new(Kind::FORBIDDEN),
            AppError::Overloaded(detail) => Self::new(Kind::OVERLOADED).with_detail(detail),
            err @ AppError::Unavailable { .. } => {
                tracing::warn!(cause = %Chain(&err), "answering 503 unavailable");
                Self::new(Kind::UNAVAILABLE)
                    .with_detail("the service cannot take this request right now")
            }
            err @ AppError::Internal { .. } => {
                tracing::error!(cause = %Chain(&err), "internal error");
                Self::new(Kind::INTERNAL)
            }
        };
        Self {
            retry_after,
            ..problem
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::validation(err)
    }
}

impl ApiError {
    /// The problem+json body alone, for answers written outside axum.
    pub(crate) fn body_bytes(&self) -> Vec<u8> {
        render(&self.problem())
    }
}

/// A problem as JSON.
fn render(problem: &Problem) -> Vec<u8> {
    match serde_json::to_vec(problem) {
        Ok(body) => body,
        Err(_) => br#"{"type":"https://stampede.dev/problems/internal","title":"Internal error","status":500}"#.to_vec(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A `Retry-After` added later is part of the body too: render it.
        let mut response = match self.rendered.filter(|_| self.retry_after.is_none()) {
            Some(body) => (self.kind.status, body).into_response(),
            None => (self.kind.status, render(&self.problem())).into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.fields.into_iter().flat_map(|fields| *fields) {
            headers.insert(name, value);
        }
        if self.kind == Kind::UNAUTHORIZED {
            // RFC 6750: say which scheme is expected.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_rendered_once_reads_as_it_would_be_rendered_each_time() {
        for refusal in [
            Refusal::SoldOut,
            Refusal::LimitExceeded,
            Refusal::SaleNotActive,
            Refusal::SalePaused,
        ] {
            let error = ApiError::refused(refusal);
            let fresh = render(&error.problem());
            assert_eq!(error.rendered, Some(fresh.as_slice()));
            // Twice: the second answer is the same bytes.
            assert_eq!(ApiError::refused(refusal).rendered, Some(fresh.as_slice()));
        }
    }

    #[test]
    fn every_slug_is_unique() {
        let mut slugs: Vec<_> = Kind::ALL.iter().map(|k| k.slug).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), Kind::ALL.len());
    }

    #[test]
    fn overload_answers_ask_the_client_to_retry() {
        let err = ApiError::from(AppError::Overloaded("queue full"));
        assert_eq!(err.kind(), Kind::OVERLOADED);
        assert_eq!(err.problem().retry_after, Some(1));
    }

    #[test]
    fn internal_causes_are_never_sent() {
        let err = ApiError::from(AppError::internal("secret path /var/db"));
        let body = serde_json::to_string(&err.problem()).unwrap();
        assert!(!body.contains("secret"));
    }
}
