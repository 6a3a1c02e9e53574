//! The fields of a waiting answer of a sale's waiting room: the draft-11
//! `RateLimit-Policy` and `RateLimit` of a policy named `waiting-room`, the
//! room's drain rate as its quota and the wait as its window (docs/api.md
//! §3.3, "Waiting rooms"). On `POST /sales/{id}/queue` and on a purchase answered
//! `not-your-turn`, beside `Retry-After`.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use stampede_flow::limit::headers::{self, RATELIMIT, RATELIMIT_POLICY};

/// The policy's name in both fields.
pub const POLICY: &str = "waiting-room";

/// `RateLimit-Policy: "waiting-room";q=<served a second>;w=1` and
/// `RateLimit: "waiting-room";r=<0, or 1 once admitted>;t=<seconds to wait>`.
pub fn fields(served_per_sec: f64, retry_after: Duration) -> [(HeaderName, HeaderValue); 2] {
    // Whole purchases a second, rounded down: never more than measured.
    let quota = served_per_sec.max(0.0).floor() as u64;
    let admitted = u8::from(retry_after.is_zero());
    let wait = headers::delay_seconds(retry_after);
    let value = |text: String| {
        HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("\"waiting-room\""))
    };
    [
        (
            HeaderName::from_static(RATELIMIT_POLICY),
            value(format!("\"{POLICY}\";q={quota};w=1")),
        ),
        (
            HeaderName::from_static(RATELIMIT),
            value(format!("\"{POLICY}\";r={admitted};t={wait}")),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_answer_reads_as_the_draft_asks() {
        let [policy, limit] = fields(412.7, Duration::from_millis(2300));
        assert_eq!(policy.1, r#""waiting-room";q=412;w=1"#);
        assert_eq!(limit.1, r#""waiting-room";r=0;t=3"#);
        let [_, admitted] = fields(0.0, Duration::ZERO);
        assert_eq!(admitted.1, r#""waiting-room";r=1;t=0"#);
    }
}
