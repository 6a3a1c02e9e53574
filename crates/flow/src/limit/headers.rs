//! Response header values for a limiter's quota and decisions: the IETF
//! draft's `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers-11), the older
//! `RateLimit-Limit`/`-Remaining`/`-Reset` trio many clients still read,
//! and `Retry-After`.
//!
//! Values only, as `String`s, so this crate needs no HTTP types; the edge
//! puts them on its responses (several policies go in one field, joined with
//! `", "`). Durations become whole seconds rounded **up**, so a client that
//! waits what it was told is never early.
//!
//! ```
//! use std::time::Duration;
//! use stampede_flow::{LimitDecision, Quota, limit::headers};
//!
//! let quota = Quota::per_second(20);
//! assert_eq!(headers::policy("per-user", &quota), r#""per-user";q=20;w=1"#);
//! let denied = LimitDecision::Deny {
//!     retry_after: Duration::from_millis(50),
//!     reset: Duration::from_millis(50),
//! };
//! assert_eq!(headers::ratelimit("per-user", &denied), r#""per-user";r=0;t=1"#);
//! assert_eq!(headers::retry_after(&denied).as_deref(), Some("1"));
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use super::{LimitDecision, Quota};

/// `RateLimit-Policy`: the quota policies that apply (draft-11).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit`: the service limit left under each policy (draft-11).
pub const RATELIMIT: &str = "ratelimit";
/// `RateLimit-Limit` (draft-06 and earlier): requests per window.
pub const RATELIMIT_LIMIT: &str = "ratelimit-limit";
/// `RateLimit-Remaining` (draft-06 and earlier).
pub const RATELIMIT_REMAINING: &str = "ratelimit-remaining";
/// `RateLimit-Reset` (draft-06 and earlier): seconds until more quota.
pub const RATELIMIT_RESET: &str = "ratelimit-reset";
/// `Retry-After`, as delay-seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// One `RateLimit-Policy` item: `"name";q=<quota>;w=<window seconds>`.
///
/// The window is the quota's period in whole seconds; a period that is not
/// one (500 ms, 1.5 s) is widened to the next whole second and `q` scaled
/// down to match, rounding down (10 per 500 ms is `q=20;w=1`), so the policy
/// never promises more than the limiter gives. `q` is the long-run rate; the
/// burst the limiter also allows is not part of the draft's vocabulary.
pub fn policy(name: &str, quota: &Quota) -> String {
    let (q, w) = whole_second_window(quota);
    let mut value = sf_string(name);
    let _ = write!(value, ";q={q};w={w}");
    value
}

/// One `RateLimit` item: `"name";r=<remaining>;t=<seconds>`.
///
/// `r` is how many more requests would be admitted at once (0 after a
/// queued or refused one); `t` is the draft's "effective window": the
/// seconds within which no more than `r` will be admitted —
/// [`LimitDecision::reset`], or for a refusal the `Retry-After`, so that the two
/// fields agree as the draft asks.
pub fn ratelimit(name: &str, decision: &LimitDecision) -> String {
    let mut value = sf_string(name);
    let _ = write!(
        value,
        ";r={};t={}",
        decision.remaining(),
        delay_seconds(window(decision))
    );
    value
}

/// `Retry-After` in delay-seconds for a refusal (at least 1); `None` for a
/// request that was let through, at once or after a wait.
pub fn retry_after(decision: &LimitDecision) -> Option<String> {
    match decision {
        LimitDecision::Deny { retry_after, .. } => {
            Some(delay_seconds(*retry_after).max(1).to_string())
        }
        LimitDecision::Allow { .. } | LimitDecision::Wait { .. } => None,
    }
}

/// The older trio, `RateLimit-Limit`, `RateLimit-Remaining` and
/// `RateLimit-Reset`, with the same numbers as [`policy`]'s `q` and
/// [`ratelimit`]'s `r` and `t`.
pub fn legacy(quota: &Quota, decision: &LimitDecision) -> [(&'static str, String); 3] {
    let (q, _) = whole_second_window(quota);
    [
        (RATELIMIT_LIMIT, q.to_string()),
        (RATELIMIT_REMAINING, decision.remaining().to_string()),
        (RATELIMIT_RESET, delay_seconds(window(decision)).to_string()),
    ]
}

/// A duration in whole seconds, rounded up.
pub fn delay_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// How long the decision's `remaining` stands.
fn window(decision: &LimitDecision) -> Duration {
    match decision {
        LimitDecision::Deny { retry_after, .. } => *retry_after,
        LimitDecision::Allow { reset, .. } | LimitDecision::Wait { reset, .. } => *reset,
    }
}

/// `(q, w)`: the quota over a window of whole seconds, at least one.
fn whole_second_window(quota: &Quota) -> (u64, u64) {
    let period = quota.period.as_nanos().max(1);
    let seconds = delay_seconds(quota.period).max(1);
    let q = u128::from(quota.limit) * u128::from(seconds) * 1_000_000_000 / period;
    (u64::try_from(q).unwrap_or(u64::MAX), seconds)
}

/// `name` as a Structured Field string (RFC 8941 §3.3.3): quoted, with `"`
/// and `\` escaped; characters the type cannot hold (controls, non-ASCII)
/// become `?`.
fn sf_string(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            ' '..='~' => quoted.push(c),
            _ => quoted.push('?'),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(remaining: u32, reset_ms: u64) -> LimitDecision {
        LimitDecision::Allow {
            remaining,
            reset: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn the_policy_matches_the_drafts_examples() {
        // draft-11 §3.2: `RateLimit-Policy: "default";q=100;w=10` and
        // `"permin";q=50;w=60,"perhr";q=1000;w=3600`.
        let default = Quota::new(100, Duration::from_secs(10));
        assert_eq!(policy("default", &default), r#""default";q=100;w=10"#);
        let both = [
            policy("permin", &Quota::per_minute(50)),
            policy("perhr", &Quota::new(1000, Duration::from_secs(3600))),
        ]
        .join(",");
        assert_eq!(both, r#""permin";q=50;w=60,"perhr";q=1000;w=3600"#);
    }

    #[test]
    fn the_service_limit_matches_the_drafts_examples() {
        // draft-11 §4.2: `RateLimit: "default";r=50;t=30`; §6:
        // `RateLimit: "problemPolicy";r=0;t=10`.
        assert_eq!(
            ratelimit("default", &allow(50, 30_000)),
            r#""default";r=50;t=30"#
        );
        let refused = LimitDecision::Deny {
            retry_after: Duration::from_secs(10),
            reset: Duration::from_secs(10),
        };
        assert_eq!(
            ratelimit("problemPolicy", &refused),
            r#""problemPolicy";r=0;t=10"#
        );
    }

    #[test]
    fn a_per_user_limit_of_twenty_a_second_reads_as_in_the_issue() {
        let quota = Quota::per_second(20);
        assert_eq!(policy("per-user", &quota), r#""per-user";q=20;w=1"#);
        let refused = LimitDecision::Deny {
            retry_after: Duration::from_millis(50),
            reset: Duration::from_millis(50),
        };
        assert_eq!(ratelimit("per-user", &refused), r#""per-user";r=0;t=1"#);
        assert_eq!(retry_after(&refused).as_deref(), Some("1"));
    }

    #[test]
    fn seconds_are_rounded_up_so_clients_are_never_early() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_nanos(1)), 1);
        assert_eq!(delay_seconds(Duration::from_secs(2)), 2);
        assert_eq!(delay_seconds(Duration::from_millis(2001)), 3);
        assert_eq!(ratelimit("p", &allow(3, 1)), r#""p";r=3;t=1"#);
    }

    #[test]
    fn a_sub_second_period_is_widened_to_a_second_and_the_quota_scaled() {
        let quota = Quota::new(10, Duration::from_millis(500));
        assert_eq!(policy("p", &quota), r#""p";q=20;w=1"#);
        let quota = Quota::new(3, Duration::from_millis(1500));
        assert_eq!(policy("p", &quota), r#""p";q=4;w=2"#, "4 per 2 s, not 6");
    }

    #[test]
    fn a_queued_request_has_nothing_left_and_no_retry_after() {
        let queued = LimitDecision::Wait {
            delay: Duration::from_millis(200),
            reset: Duration::from_millis(300),
        };
        assert_eq!(ratelimit("p", &queued), r#""p";r=0;t=1"#);
        assert_eq!(retry_after(&queued), None);
        assert_eq!(retry_after(&allow(0, 10)), None);
    }

    #[test]
    fn a_refusal_tells_the_time_to_retry_in_every_field() {
        // A leaky bucket's refusal: the queue takes the request again after
        // 2.5 s, though a request would go through at once only after 4 s.
        let refused = LimitDecision::Deny {
            retry_after: Duration::from_millis(2500),
            reset: Duration::from_secs(4),
        };
        assert_eq!(retry_after(&refused).as_deref(), Some("3"));
        assert_eq!(ratelimit("p", &refused), r#""p";r=0;t=3"#);
        assert_eq!(
            legacy(&Quota::per_minute(100), &refused),
            [
                ("ratelimit-limit", "100".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", "3".to_owned()),
            ]
        );
    }

    #[test]
    fn policy_names_are_quoted_and_escaped_as_structured_field_strings() {
        let quota = Quota::per_second(1);
        assert_eq!(policy(r#"a "b" \c"#, &quota), r#""a \"b\" \\c";q=1;w=1"#);
        assert_eq!(policy("vente-é\n", &quota), r#""vente-??";q=1;w=1"#);
    }
}
