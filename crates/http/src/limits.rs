//! Rate-limit rules (shared/DESIGN.md section 6): each rule counts requests to
//! some routes per key — everyone together, client IP, user, route, or the
//! sale being bought (the hot item) — with one of the limiters of
//! `stampede-flow`. Rules come from configuration; the default protects a
//! fresh install: each user may make 20 purchase attempts per second (burst
//! 20). Per-IP limits are off by default (a load generator on one machine is
//! one IP).
//!
//! Keys are hashed to 64 bits with a per-process random key, so checking a
//! limit allocates nothing; two users would share a budget only on a hash
//! collision (odds about n²/2⁶⁵ for n keys).

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::time::Duration;

use axum::http::Method;
use serde::Deserialize;
use stampede_domain::ids::UserId;
use stampede_flow::limit::{Algorithm, Decision, KeyedLimiter, Quota};

/// What a rule counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// All matching requests together.
    Global,
    /// The client's IP (behind trusted proxies, from `X-Forwarded-For`).
    Ip,
    /// The authenticated user (requests without a valid token are not counted).
    User,
    /// Each route separately.
    Route,
    /// The sale in the path: a hot item's limit, whoever buys.
    Sale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmName {
    /// Token bucket: bursts up to `burst`, refused beyond.
    #[default]
    Gcra,
    /// Queues up to `max_wait_ms` instead of refusing: smooth, not bursty.
    LeakyBucket,
    FixedWindow,
    SlidingWindow,
}

/// One rule, as configuration writes it (`[[rate_limits]]` in the TOML file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Shown in `RateLimit-Policy` and the metrics.
    pub name: String,
    pub key: KeyKind,
    /// `"METHOD /route/{template}"` entries, or `"*"` for every API route.
    #[serde(default = "every_route")]
    pub routes: Vec<String>,
    #[serde(default)]
    pub algorithm: AlgorithmName,
    /// Requests per period.
    pub limit: u32,
    #[serde(default = "one_second")]
    pub period_ms: u64,
    /// Requests at once; defaults to `limit`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Leaky bucket: the longest a request may queue [default: 100].
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
}

fn every_route() -> Vec<String> {
    vec!["*".to_owned()]
}

fn one_second() -> u64 {
    1000
}

/// The route a purchase goes to.
pub const PURCHASE: &str = "POST /api/v1/sales/{id}/purchase";

impl RateLimitRule {
    /// The rules of a fresh install.
    pub fn defaults(per_user_purchases: u32) -> Vec<Self> {
        vec![Self {
            name: "per-user-purchase".into(),
            key: KeyKind::User,
            routes: vec![PURCHASE.into()],
            algorithm: AlgorithmName::Gcra,
            limit: per_user_purchases,
            period_ms: 1000,
            burst: None,
            max_wait_ms: None,
        }]
    }

    fn quota(&self) -> Quota {
        Quota::new(self.limit, Duration::from_millis(self.period_ms))
            .with_burst(self.burst.unwrap_or(self.limit))
    }

    fn algorithm(&self) -> Algorithm {
        match self.algorithm {
            AlgorithmName::Gcra => Algorithm::Gcra,
            AlgorithmName::LeakyBucket => Algorithm::LeakyBucket {
                max_wait: Duration::from_millis(self.max_wait_ms.unwrap_or(100)),
            },
            AlgorithmName::FixedWindow => Algorithm::FixedWindow,
            AlgorithmName::SlidingWindow => Algorithm::SlidingWindow,
        }
    }

    /// Checks the rule, naming what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        {
            return Err(format!(
                "rate limit name `{}` must be 1 to 64 printable characters without quotes",
                self.name
            ));
        }
        self.quota()
            .validate()
            .map_err(|e| format!("rate limit `{}`: {e}", self.name))?;
        if self.period_ms > 86_400_000 {
            return Err(format!(
                "rate limit `{}`: period_ms must be at most a day",
                self.name
            ));
        }
        if self.max_wait_ms.is_some() && self.algorithm != AlgorithmName::LeakyBucket {
            return Err(format!(
                "rate limit `{}`: max_wait_ms is for the leaky_bucket algorithm only",
                self.name
            ));
        }
        for route in &self.routes {
            if route != "*" && parse_route(route).is_none() {
                return Err(format!(
                    "rate limit `{}`: route `{route}` must be \"*\" or \"METHOD /path/{{template}}\"",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

fn parse_route(text: &str) -> Option<(Method, String)> {
    let (method, path) = text.trim().split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    path.starts_with('/')
        .then(|| (method, path.trim().to_owned()))
}

/// What a request is, as far as the rules care.
pub struct Subject<'a> {
    pub method: &'a Method,
    /// The matched route template, e.g. `/api/v1/sales/{id}/purchase`.
    pub route: &'a str,
    pub ip: IpAddr,
    pub user: Option<&'a UserId>,
    /// The `{id}` of a `/api/v1/sales/{id}…` path.
    pub sale: Option<&'a str>,
}

struct CompiledRule {
    name: String,
    key: KeyKind,
    /// `None`: every API route.
    routes: Option<Vec<(Method, String)>>,
    limiter: KeyedLimiter<u64>,
}

impl CompiledRule {
    fn applies(&self, subject: &Subject<'_>) -> bool {
        self.routes.as_ref().is_none_or(|routes| {
            routes
                .iter()
                .any(|(method, route)| method == subject.method && route == subject.route)
        })
    }
}

/// A refusal, with what its headers need.
pub struct Refusal<'a> {
    pub rule: &'a str,
    pub quota: Quota,
    pub decision: Decision,
}

/// The compiled rules.
pub struct RateLimits {
    rules: Vec<CompiledRule>,
    hasher: RandomState,
}

impl RateLimits {
    pub fn new(rules: &[RateLimitRule]) -> Self {
        let rules = rules
            .iter()
            .map(|rule| CompiledRule {
                name: rule.name.clone(),
                key: rule.key,
                routes: (!rule.routes.iter().any(|r| r == "*"))
                    .then(|| rule.routes.iter().filter_map(|r| parse_route(r)).collect()),
                limiter: KeyedLimiter::new(rule.name.clone(), rule.algorithm(), rule.quota()),
            })
            .collect();
        Self {
            rules,
            hasher: RandomState::new(),
        }
    }

    /// Whether any rule counts users on `route` (the edge then verifies the
    /// token early, once, for the handler too).
    pub fn needs_user(&self, method: &Method, route: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.key == KeyKind::User
                && rule
                    .routes
                    .as_ref()
                    .is_none_or(|routes| routes.iter().any(|(m, r)| m == method && r == route))
        })
    }

    fn key(&self, kind: KeyKind, subject: &Subject<'_>) -> Option<u64> {
        let mut hasher = self.hasher.build_hasher();
        kind.hash(&mut hasher);
        match kind {
            KeyKind::Global => {}
            KeyKind::Ip => subject.ip.hash(&mut hasher),
            KeyKind::User => subject.user?.as_str().hash(&mut hasher),
            KeyKind::Route => (subject.method.as_str(), subject.route).hash(&mut hasher),
            KeyKind::Sale => subject.sale?.hash(&mut hasher),
        }
        Some(hasher.finish())
    }

    /// Checks every rule that applies: the first refusal, or the longest wait
    /// a leaky bucket asks for (slots reserved in every admitting rule stay
    /// reserved: a request refused by a later rule spent them).
    pub fn check(&self, subject: &Subject<'_>) -> Result<Duration, Refusal<'_>> {
        let mut wait = Duration::ZERO;
        for rule in self.rules.iter().filter(|rule| rule.applies(subject)) {
            let Some(key) = self.key(rule.key, subject) else {
                continue;
            };
            match rule.limiter.check(&key) {
                Decision::Allow { .. } => {}
                Decision::Wait { delay, .. } => wait = wait.max(delay),
                decision @ Decision::Deny { .. } => {
                    return Err(Refusal {
                        rule: &rule.name,
                        quota: rule.limiter.quota(),
                        decision,
                    });
                }
            }
        }
        Ok(wait)
    }

    /// Drops the state of idle keys; run it every few seconds.
    pub fn purge_idle(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| rule.limiter.purge_idle())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(user: &'a UserId, sale: &'a str) -> Subject<'a> {
        Subject {
            method: &Method::POST,
            route: "/api/v1/sales/{id}/purchase",
            ip: "127.0.0.1".parse().unwrap(),
            user: Some(user),
            sale: Some(sale),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_rule_limits_each_user_separately() {
        let limits = RateLimits::new(&RateLimitRule::defaults(2));
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        assert!(limits.check(&subject(&alice, "s")).is_ok());
        assert!(limits.check(&subject(&alice, "s")).is_ok());
        let refused = limits.check(&subject(&alice, "s")).err().unwrap();
        assert_eq!(refused.rule, "per-user-purchase");
        assert!(limits.check(&subject(&bob, "s")).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check(&subject(&alice, "s")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hot_sale_rule_counts_every_buyer_of_that_sale() {
        let rule: RateLimitRule = toml::from_str(
            r#"name = "hot-sale"
               key = "sale"
               routes = ["POST /api/v1/sales/{id}/purchase"]
               limit = 3"#,
        )
        .unwrap();
        rule.validate().unwrap();
        let limits = RateLimits::new(&[rule]);
        let users: Vec<UserId> = (0..4)
            .map(|i| UserId::parse(format!("u{i}")).unwrap())
            .collect();
        for user in &users[..3] {
            assert!(limits.check(&subject(user, "hot")).is_ok());
        }
        assert!(limits.check(&subject(&users[3], "hot")).is_err());
        assert!(limits.check(&subject(&users[3], "other")).is_ok());
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let mut rule = RateLimitRule::defaults(20).remove(0);
        rule.routes = vec!["purchase".into()];
        assert!(rule.validate().unwrap_err().contains("route"));
        rule.routes = vec!["*".into()];
        rule.limit = 0;
        assert!(rule.validate().unwrap_err().contains("limit"));
        rule.limit = 1;
        rule.max_wait_ms = Some(5);
        assert!(rule.validate().unwrap_err().contains("leaky_bucket"));
    }
}
