//! Rate-limit rules (docs/design.md §8.1): each rule counts requests to
//! some routes per key — everyone together, client IP, user, route, or the
//! sale being bought (the hot item) — with one of the limiters of
//! `stampede-flow`. Rules come from configuration; the default protects a
//! fresh install: each user may make 20 purchase attempts per second (burst
//! 20). Per-IP limits are off by default (a load generator on one machine is
//! one IP).
//!
//! # Local and shared rules
//!
//! A rule's `backend` says where its state lives. Unset, it follows the
//! deployment: **shared** when a shared store is configured (Redis, cluster
//! mode), so the rule's budget is the cluster's whichever node a request
//! reaches; **local** otherwise. `backend = "local"` keeps a rule on each
//! node even in cluster mode (each node then grants the whole budget — fine
//! for limits that protect the node itself); `backend = "shared"` without a
//! store is refused at start-up. Every algorithm can be shared.
//!
//! A shared rule's `fallback` says what happens when the store does not
//! decide within its timeout (`rate_limit_timeout_ms`, 50 ms by default) or
//! its breaker is open: `local` (the default) decides with the node's own
//! limiter and the same quota — still limited, but per node, so up to `n`
//! times the rate across `n` nodes while the store is away; `fail_open`
//! lets the request through; `fail_closed` refuses it with
//! `503 unavailable` and `Retry-After: 1` (not 429: the client is not over
//! any limit, the service cannot tell).
//!
//! Local rules are checked first, in their order, then shared ones: a
//! request refused locally costs no store call.
//!
//! # Replacing the rules
//!
//! A set of rules is replaced whole while serving ([`crate::live_rules`]),
//! after [`validate_rules`] — the one check for the file, the API and the
//! cluster's stored set. [`RateLimits::replaced_by`] keeps each rule whose
//! definition is unchanged, limiter state and all; a changed or new rule
//! starts afresh. No rule limits [`RULES_ROUTE`], so no set can lock admins
//! out of replacing it.
//!
//! # Keys
//!
//! For local rules, keys are hashed to 64 bits with a per-process random
//! key, so checking a limit allocates nothing; two users would share a
//! budget only on a hash collision (odds about n²/2⁶⁵ for n keys). Shared
//! rules need the same key on every node: the first 128 bits of a SHA-256 of
//! what the rule counts, in hex, so no client-chosen bytes reach Redis key
//! names and collisions are out of reach.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stampede_domain::ids::UserId;
use stampede_flow::limit::shared::{Fallback, RateStore, SharedLimiter, SharedStore, Undecided};
use stampede_flow::limit::{Algorithm, Bounds, KeyedLimiter, LimitDecision, Quota};
use utoipa::ToSchema;

use crate::client_ip::client_block;
use crate::hot_keys::{HotKeyBody, HotRule, KeyNames};

/// What a rule counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
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

/// Where a rule's state lives; see the [module documentation](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackendName {
    /// In each node's memory.
    Local,
    /// In the shared store (Redis): one budget for the cluster.
    Shared,
}

/// What a shared rule decides when the store does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FallbackName {
    /// The node's own limiter, same quota.
    #[default]
    Local,
    /// Let requests through.
    FailOpen,
    /// Refuse them with 503.
    FailClosed,
}

/// One rule, as configuration writes it (`[[rate_limits]]` in the TOML file)
/// and `/api/v1/admin/rate-limits` reads and replaces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Shown in `RateLimit-Policy` and the metrics; unique in a rule set.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    pub key: KeyKind,
    /// `"METHOD /route/{template}"` entries, or `"*"` for every API route
    /// [default: `["*"]`].
    #[serde(default = "every_route")]
    pub routes: Vec<String>,
    #[serde(default)]
    pub algorithm: AlgorithmName,
    /// Requests per period.
    #[schema(minimum = 1)]
    pub limit: u32,
    /// [default: 1000, at most a day].
    #[serde(default = "one_second")]
    pub period_ms: u64,
    /// Requests at once; defaults to `limit`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Leaky bucket: the longest a request may queue, at most 60000
    /// [default: 100].
    #[serde(default)]
    pub max_wait_ms: Option<u64>,
    /// [default: shared with a shared store (cluster mode), else local].
    #[serde(default)]
    pub backend: Option<BackendName>,
    /// A shared rule's answer when the store does not decide [default: local].
    #[serde(default)]
    pub fallback: Option<FallbackName>,
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
    /// The rules of a fresh install. The per-user rule counts on each node,
    /// in cluster mode too: it guards against one client hammering, while
    /// the ledger holds each buyer to the sale's limit exactly; a shared
    /// budget would cost every purchase a Redis call (a quarter of the
    /// Redis work of a refusal, docs/benchmarks.md). Configure it with
    /// `backend = "shared"` for one budget across nodes.
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
            backend: Some(BackendName::Local),
            fallback: None,
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

    /// Checks the rule on its own, naming the field that is wrong and why
    /// ([`validate_rules`] checks a whole set).
    pub fn validate(&self) -> Result<(), RuleError> {
        let err = |field, message: String| Err(RuleError::new(field, message));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        {
            return err(
                "name",
                format!(
                    "rate limit name `{}` must be 1 to 64 printable characters without quotes",
                    self.name
                ),
            );
        }
        if let Err(e) = self.quota().validate() {
            let field = match e.field {
                "period" => "period_ms",
                field => field,
            };
            return err(field, format!("rate limit `{}`: {e}", self.name));
        }
        if self.period_ms > 86_400_000 {
            return err(
                "period_ms",
                format!(
                    "rate limit `{}`: period_ms must be at most a day",
                    self.name
                ),
            );
        }
        if self.max_wait_ms.is_some() && self.algorithm != AlgorithmName::LeakyBucket {
            return err(
                "max_wait_ms",
                format!(
                    "rate limit `{}`: max_wait_ms is for the leaky_bucket algorithm only",
                    self.name
                ),
            );
        }
        // A queued request past the longest request deadline only times out.
        if self.max_wait_ms.is_some_and(|ms| ms > 60_000) {
            return err(
                "max_wait_ms",
                format!(
                    "rate limit `{}`: max_wait_ms must be at most 60000",
                    self.name
                ),
            );
        }
        if self.backend == Some(BackendName::Local) && self.fallback.is_some() {
            return err(
                "fallback",
                format!(
                    "rate limit `{}`: fallback is for shared rules only, and backend is local",
                    self.name
                ),
            );
        }
        if self.routes.is_empty() || self.routes.len() > MAX_ROUTES {
            return err(
                "routes",
                format!(
                    "rate limit `{}`: routes must hold 1 to {MAX_ROUTES} entries (\"*\": every route)",
                    self.name
                ),
            );
        }
        for route in &self.routes {
            if route != "*" && (route.len() > 256 || parse_route(route).is_none()) {
                return err(
                    "routes",
                    format!(
                        "rate limit `{}`: route `{route}` must be \"*\" or \"METHOD /path/{{template}}\"",
                        self.name
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Rules in one set at most: each costs a check per matching request.
pub const MAX_RULES: usize = 64;
/// Routes one rule names at most.
pub const MAX_ROUTES: usize = 64;

/// The route that reads and replaces the rules. No rule limits it, so no
/// rule set can lock admins out of replacing it.
pub const RULES_ROUTE: &str = "/api/v1/admin/rate-limits";

/// What is wrong with a rule set: the rule (its index; `None`: the set as
/// a whole), the field, and a message that names the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub index: Option<usize>,
    pub field: &'static str,
    pub message: String,
}

impl RuleError {
    fn new(field: &'static str, message: String) -> Self {
        Self {
            index: None,
            field,
            message,
        }
    }

    fn at(self, index: usize) -> Self {
        Self {
            index: Some(index),
            ..self
        }
    }

    /// Where, as a client sending the set as a JSON array reads it:
    /// `rules[2].limit`, or `rules`.
    pub fn path(&self) -> String {
        match self.index {
            Some(index) => format!("rules[{index}].{}", self.field),
            None => "rules".to_owned(),
        }
    }
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks a whole rule set, the one definition for the configuration file,
/// the API and the cluster's stored set: at most [`MAX_RULES`], each rule
/// valid, names unique (a shared rule's state is keyed by its name), routes
/// among `known` templates when given, and `backend = "shared"` only with
/// a shared store.
pub fn validate_rules(
    rules: &[RateLimitRule],
    known: Option<&[&str]>,
    shared_store: bool,
) -> Result<(), RuleError> {
    if rules.len() > MAX_RULES {
        return Err(RuleError::new(
            "",
            format!("at most {MAX_RULES} rate limits, got {}", rules.len()),
        ));
    }
    for (index, rule) in rules.iter().enumerate() {
        rule.validate().map_err(|e| e.at(index))?;
        if let Some(first) = rules[..index].iter().position(|r| r.name == rule.name) {
            return Err(RuleError::new(
                "name",
                format!(
                    "rate limit name `{}` is taken by rules[{first}]: names must be unique",
                    rule.name
                ),
            )
            .at(index));
        }
        if let Some(known) = known {
            let unknown = rule.routes.iter().find(|route| {
                parse_route(route).is_some_and(|(_, path)| !known.contains(&path.as_str()))
            });
            if let Some(route) = unknown {
                return Err(RuleError::new(
                    "routes",
                    format!(
                        "rate limit `{}`: route `{route}` is not a route of this API",
                        rule.name
                    ),
                )
                .at(index));
            }
        }
        if !shared_store && rule.backend == Some(BackendName::Shared) {
            return Err(RuleError::new(
                "backend",
                format!(
                    "rate limit `{}` is shared, which needs redis_url (or say backend = \"local\")",
                    rule.name
                ),
            )
            .at(index));
        }
    }
    Ok(())
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
    /// As written: a replacement keeps this compiled rule, state and all,
    /// when it holds an equal one.
    spec: RateLimitRule,
    name: String,
    key: KeyKind,
    /// `None`: every API route.
    routes: Option<Vec<(Method, String)>>,
    limiter: Backend,
    /// What its hottest keys stand for: local per-address and per-user
    /// rules in fixed memory only.
    names: Option<KeyNames>,
}

enum Backend {
    Local(KeyedLimiter<u64>),
    Shared(SharedLimiter),
}

impl CompiledRule {
    fn new(rule: &RateLimitRule, store: Option<&SharedStore>) -> Self {
        let limiter = match (store, rule.backend) {
            (Some(store), None | Some(BackendName::Shared)) => Backend::Shared(SharedLimiter::new(
                rule.name.clone(),
                rule.algorithm(),
                rule.quota(),
                store.clone(),
                match rule.fallback.unwrap_or_default() {
                    FallbackName::Local => Fallback::Local,
                    FallbackName::FailOpen => Fallback::Open,
                    FallbackName::FailClosed => Fallback::Closed,
                },
            )),
            _ => Backend::Local(local_limiter(rule)),
        };
        let bounded = matches!(&limiter, Backend::Local(l) if l.memory_bytes().is_some());
        Self {
            spec: rule.clone(),
            name: rule.name.clone(),
            key: rule.key,
            routes: (!rule.routes.iter().any(|r| r == "*"))
                .then(|| rule.routes.iter().filter_map(|r| parse_route(r)).collect()),
            limiter,
            names: bounded.then(KeyNames::new),
        }
    }

    fn applies(&self, subject: &Subject<'_>) -> bool {
        self.routes.as_ref().is_none_or(|routes| {
            routes
                .iter()
                .any(|(method, route)| method == subject.method && route == subject.route)
        })
    }

    fn quota(&self) -> Quota {
        match &self.limiter {
            Backend::Local(limiter) => limiter.quota(),
            Backend::Shared(limiter) => limiter.quota(),
        }
    }
}

/// A refusal by a rule's limit, with what its headers need.
pub struct LimitRefusal<'a> {
    pub rule: &'a str,
    pub quota: Quota,
    pub decision: LimitDecision,
}

/// Why a request may not go ahead.
pub enum Refused<'a> {
    /// Over a rule's limit: 429.
    Limited(LimitRefusal<'a>),
    /// A `fail_closed` shared rule whose store did not decide: 503.
    Undecided { rule: &'a str },
}

/// The compiled rules.
pub struct RateLimits {
    /// Local rules first, then shared ones, each in configuration order.
    /// Shared with the sets that replace this one while unchanged.
    rules: Vec<Arc<CompiledRule>>,
    /// As given, in their order.
    written: Vec<RateLimitRule>,
    /// Kept across replacements: local keys are hashed with it.
    hasher: RandomState,
}

impl RateLimits {
    /// Every rule local.
    pub fn new(rules: &[RateLimitRule]) -> Self {
        Self::with_store(rules, None)
    }

    /// Rules whose `backend` is shared, or unset, keep their state in
    /// `store` when there is one (see the [module documentation](self)).
    pub fn with_store(rules: &[RateLimitRule], store: Option<SharedStore>) -> Self {
        Self::compile(rules, store, &[], RandomState::new())
    }

    /// `rules` in place of these: a rule equal to one of these (name and
    /// every field) keeps its limiter and state, so replacing a set does not
    /// hand every client a fresh budget; the others start afresh.
    pub fn replaced_by(&self, rules: &[RateLimitRule], store: Option<SharedStore>) -> Self {
        Self::compile(rules, store, &self.rules, self.hasher.clone())
    }

    fn compile(
        rules: &[RateLimitRule],
        store: Option<SharedStore>,
        previous: &[Arc<CompiledRule>],
        hasher: RandomState,
    ) -> Self {
        let mut compiled: Vec<Arc<CompiledRule>> = rules
            .iter()
            .map(|rule| match previous.iter().find(|old| old.spec == *rule) {
                Some(old) => old.clone(),
                None => Arc::new(CompiledRule::new(rule, store.as_ref())),
            })
            .collect();
        // Stable: configuration order within each kind.
        compiled.sort_by_key(|rule| matches!(rule.limiter, Backend::Shared(_)));
        Self {
            rules: compiled,
            written: rules.to_vec(),
            hasher,
        }
    }

    /// The rules as given, in their order.
    pub fn rules(&self) -> &[RateLimitRule] {
        &self.written
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
            KeyKind::Ip => client_block(subject.ip).hash(&mut hasher),
            KeyKind::User => subject.user?.as_str().hash(&mut hasher),
            KeyKind::Route => (subject.method.as_str(), subject.route).hash(&mut hasher),
            KeyKind::Sale => subject.sale?.hash(&mut hasher),
        }
        Some(hasher.finish())
    }

    /// Checks every rule that applies: the first refusal, or the longest wait
    /// a leaky bucket asks for (slots reserved in every admitting rule stay
    /// reserved: a request refused by a later rule spent them). Without
    /// shared rules nothing here awaits or allocates.
    pub async fn check(&self, subject: &Subject<'_>) -> Result<Duration, Refused<'_>> {
        let mut wait = Duration::ZERO;
        if subject.route == RULES_ROUTE {
            return Ok(wait);
        }
        for rule in self.rules.iter().filter(|rule| rule.applies(subject)) {
            let Some(key) = self.key(rule.key, subject) else {
                continue;
            };
            let decision = match &rule.limiter {
                Backend::Local(limiter) => {
                    let decision = limiter.check(&key);
                    if let Some(names) = &rule.names
                        && worth_naming(&decision, limiter.quota())
                    {
                        names.record(key, || key_name(rule.key, subject));
                    }
                    decision
                }
                Backend::Shared(limiter) => {
                    // `key` returned Some, so the subject has what it counts.
                    let digest = shared_key(rule.key, subject);
                    match limiter.check(digest.as_str(), key).await {
                        Ok(decision) => decision,
                        Err(Undecided) => return Err(Refused::Undecided { rule: &rule.name }),
                    }
                }
            };
            match decision {
                LimitDecision::Allow { .. } => {}
                LimitDecision::Wait { delay, .. } => wait = wait.max(delay),
                decision @ LimitDecision::Deny { .. } => {
                    return Err(Refused::Limited(LimitRefusal {
                        rule: &rule.name,
                        quota: rule.quota(),
                        decision,
                    }));
                }
            }
        }
        Ok(wait)
    }

    /// Drops the state of idle keys (of shared rules: their local
    /// fallbacks'); run it every few seconds.
    pub fn purge_idle(&self) -> usize {
        self.rules
            .iter()
            .map(|rule| match &rule.limiter {
                Backend::Local(limiter) => limiter.purge_idle(),
                Backend::Shared(limiter) => limiter.purge_idle(),
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Up to `n` of the hottest keys of each local per-address and per-user
    /// rule, hottest first. Shared rules keep their state in the store and
    /// are not listed.
    pub fn hot(&self, n: usize) -> Vec<HotRule> {
        self.rules
            .iter()
            .filter_map(|rule| {
                let (Backend::Local(limiter), Some(names)) = (&rule.limiter, &rule.names) else {
                    return None;
                };
                let keys = limiter
                    .hottest(n)
                    .into_iter()
                    .map(|hot| HotKeyBody {
                        name: names.name(hot.key),
                        digest: format!("{:016x}", hot.key),
                        hits: hot.hits,
                        limited: hot.limited,
                    })
                    .collect();
                Some(HotRule {
                    rule: rule.name.clone(),
                    key: match rule.key {
                        KeyKind::Ip => "ip",
                        _ => "user",
                    },
                    memory_bytes: limiter.memory_bytes().unwrap_or_default(),
                    keys,
                })
            })
            .collect()
    }

    /// Whether any rule keeps its state in the shared store.
    pub fn has_shared(&self) -> bool {
        self.rules
            .iter()
            .any(|rule| matches!(rule.limiter, Backend::Shared(_)))
    }
}

/// The fixed memory of a local per-address or per-user rule
/// (`stampede_flow::limit::bounded`): 4,096 keys decided exactly, a sketch
/// of 65,536 columns for the rest — about 4.2 MiB a rule, whatever the
/// churn; an innocent key is refused early with odds about (D / 65,536)⁴
/// while D keys outside the top are in debt.
const BOUNDS: Bounds = Bounds::new(4096, 65_536);

/// A local rule's limiter: in fixed memory when it counts addresses or
/// users (keys a client can mint) with GCRA or the leaky bucket; the
/// windows, and rules with few keys, in exact tables.
fn local_limiter(rule: &RateLimitRule) -> KeyedLimiter<u64> {
    if matches!(rule.key, KeyKind::Ip | KeyKind::User)
        && let Ok(limiter) =
            KeyedLimiter::bounded(rule.name.clone(), rule.algorithm(), rule.quota(), BOUNDS)
    {
        return limiter;
    }
    KeyedLimiter::new(rule.name.clone(), rule.algorithm(), rule.quota())
}

/// A key is named once refused, or with less than half its burst left.
fn worth_naming(decision: &LimitDecision, quota: Quota) -> bool {
    !decision.is_admitted() || decision.remaining().saturating_mul(2) < quota.burst
}

/// What a per-address or per-user key stands for.
fn key_name(kind: KeyKind, subject: &Subject<'_>) -> String {
    match (kind, client_block(subject.ip)) {
        (KeyKind::User, _) => subject.user.map_or("", UserId::as_str).to_owned(),
        (_, IpAddr::V6(block)) => format!("{block}/64"),
        (_, ip) => ip.to_string(),
    }
}

/// What a shared rule's key is called in the store: the same on every node.
struct SharedKey([u8; 32]);

impl SharedKey {
    fn as_str(&self) -> &str {
        // Hex digits only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The first 128 bits of SHA-256 over a tag of the key kind and what it
/// counts, in hex. The fields are length-prefixed, so no two subjects
/// share an input.
fn shared_key(kind: KeyKind, subject: &Subject<'_>) -> SharedKey {
    let mut sha = Sha256::new();
    let mut field = |bytes: &[u8]| {
        sha.update((bytes.len() as u64).to_be_bytes());
        sha.update(bytes);
    };
    match kind {
        KeyKind::Global => field(b"global"),
        KeyKind::Ip => {
            field(b"ip");
            match client_block(subject.ip) {
                IpAddr::V4(ip) => field(&ip.octets()),
                IpAddr::V6(ip) => field(&ip.octets()),
            }
        }
        KeyKind::User => {
            field(b"user");
            field(subject.user.map_or("", UserId::as_str).as_bytes());
        }
        KeyKind::Route => {
            field(b"route");
            field(subject.method.as_str().as_bytes());
            field(subject.route.as_bytes());
        }
        KeyKind::Sale => {
            field(b"sale");
            field(subject.sale.unwrap_or_default().as_bytes());
        }
    }
    let digest = sha.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, byte) in digest.iter().take(16).enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    SharedKey(out)
}

/// The shared store of a node, with the timeout and breaker its calls go
/// through; `None` without one.
pub(crate) fn shared_store(
    store: Option<Arc<dyn RateStore>>,
    timeout: Duration,
) -> Option<SharedStore> {
    store.map(|store| SharedStore::new("rate-limit-store", store, timeout))
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
        assert!(limits.check(&subject(&alice, "s")).await.is_ok());
        assert!(limits.check(&subject(&alice, "s")).await.is_ok());
        let Err(Refused::Limited(refused)) = limits.check(&subject(&alice, "s")).await else {
            panic!("not refused");
        };
        assert_eq!(refused.rule, "per-user-purchase");
        assert!(limits.check(&subject(&bob, "s")).await.is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check(&subject(&alice, "s")).await.is_ok());
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
            assert!(limits.check(&subject(user, "hot")).await.is_ok());
        }
        assert!(limits.check(&subject(&users[3], "hot")).await.is_err());
        assert!(limits.check(&subject(&users[3], "other")).await.is_ok());
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_and_the_reason() {
        let mut rule = RateLimitRule::defaults(20).remove(0);
        let refused = |rule: &RateLimitRule| {
            let err = rule.validate().unwrap_err();
            (err.field, err.message)
        };
        rule.routes = vec!["purchase".into()];
        let (field, message) = refused(&rule);
        assert!(field == "routes" && message.contains("route"), "{message}");
        rule.routes = Vec::new();
        assert_eq!(refused(&rule).0, "routes");
        rule.routes = vec!["*".into()];
        rule.limit = 0;
        let (field, message) = refused(&rule);
        assert!(field == "limit" && message.contains("limit"), "{message}");
        rule.limit = 1;
        rule.period_ms = 0;
        assert_eq!(refused(&rule).0, "period_ms");
        rule.period_ms = 1000;
        rule.max_wait_ms = Some(5);
        let (field, message) = refused(&rule);
        assert!(field == "max_wait_ms" && message.contains("leaky_bucket"));
        rule.max_wait_ms = None;
        rule.backend = Some(BackendName::Local);
        rule.fallback = Some(FallbackName::FailOpen);
        assert_eq!(refused(&rule).0, "fallback");
    }

    #[test]
    fn a_set_is_refused_naming_its_bad_rule() {
        let rule = |name: &str| {
            let mut rule = RateLimitRule::defaults(20).remove(0);
            rule.name = name.into();
            rule
        };
        let known = ["/api/v1/sales/{id}/purchase"];
        let mut rules = vec![rule("a"), rule("b"), rule("c")];
        assert_eq!(validate_rules(&rules, Some(&known), false), Ok(()));
        rules[2].limit = 0;
        let err = validate_rules(&rules, Some(&known), false).unwrap_err();
        assert_eq!(err.path(), "rules[2].limit");
        rules[2] = rule("a");
        let err = validate_rules(&rules, Some(&known), false).unwrap_err();
        assert_eq!(err.path(), "rules[2].name");
        assert!(err.message.contains("rules[0]"), "{}", err.message);
        rules[2] = rule("c");
        rules[1].routes = vec!["GET /api/v1/nowhere".into()];
        let err = validate_rules(&rules, Some(&known), false).unwrap_err();
        assert_eq!(err.path(), "rules[1].routes");
        // Without the table of routes, any template passes.
        assert_eq!(validate_rules(&rules, None, false), Ok(()));
        rules[1] = rule("b");
        rules[1].backend = Some(BackendName::Shared);
        assert_eq!(
            validate_rules(&rules, Some(&known), false)
                .unwrap_err()
                .path(),
            "rules[1].backend"
        );
        assert_eq!(validate_rules(&rules, Some(&known), true), Ok(()));
        let many: Vec<_> = (0..=MAX_RULES).map(|i| rule(&format!("r{i}"))).collect();
        assert_eq!(
            validate_rules(&many, None, false).unwrap_err().path(),
            "rules"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_keeps_the_state_of_unchanged_rules_only() {
        let alice = UserId::parse("alice").unwrap();
        let limits = RateLimits::new(&RateLimitRule::defaults(1));
        assert!(limits.check(&subject(&alice, "s")).await.is_ok());
        assert!(limits.check(&subject(&alice, "s")).await.is_err());
        // Another rule added: alice's spent budget stays spent.
        let mut rules = RateLimitRule::defaults(1);
        rules.push(RateLimitRule {
            name: "hot".into(),
            key: KeyKind::Sale,
            ..RateLimitRule::defaults(100).remove(0)
        });
        let replaced = limits.replaced_by(&rules, None);
        assert_eq!(replaced.rules(), rules.as_slice());
        assert!(replaced.check(&subject(&alice, "s")).await.is_err());
        // The rule itself changed: a fresh budget under the new quota.
        let changed = replaced.replaced_by(&RateLimitRule::defaults(2), None);
        assert!(changed.check(&subject(&alice, "s")).await.is_ok());
        // The route that replaces rules is never limited by them.
        let mut everything = RateLimitRule::defaults(1).remove(0);
        everything.routes = vec!["*".into()];
        let strict = RateLimits::new(&[everything]);
        let admin = Subject {
            method: &Method::PUT,
            route: RULES_ROUTE,
            ..subject(&alice, "s")
        };
        for _ in 0..3 {
            assert!(strict.check(&admin).await.is_ok());
        }
    }

    /// A store that counts its calls and never answers in time.
    struct Hung(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl RateStore for Hung {
        async fn check(
            &self,
            _: &str,
            _: &str,
            _: Algorithm,
            _: Quota,
        ) -> Result<LimitDecision, stampede_flow::RateStoreError> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn local_rules_go_first_and_a_fail_closed_shared_rule_refuses_undecided() {
        let rules: Vec<RateLimitRule> = toml::from_str::<toml::Table>(
            r#"[[rules]]
               name = "shared"
               key = "global"
               limit = 100
               fallback = "fail_closed"
               [[rules]]
               name = "local"
               key = "user"
               limit = 1
               backend = "local""#,
        )
        .unwrap()["rules"]
            .clone()
            .try_into()
            .unwrap();
        let store = Arc::new(Hung(Default::default()));
        let limits = RateLimits::with_store(
            &rules,
            shared_store(Some(store.clone()), Duration::from_millis(50)),
        );
        assert!(limits.has_shared());
        let alice = UserId::parse("alice").unwrap();
        let Err(Refused::Undecided { rule }) = limits.check(&subject(&alice, "s")).await else {
            panic!("decided without the store");
        };
        assert_eq!(rule, "shared");
        // The local rule refuses before the store is asked.
        let Err(Refused::Limited(refusal)) = limits.check(&subject(&alice, "s")).await else {
            panic!("not limited");
        };
        assert_eq!(refusal.rule, "local");
        assert_eq!(store.0.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Without a store, the same rules are all local.
        assert!(!RateLimits::new(&rules).has_shared());
    }

    #[test]
    fn backend_and_fallback_read_from_toml() {
        let rule: RateLimitRule = toml::from_str(
            r#"name = "g"
               key = "global"
               limit = 50
               backend = "shared"
               fallback = "fail_closed""#,
        )
        .unwrap();
        rule.validate().unwrap();
        assert_eq!(rule.backend, Some(BackendName::Shared));
        assert_eq!(rule.fallback, Some(FallbackName::FailClosed));
    }

    #[test]
    fn shared_keys_are_the_same_everywhere_and_differ_by_kind() {
        let alice = UserId::parse("alice").unwrap();
        let one = shared_key(KeyKind::User, &subject(&alice, "s"));
        let two = shared_key(KeyKind::User, &subject(&alice, "s"));
        assert_eq!(one.as_str(), two.as_str());
        assert_eq!(one.as_str().len(), 32);
        assert!(one.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        // Fixed across processes and releases: a digest, not a seeded hash.
        assert_eq!(
            shared_key(KeyKind::Global, &subject(&alice, "s")).as_str(),
            shared_key(KeyKind::Global, &subject(&alice, "t")).as_str()
        );
        let sale = shared_key(KeyKind::Sale, &subject(&alice, "alice"));
        assert_ne!(sale.as_str(), one.as_str());
    }
}
