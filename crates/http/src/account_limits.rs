//! The built-in limits on the account routes (docs/design.md §8.1b), per
//! client address: failed logins (10 a minute by default) and registrations
//! (20 an hour). They stand apart from the `[[rate_limits]]` rules
//! ([`crate::limits`]): a rule file neither replaces nor changes them; only
//! their own settings do, where 0 turns one off.
//!
//! - **Checked before, counted after.** Before the handler runs, the
//!   address's budget is asked without spending it; a spent budget answers
//!   `429 rate-limited` at once — for a login with the right password too,
//!   until a slot frees. After the handler, the outcome is counted if it is
//!   one the limit counts: a login answered 401, a registration answered 201
//!   or 409 (both cost a password hash, and a 409 tells whether an e-mail
//!   has an account). So successful logins never count, and a crowd logging
//!   in from one address (tests, a NAT) is never held back by them.
//! - **Attempts under way when the limit is reached still count** when they
//!   fail, pushing the address's next slot further out (six seconds each at
//!   10 a minute): parallel guessing gains nothing in the long run.
//! - **Fixed memory.** Addresses share a fixed array of 65,536 token
//!   buckets per limit (512 KiB), two per address by keyed hash
//!   ([`SlotLimiter`]): no address is ever evicted, so none comes back with
//!   a fresh allowance, and an address whose two buckets are both shared
//!   shares their budget (only ever stricter).
//!   IPv6 addresses count by their /64 prefix, the block one subscriber
//!   holds, so rotating through it gains nothing.
//!
//! Counted on each node (a cluster of `n` nodes behind a balancer lets an
//! address up to `n` times as much).

use std::net::IpAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use metrics::{Counter, counter};
use stampede_flow::limit::slots::SlotLimiter;
use stampede_flow::{LimitDecision, Quota};

use crate::client_ip::client_block;

/// Token buckets per limit: 8 bytes each.
const SLOTS: usize = 1 << 16;

/// The routes the limits guard.
const LOGIN: &str = "/api/v1/sessions";
const REGISTER: &str = "/api/v1/users";

/// The built-in limits' settings; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimitSettings {
    /// Failed logins per client address per minute.
    pub login_failures_per_min: u32,
    /// Registrations per client address per hour.
    pub registrations_per_hour: u32,
}

/// One limit: its name (in `RateLimit-Policy`), its buckets, what it counts.
pub(crate) struct AccountLimit {
    pub(crate) name: &'static str,
    limiter: SlotLimiter,
    counts: fn(StatusCode) -> bool,
    refused: Counter,
}

impl AccountLimit {
    fn new(
        name: &'static str,
        label: &'static str,
        quota: Option<Quota>,
        counts: fn(StatusCode) -> bool,
    ) -> Option<Self> {
        // Made at start: the exporter lists it, at zero, before any refusal.
        let refused = counter!("stampede_http_account_limited_total", "limit" => label);
        Some(Self {
            name,
            limiter: SlotLimiter::new(quota?, SLOTS),
            counts,
            refused,
        })
    }

    pub(crate) fn quota(&self) -> Quota {
        self.limiter.quota()
    }

    /// `Err`: the address's budget is spent; the refusal, counted.
    pub(crate) fn admit(&self, client: IpAddr) -> Result<Pending<'_>, LimitDecision> {
        let key = address_key(client);
        let decision = self.limiter.peek(&key);
        if !decision.is_admitted() {
            self.refused.increment(1);
            return Err(decision);
        }
        Ok(Pending { limit: self, key })
    }
}

/// An admitted request, to be counted by its outcome.
pub(crate) struct Pending<'a> {
    limit: &'a AccountLimit,
    key: u128,
}

impl Pending<'_> {
    pub(crate) fn settle(self, status: StatusCode) {
        if (self.limit.counts)(status) {
            self.limit.limiter.charge(&self.key);
        }
    }
}

/// Both limits, compiled.
pub(crate) struct AccountLimits {
    login: Option<AccountLimit>,
    registration: Option<AccountLimit>,
}

impl AccountLimits {
    pub(crate) fn new(settings: AccountLimitSettings) -> Self {
        let per = |limit: u32, period: Duration| (limit > 0).then(|| Quota::new(limit, period));
        Self {
            login: AccountLimit::new(
                "login-failures",
                "login",
                per(settings.login_failures_per_min, Duration::from_secs(60)),
                |status| status == StatusCode::UNAUTHORIZED,
            ),
            registration: AccountLimit::new(
                "registrations",
                "registration",
                per(settings.registrations_per_hour, Duration::from_secs(3600)),
                |status| matches!(status, StatusCode::CREATED | StatusCode::CONFLICT),
            ),
        }
    }

    /// The limit guarding `route`, if any.
    pub(crate) fn for_route(&self, method: &Method, route: &str) -> Option<&AccountLimit> {
        if method != Method::POST {
            return None;
        }
        match route {
            LOGIN => self.login.as_ref(),
            REGISTER => self.registration.as_ref(),
            _ => None,
        }
    }
}

/// What an address counts as ([`client_block`]), as one integer.
fn address_key(ip: IpAddr) -> u128 {
    match client_block(ip) {
        IpAddr::V4(ip) => u128::from(ip.to_ipv6_mapped()),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn limits(login: u32, registrations: u32) -> AccountLimits {
        AccountLimits::new(AccountLimitSettings {
            login_failures_per_min: login,
            registrations_per_hour: registrations,
        })
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            address_key(ip("::ffff:198.51.100.7")),
            address_key(ip("198.51.100.7"))
        );
        assert_ne!(
            address_key(ip("198.51.100.7")),
            address_key(ip("198.51.100.8"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn only_failed_logins_count_and_zero_turns_a_limit_off() {
        let limits = limits(2, 0);
        let login = limits.for_route(&Method::POST, LOGIN).unwrap();
        let client = ip("203.0.113.1");
        for _ in 0..5 {
            login
                .admit(client)
                .ok()
                .unwrap()
                .settle(StatusCode::CREATED);
        }
        for _ in 0..2 {
            login
                .admit(client)
                .ok()
                .unwrap()
                .settle(StatusCode::UNAUTHORIZED);
        }
        assert!(login.admit(client).is_err());
        assert!(login.admit(ip("203.0.113.2")).is_ok());
        assert!(limits.for_route(&Method::POST, REGISTER).is_none());
        assert!(limits.for_route(&Method::GET, LOGIN).is_none());
        assert!(self::limits(0, 1).for_route(&Method::POST, LOGIN).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_count_created_and_taken_but_not_invalid() {
        let limits = limits(10, 2);
        let register = limits.for_route(&Method::POST, REGISTER).unwrap();
        let client = ip("2001:db8::1");
        for _ in 0..3 {
            register
                .admit(client)
                .ok()
                .unwrap()
                .settle(StatusCode::UNPROCESSABLE_ENTITY);
        }
        register
            .admit(client)
            .ok()
            .unwrap()
            .settle(StatusCode::CREATED);
        register
            .admit(client)
            .ok()
            .unwrap()
            .settle(StatusCode::CONFLICT);
        let Err(LimitDecision::Deny { retry_after, .. }) = register.admit(ip("2001:db8::2")) else {
            panic!("another address of the same /64 registers afresh");
        };
        assert_eq!(retry_after, Duration::from_secs(1800));
        tokio::time::advance(retry_after).await;
        assert!(register.admit(client).is_ok());
    }
}
