//! What an answer means: its status and, for refusals, the problem slug of
//! its `application/problem+json` body (docs/api.md §5). Classifying reads a
//! few bytes of the body and never parses JSON, so the generator stays
//! cheaper than the refusal it measures.

use hyper::header::HeaderName;
use hyper::{HeaderMap, StatusCode};
use serde::Serialize;

/// `Idempotent-Replayed: true` marks a purchase answered from an earlier one.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// 202 for a fresh key: a durable order.
    Won,
    /// 202 with `Idempotent-Replayed: true`: an earlier order, answered again.
    Replayed,
    /// 409 `sold-out`.
    SoldOut,
    /// 409 `limit-exceeded`.
    LimitExceeded,
    /// 409 `sale-not-active`.
    SaleNotActive,
    /// 409 `sale-paused`: an admin paused the sale (not remembered per key).
    SalePaused,
    /// 409 `not-your-turn`: a purchase with a waiting-room ticket whose
    /// place is not reached yet (not remembered per key).
    NotYourTurn,
    /// 403 `queue-ticket` (a purchase of a room sale without the caller's
    /// own ticket for it), or 409 `no-waiting-room` (joining the room of a
    /// sale that has none): the ticket and the sale do not go together.
    QueueTicket,
    /// 409 `insufficient-stock`: a withdrawal of more units than are unsold
    /// (an admin's control, not a purchase).
    InsufficientStock,
    /// 422 `idempotency-mismatch`: a key reused for another request.
    IdempotencyMismatch,
    /// 429 `rate-limited`.
    RateLimited,
    /// 503 `overloaded`: load shed or the commit queue full.
    Overloaded,
    /// 503 `unavailable`: draining or a dependency down.
    Unavailable,
    /// 200 from `GET /livez` (the ceiling phase only).
    Ok,
    /// Anything else: a transport failure, a timeout, an unexpected status, or
    /// a replay that did not get its first answer.
    Error,
}

impl Outcome {
    pub const COUNT: usize = 15;

    /// Every outcome, in report order.
    pub const ALL: [Outcome; Self::COUNT] = [
        Self::Won,
        Self::Replayed,
        Self::SoldOut,
        Self::LimitExceeded,
        Self::SaleNotActive,
        Self::SalePaused,
        Self::NotYourTurn,
        Self::QueueTicket,
        Self::InsufficientStock,
        Self::IdempotencyMismatch,
        Self::RateLimited,
        Self::Overloaded,
        Self::Unavailable,
        Self::Ok,
        Self::Error,
    ];

    /// The outcomes a purchase can have, in report order.
    pub const PURCHASE: [Outcome; 13] = [
        Self::Won,
        Self::Replayed,
        Self::SoldOut,
        Self::LimitExceeded,
        Self::SaleNotActive,
        Self::SalePaused,
        Self::NotYourTurn,
        Self::QueueTicket,
        Self::IdempotencyMismatch,
        Self::RateLimited,
        Self::Overloaded,
        Self::Unavailable,
        Self::Error,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in reports and JSON (the problem slug where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Self::Won => "won",
            Self::Replayed => "replayed",
            Self::SoldOut => "sold-out",
            Self::LimitExceeded => "limit-exceeded",
            Self::SaleNotActive => "sale-not-active",
            Self::SalePaused => "sale-paused",
            Self::NotYourTurn => "not-your-turn",
            Self::QueueTicket => "queue-ticket",
            Self::InsufficientStock => "insufficient-stock",
            Self::IdempotencyMismatch => "idempotency-mismatch",
            Self::RateLimited => "rate-limited",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }

    /// A purchase refused with a problem answer: what "losing" means in
    /// `losing_rps` (the cheap path the ceiling is compared with).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::SoldOut
                | Self::LimitExceeded
                | Self::SaleNotActive
                | Self::SalePaused
                | Self::NotYourTurn
                | Self::QueueTicket
                | Self::InsufficientStock
                | Self::IdempotencyMismatch
                | Self::RateLimited
                | Self::Overloaded
                | Self::Unavailable
        )
    }

    /// Refusals the server remembers per key (docs/api.md §4): a replay of the key
    /// must get the same one.
    pub fn is_remembered_refusal(self) -> bool {
        matches!(
            self,
            Self::SoldOut | Self::LimitExceeded | Self::SaleNotActive
        )
    }
}

/// Classifies an answer to `POST /api/v1/sales/{id}/purchase`.
pub fn classify_purchase(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Outcome {
    if status != StatusCode::ACCEPTED {
        return classify_refusal(status, body);
    }
    if headers
        .get(&REPLAYED)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
    {
        Outcome::Replayed
    } else {
        Outcome::Won
    }
}

/// Classifies an answer to `POST /api/v1/sales/{id}/queue` (a waiting
/// room's join or poll): `Ok` for a 200, whatever the place it tells.
pub fn classify_queue(status: StatusCode, body: &[u8]) -> Outcome {
    if status == StatusCode::OK {
        Outcome::Ok
    } else {
        classify_refusal(status, body)
    }
}

/// A refusal by its status and problem slug; `Error` when it is none the
/// bench knows.
fn classify_refusal(status: StatusCode, body: &[u8]) -> Outcome {
    match status {
        StatusCode::CONFLICT => match problem_slug(body) {
            Some(b"sold-out") => Outcome::SoldOut,
            Some(b"limit-exceeded") => Outcome::LimitExceeded,
            Some(b"sale-not-active") => Outcome::SaleNotActive,
            Some(b"sale-paused") => Outcome::SalePaused,
            Some(b"insufficient-stock") => Outcome::InsufficientStock,
            Some(b"not-your-turn") => Outcome::NotYourTurn,
            Some(b"no-waiting-room") => Outcome::QueueTicket,
            _ => Outcome::Error,
        },
        StatusCode::FORBIDDEN => match problem_slug(body) {
            Some(b"queue-ticket") => Outcome::QueueTicket,
            _ => Outcome::Error,
        },
        StatusCode::UNPROCESSABLE_ENTITY => match problem_slug(body) {
            Some(b"idempotency-mismatch") => Outcome::IdempotencyMismatch,
            _ => Outcome::Error,
        },
        StatusCode::TOO_MANY_REQUESTS => Outcome::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => match problem_slug(body) {
            Some(b"unavailable") => Outcome::Unavailable,
            _ => Outcome::Overloaded,
        },
        _ => Outcome::Error,
    }
}

/// Classifies an answer to `GET /livez`.
pub fn classify_livez(status: StatusCode) -> Outcome {
    match status {
        StatusCode::OK => Outcome::Ok,
        StatusCode::TOO_MANY_REQUESTS => Outcome::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => Outcome::Overloaded,
        _ => Outcome::Error,
    }
}

/// The slug of a problem body: what follows `/problems/` in its `type`, up
/// to the closing quote. Our server writes `type` first, so this finds it in
/// the first few dozen bytes.
pub fn problem_slug(body: &[u8]) -> Option<&[u8]> {
    const MARK: &[u8] = b"/problems/";
    let start = body.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let rest = &body[start..];
    let end = rest.iter().position(|&b| b == b'"')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn problem(slug: &str) -> Vec<u8> {
        format!(r#"{{"type":"https://stampede.dev/problems/{slug}","title":"x","status":409}}"#)
            .into_bytes()
    }

    #[test]
    fn refusals_are_told_apart_by_their_problem_slug() {
        let none = HeaderMap::new();
        let cases = [
            (409, "sold-out", Outcome::SoldOut),
            (409, "limit-exceeded", Outcome::LimitExceeded),
            (409, "sale-not-active", Outcome::SaleNotActive),
            (409, "sale-paused", Outcome::SalePaused),
            (409, "insufficient-stock", Outcome::InsufficientStock),
            (409, "not-your-turn", Outcome::NotYourTurn),
            (409, "no-waiting-room", Outcome::QueueTicket),
            (403, "queue-ticket", Outcome::QueueTicket),
            (403, "forbidden", Outcome::Error),
            (409, "conflict", Outcome::Error),
            (422, "idempotency-mismatch", Outcome::IdempotencyMismatch),
            (422, "validation", Outcome::Error),
            (429, "rate-limited", Outcome::RateLimited),
            (503, "overloaded", Outcome::Overloaded),
            (503, "unavailable", Outcome::Unavailable),
            (500, "internal", Outcome::Error),
            (401, "unauthorized", Outcome::Error),
        ];
        for (status, slug, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify_purchase(status, &none, &problem(slug)),
                expected,
                "{status} {slug}"
            );
        }
    }

    #[test]
    fn a_queue_answer_is_ok_or_the_refusal_its_slug_names() {
        let ok = br#"{"ticket":"t","status":"waiting"}"#;
        assert_eq!(classify_queue(StatusCode::OK, ok), Outcome::Ok);
        let cases = [
            (409, "sold-out", Outcome::SoldOut),
            (409, "sale-not-active", Outcome::SaleNotActive),
            (409, "no-waiting-room", Outcome::QueueTicket),
            (503, "overloaded", Outcome::Overloaded),
            (401, "unauthorized", Outcome::Error),
        ];
        for (status, slug, expected) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                classify_queue(status, &problem(slug)),
                expected,
                "{status} {slug}"
            );
        }
        // A 202 is no answer to a join.
        assert_eq!(classify_queue(StatusCode::ACCEPTED, ok), Outcome::Error);
    }

    #[test]
    fn waiting_room_refusals_are_not_remembered_per_key() {
        for outcome in [Outcome::NotYourTurn, Outcome::QueueTicket] {
            assert!(outcome.is_refusal(), "{outcome:?}");
            assert!(!outcome.is_remembered_refusal(), "{outcome:?}");
        }
    }

    #[test]
    fn a_202_is_a_win_unless_it_says_it_was_replayed() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            classify_purchase(StatusCode::ACCEPTED, &headers, b"{}"),
            Outcome::Won
        );
        headers.insert(REPLAYED, HeaderValue::from_static("false"));
        assert_eq!(
            classify_purchase(StatusCode::ACCEPTED, &headers, b"{}"),
            Outcome::Won
        );
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
        assert_eq!(
            classify_purchase(StatusCode::ACCEPTED, &headers, b"{}"),
            Outcome::Replayed
        );
    }

    #[test]
    fn bodies_without_a_problem_type_have_no_slug() {
        assert_eq!(problem_slug(b""), None);
        assert_eq!(problem_slug(b"not json"), None);
        assert_eq!(problem_slug(b"/problems/unterminated"), None);
        assert_eq!(
            problem_slug(&problem("sold-out")),
            Some(b"sold-out".as_slice())
        );
    }

    #[test]
    fn the_outcome_table_is_complete_and_in_index_order() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
        assert!(Outcome::PURCHASE.iter().all(|o| *o != Outcome::Ok));
    }
}
