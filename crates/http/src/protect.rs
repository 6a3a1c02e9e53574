//! The edge's protection, in the order of docs/design.md §4.1: the
//! built-in limits on logins and registrations per client address
//! ([`crate::account_limits`], apart from the rules), the caller's token
//! (verified once, here, when a rule counts users), rate limits, load
//! shedding on an adaptive limit of requests in flight, and a deadline.
//! Every refusal is decided before the request does any work: `429
//! rate-limited` with the `RateLimit-*` headers of both the widely
//! deployed form and IETF draft-11, `503 overloaded`, or `503 unavailable`
//! when the deadline passes — all with `Retry-After`.
//!
//! A shared rule (cluster mode, see [`crate::limits`]) costs one store call,
//! bounded by `shared_timeout`; a `fail_closed` one whose store does not
//! decide answers `503 unavailable` with `Retry-After: 1`.
//!
//! Probes and `/metrics` are never limited or shed: an overloaded node must
//! still say so. Nor is the retry of a purchase key this node has answered
//! ([`AnsweredKeys`]): it is not a new buyer, so it spends no quota and no
//! in-flight slot, and per-user rules count distinct keys.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use stampede_app::auth::Caller;
use stampede_app::auth::JwtKey;
use stampede_app::ports::Clock;
use stampede_app::purchase::AnsweredKeys;
use stampede_flow::adaptive::{AdaptiveConfig, AdaptiveLimit};
use stampede_flow::deadline::{self, Deadline};
use stampede_flow::limit::headers;
use stampede_flow::limit::shared::RateStore;

use crate::account_limits::{AccountLimitSettings, AccountLimits};
use crate::client_ip::TrustedProxies;
use crate::limits::{LimitRefusal, RateLimitRule, Refused, Subject};
use crate::live_rules::LiveRules;
use crate::problem::{ApiError, Kind};

/// How the edge protects the service; built from [`HttpConfig`](crate::config::HttpConfig).
#[derive(Debug, Clone)]
pub struct ProtectSettings {
    pub rate_limits: Vec<RateLimitRule>,
    /// The built-in limits on logins and registrations, apart from the rules.
    pub accounts: AccountLimitSettings,
    pub trusted_proxies: TrustedProxies,
    /// `None`: no adaptive limit (requests in flight are not bounded here).
    pub adaptive: Option<AdaptiveConfig>,
    /// Each request's deadline, unless the client asks for less.
    pub request_timeout: Duration,
    /// The most a client may ask for with `Request-Timeout`.
    pub max_request_timeout: Duration,
    /// The longest a shared rule waits for its store before its fallback.
    pub shared_timeout: Duration,
}

/// The edge's state: compiled rules and the adaptive limit.
pub struct Protection {
    /// The rules in force, replaceable while serving.
    limits: LiveRules,
    accounts: AccountLimits,
    adaptive: Option<AdaptiveLimit>,
    trusted: TrustedProxies,
    request_timeout: Duration,
    max_request_timeout: Duration,
    /// Verifies the caller's token once, for per-user rules.
    jwt: JwtKey,
    clock: Arc<dyn Clock>,
    /// The purchase keys this node answered: their retries go past.
    answered: Arc<AnsweredKeys>,
}

impl Protection {
    /// The client's address: the peer's, or the one a trusted proxy names.
    pub fn client_ip(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> IpAddr {
        self.trusted.client_ip(peer, headers)
    }

    /// The adaptive in-flight limit, if the edge has one.
    pub fn adaptive(&self) -> Option<&AdaptiveLimit> {
        self.adaptive.as_ref()
    }

    /// The edge's protection; rules are shared through `store` when there
    /// is one (cluster mode), unless they say `backend = "local"`.
    pub fn new(
        settings: &ProtectSettings,
        store: Option<Arc<dyn RateStore>>,
        jwt: JwtKey,
        clock: Arc<dyn Clock>,
        answered: Arc<AnsweredKeys>,
    ) -> Self {
        Self {
            jwt,
            clock,
            answered,
            limits: LiveRules::new(&settings.rate_limits, store, settings.shared_timeout),
            accounts: AccountLimits::new(settings.accounts),
            adaptive: settings
                .adaptive
                .map(|config| AdaptiveLimit::new("http", config)),
            trusted: settings.trusted_proxies.clone(),
            request_timeout: settings.request_timeout,
            max_request_timeout: settings.max_request_timeout,
        }
    }

    /// The hottest keys of the local per-address and per-user rules.
    pub fn hot_keys(&self, n: usize) -> Vec<crate::hot_keys::HotRule> {
        self.limits.current().hot(n)
    }

    /// Forgets idle keys' limiter state; run every few seconds.
    pub fn purge_idle(&self) -> usize {
        self.limits.current().purge_idle()
    }

    /// The rate-limit rules in force, to read or replace.
    pub fn rules(&self) -> &LiveRules {
        &self.limits
    }

    /// The request's deadline: the default, or the client's
    /// `Request-Timeout` (seconds) when shorter than the cap.
    fn deadline(&self, request: &Request) -> Deadline {
        let asked = request
            .headers()
            .get("request-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            .map(|secs| Duration::from_secs_f64(secs.min(self.max_request_timeout.as_secs_f64())));
        Deadline::after(asked.unwrap_or(self.request_timeout))
    }
}

const PROBES: &[&str] = &["/livez", "/readyz", "/startupz", "/metrics"];
/// Long-lived by design: no deadline.
const STREAMS: &[&str] = &[
    "/api/v1/orders/{id}/events",
    "/api/v1/admin/live",
    "/api/v1/admin/profile",
];

fn sale_in_path<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    route
        .starts_with("/api/v1/sales/{id}")
        .then(|| path.split('/').nth(4))
        .flatten()
}

const PURCHASE: &str = "/api/v1/sales/{id}/purchase";

/// Whether `who` retries a purchase key this node already answered.
fn is_known_retry(protection: &Protection, who: Option<&Caller>, request: &Request) -> bool {
    let Some(who) = who else {
        return false;
    };
    let key = request.headers().get("idempotency-key");
    key.and_then(|key| key.to_str().ok())
        .is_some_and(|key| (protection.answered).knows(&who.user, key, protection.clock.now()))
}

fn caller(protection: &Protection, request: &Request) -> Option<Caller> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let claims = protection
        .jwt
        .verify(token.trim(), protection.clock.now())
        .ok()?;
    Some(Caller {
        user: claims.user,
        role: claims.role,
    })
}

/// `429 rate-limited` with the limit's headers; the caller counts it.
fn too_many(refusal: &LimitRefusal<'_>) -> Response {
    let retry_after = headers::retry_after(&refusal.decision)
        .and_then(|secs| secs.parse::<u32>().ok())
        .unwrap_or(1);
    let mut response = ApiError::new(Kind::RATE_LIMITED)
        .with_detail(format!("over the `{}` rate limit", refusal.rule))
        .retry_after(retry_after)
        .into_response();
    let out = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::try_from(value) {
            out.insert(HeaderName::from_static(name), value);
        }
    };
    put(
        headers::RATELIMIT_POLICY,
        headers::policy(refusal.rule, &refusal.quota),
    );
    put(
        headers::RATELIMIT,
        headers::ratelimit(refusal.rule, &refusal.decision),
    );
    for (name, value) in headers::legacy(&refusal.quota, &refusal.decision) {
        put(name, value);
    }
    response
}

/// `429 rate-limited`: a leaky bucket's wait longer than what is left of
/// the request's deadline.
fn too_long_a_wait(wait: Duration) -> Response {
    let secs = u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX);
    ApiError::new(Kind::RATE_LIMITED)
        .with_detail("the rate limit's queue would hold this request past its deadline")
        .retry_after(secs.max(1))
        .into_response()
}

fn undecided(rule: &str) -> Response {
    counter!("stampede_http_refused_total", "reason" => "rate_limit_unavailable").increment(1);
    ApiError::new(Kind::UNAVAILABLE)
        .with_detail(format!(
            "the `{rule}` rate limit cannot be checked right now; try again shortly"
        ))
        .retry_after(1)
        .into_response()
}

fn overloaded() -> Response {
    counter!("stampede_http_refused_total", "reason" => "overloaded").increment(1);
    ApiError::new(Kind::OVERLOADED)
        .with_detail("too many requests in flight; try again shortly")
        .retry_after(1)
        .into_response()
}

fn deadline_passed() -> Response {
    counter!("stampede_http_refused_total", "reason" => "deadline").increment(1);
    ApiError::new(Kind::UNAVAILABLE)
        .with_detail("the request did not finish within its deadline")
        .retry_after(1)
        .into_response()
}

/// Protects one request on its way to `next`; `route` is its template
/// (`None`: no route matched, nothing to protect).
pub(crate) async fn protect<F, Fut>(
    protection: &Protection,
    route: Option<&'static str>,
    mut request: Request,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let Some(route) = route.filter(|route| !PROBES.contains(route)) else {
        return next(request).await;
    };
    // From arrival: time spent waiting in a limiter counts.
    let deadline = protection.deadline(&request);
    let client_ip = |request: &Request| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        protection.trusted.client_ip(peer, request.headers())
    };
    // A retry of an answered key goes straight to its answer. The token is
    // verified once, here or for the rules below.
    let mut verified = None;
    if route == PURCHASE {
        let who = caller(protection, &request);
        if is_known_retry(protection, who.as_ref(), &request) {
            counter!("stampede_known_key_retries_total").increment(1);
            if let Some(who) = who {
                request.extensions_mut().insert(who);
            }
            return within_deadline(route, deadline, request, next).await;
        }
        verified = Some(who);
    }
    // The built-in account limits first: no rule file can lift them.
    let account = match protection.accounts.for_route(request.method(), route) {
        Some(limit) => match limit.admit(client_ip(&request)) {
            Ok(pending) => Some(pending),
            Err(decision) => {
                return too_many(&LimitRefusal {
                    rule: limit.name,
                    quota: limit.quota(),
                    decision,
                });
            }
        },
        None => None,
    };
    // One set of rules for the whole request, whatever replaces it meanwhile.
    let limits = protection.limits.current();
    if !limits.is_empty() {
        let method = request.method().clone();
        let user = if limits.needs_user(&method, route) {
            verified
                .take()
                .unwrap_or_else(|| caller(protection, &request))
        } else {
            None
        };
        let ip = client_ip(&request);
        let subject = Subject {
            method: &method,
            route,
            ip,
            user: user.as_ref().map(|c| &c.user),
            sale: sale_in_path(route, request.uri().path()),
        };
        match limits.check(&subject).await {
            Err(Refused::Limited(refusal)) => {
                counter!("stampede_http_refused_total", "reason" => "rate_limited").increment(1);
                return too_many(&refusal);
            }
            Err(Refused::Undecided { rule }) => return undecided(rule),
            // A wait the deadline cannot hold is refused now, as over the
            // limit for this request's patience.
            Ok(wait) if !wait.is_zero() => {
                if wait >= deadline.remaining() && !STREAMS.contains(&route) {
                    counter!("stampede_http_refused_total", "reason" => "rate_limited")
                        .increment(1);
                    return too_long_a_wait(wait);
                }
                tokio::time::sleep(wait).await;
            }
            Ok(_) => {}
        }
        if let Some(user) = user {
            // Verified once: the handler's extractor takes it from here.
            request.extensions_mut().insert(user);
        }
    }
    drop(limits);
    // Verified for the retry check and not used by a rule: handed on too.
    if let Some(Some(who)) = verified {
        request.extensions_mut().insert(who);
    }

    let in_flight = match &protection.adaptive {
        Some(limit) => match limit.try_acquire() {
            Some(token) => Some(token),
            None => return overloaded(),
        },
        None => None,
    };
    let started = Instant::now();
    let response = within_deadline(route, deadline, request, next).await;
    if let Some(token) = in_flight {
        token.done(started.elapsed(), !response.status().is_server_error());
    }
    if let Some(account) = account {
        account.settle(response.status());
    }
    response
}

/// Runs the request under its deadline (event streams have none).
async fn within_deadline<F, Fut>(
    route: &'static str,
    deadline: Deadline,
    request: Request,
    next: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if STREAMS.contains(&route) {
        return next(request).await;
    }
    match deadline::scope(deadline, deadline.run(next(request))).await {
        Ok(response) => response,
        Err(_) => deadline_passed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sale_id_comes_from_sale_routes_only() {
        assert_eq!(
            sale_in_path("/api/v1/sales/{id}/purchase", "/api/v1/sales/abc/purchase"),
            Some("abc")
        );
        assert_eq!(
            sale_in_path("/api/v1/orders/{id}", "/api/v1/orders/abc"),
            None
        );
    }
}
