//! [`RedisRateStore`]: the shared rate-limit store of cluster mode
//! ([`RateStore`]), so that a rule's budget is the cluster's, whichever node
//! a request reaches.
//!
//! Each check is one atomic Lua script on one key,
//! `{<namespace>:rl:<rule>:<key digest>}` — one key per script, so the
//! layout is Redis Cluster-safe — that reads the key's state, decides as
//! `stampede_flow`'s rules do (crates/flow/src/limit/rules.rs), writes the
//! new state and sets its `PX` to when the state stops mattering, so idle
//! keys vanish on their own. All four algorithms are here: GCRA and the
//! leaky bucket are one script (a leaky bucket's queued request reserves
//! its slot in Redis, then sleeps on its node), the fixed and the sliding
//! window one each.
//!
//! Time is Redis's clock (`TIME`), so nodes whose clocks disagree still
//! share one budget; tests pass the instant instead ([`RedisRateStore::check_at`]).
//! The unit is the microsecond: Lua's numbers are doubles, exact up to
//! 2⁵³, and microseconds since 1970 stay far below that (nanoseconds would
//! not). Lengths derived from a quota are rounded up to the microsecond, as
//! the local rules round up to the nanosecond, so rounding only makes a
//! limit stricter; a rate above a million per second becomes one per
//! microsecond. The sliding window multiplies counts by its width: its
//! arithmetic is exact while `burst × window in µs` stays below 2⁵³ (a
//! burst of 10⁹ over a 1 s window), approximate by a rounding beyond.
//!
//! The rule set every node runs is one hash, `{<namespace>:rate-limit-rules}`:
//! `version`, bumped by each set stored, and `rules`, the set's text, both
//! written by one script; nodes poll `version` ([`RateStore::rules_version`]).
//!
//! Each state is a string that names its algorithm (`g:<tat>`,
//! `f:<start>:<count>`, `s:<start>:<previous>:<current>`): a rule whose
//! algorithm changes under the same name starts afresh instead of reading
//! another algorithm's state.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use stampede_flow::limit::shared::{RateStore, RateStoreError, StoredRules};
use stampede_flow::{Algorithm, LimitDecision, Quota};

use crate::keys::Namespace;

/// The scripts' shared start: `now` from the caller (tests pass it) or
/// else Redis's own clock in microseconds, so every node counts on one clock.
macro_rules! now_or_redis_time {
    () => {
        r"if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
"
    };
}

/// GCRA, and the leaky bucket when `max_wait > 0`.
///
/// KEYS: the state. ARGV: emission interval `t`, tolerance `tau`, `max_wait`
/// (µs), now (µs, or empty for `TIME`).
/// Replies: `{1, remaining, reset}` | `{2, delay, reset}` | `{0, retry_after, reset}`.
static GCRA: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(concat!(
        r"
local t, tau, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now = tonumber(ARGV[4])
",
        now_or_redis_time!(),
        r"local tat = now
local state = redis.call('GET', KEYS[1])
if state then
  local saved = tonumber(string.match(state, '^g:(%d+)$'))
  if saved and saved > now then tat = saved end
end
local allowed_at = tat - tau
if now >= allowed_at then
  tat = tat + t
  local remaining = math.floor((now + tau + t - tat) / t)
  local reset = tat + remaining * t - tau - now
  redis.call('SET', KEYS[1], string.format('g:%d', tat), 'PX', math.ceil((tat - now) / 1000))
  return {1, remaining, reset}
end
local delay = allowed_at - now
if delay <= max_wait then
  tat = tat + t
  redis.call('SET', KEYS[1], string.format('g:%d', tat), 'PX', math.ceil((tat - now) / 1000))
  return {2, delay, delay + t}
end
return {0, delay - max_wait, delay}
",
    ))
});

/// A fixed window from each key's first request.
///
/// KEYS: the state. ARGV: width (µs), cap, now (µs, or empty for `TIME`).
/// Replies: `{1, remaining, reset}` | `{0, retry_after, reset}`.
static FIXED: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(concat!(
        r"
local width, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
",
        now_or_redis_time!(),
        r"local start, count = now, 0
local state = redis.call('GET', KEYS[1])
if state then
  local s, c = string.match(state, '^f:(%d+):(%d+)$')
  s, c = tonumber(s), tonumber(c)
  if s and c and now < s + width then start, count = s, c end
end
if now < start then now = start end
local reset = start + width - now
if count < cap then
  count = count + 1
  redis.call('SET', KEYS[1], string.format('f:%d:%d', start, count), 'PX', math.ceil(reset / 1000))
  return {1, cap - count, reset}
end
return {0, reset, reset}
",
    ))
});

/// The sliding-window counter.
///
/// KEYS: the state. ARGV: width (µs), cap, now (µs, or empty for `TIME`).
/// Replies: `{1, remaining, reset}` | `{0, retry_after, reset}`.
static SLIDING: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(concat!(
        r"
local width, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = tonumber(ARGV[3])
",
        now_or_redis_time!(),
        r"local start, prev, cur = now, 0, 0
local state = redis.call('GET', KEYS[1])
if state then
  local s, p, c = string.match(state, '^s:(%d+):(%d+):(%d+)$')
  s, p, c = tonumber(s), tonumber(p), tonumber(c)
  if s and p and c then
    local elapsed = now - s
    if elapsed >= 2 * width or (elapsed >= width and c == 0) then
      -- idle: a fresh window
    elseif elapsed >= width then
      start, prev, cur = s + width, c, 0
    else
      start, prev, cur = s, p, c
    end
  end
end
local elapsed = math.max(0, now - start)
local function fits(c, extra)
  return (c + extra) * width + prev * (width - elapsed) <= cap * width
end
local function room(c)
  local total = math.floor(math.max(0, cap * width - prev * (width - elapsed)) / width)
  return math.max(0, total - c)
end
local function until_fits(c, extra)
  local spare = cap - (c + extra)
  if spare >= 0 then
    local from = 0
    if prev > 0 then from = math.max(0, width - math.floor(spare * width / prev)) end
    local at = math.max(from, elapsed)
    if at < width then return at - elapsed end
  end
  local to_next = width - elapsed
  if c == 0 then return to_next end
  local rest = math.max(0, cap - extra) * width
  return to_next + math.max(0, width - math.floor(rest / c))
end
if fits(cur, 1) then
  cur = cur + 1
  local remaining = room(cur)
  local reset = until_fits(cur, remaining + 1)
  redis.call('SET', KEYS[1], string.format('s:%d:%d:%d', start, prev, cur),
    'PX', math.ceil((start + 2 * width - now) / 1000))
  return {1, remaining, reset}
end
local retry = until_fits(cur, 1)
return {0, retry, retry}
",
    ))
});

/// Lengths above this are taken as this (about 142 years in µs), so sums in
/// the scripts stay exact in a double.
const MAX_MICROS: u64 = 1 << 52;

/// Connection settings of the rate-limit store.
#[derive(Debug, Clone)]
pub struct RedisRateSettings {
    /// Each command's answer must arrive within this (the limiter gives up
    /// sooner, after its own timeout).
    pub response_timeout: Duration,
    /// Connecting (and each reconnect) must succeed within this.
    pub connect_timeout: Duration,
    /// Reconnect attempts before a call fails.
    pub reconnect_retries: usize,
}

impl Default for RedisRateSettings {
    fn default() -> Self {
        Self {
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            reconnect_retries: 1,
        }
    }
}

/// Rate-limit state in Redis. Its own multiplexed connection, apart from the
/// stock ledger's, so a crowd's checks never queue behind purchases (and
/// the other way round); connected lazily, so a node starts — and falls
/// back — while Redis is away.
pub struct RedisRateStore {
    con: ConnectionManager,
    ns: Namespace,
}

impl RedisRateStore {
    /// A store on the Redis at `url` with every key under `namespace` (1 to
    /// 64 of `[A-Za-z0-9._-]`). Does not connect yet: the first check does.
    pub fn new(
        url: &str,
        namespace: &str,
        settings: &RedisRateSettings,
    ) -> Result<Self, RateStoreError> {
        let ns = Namespace::parse(namespace).map_err(|e| RateStoreError(e.to_string()))?;
        let client = redis::Client::open(url)
            .map_err(|e| RateStoreError(format!("redis url is not valid: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            .set_number_of_retries(settings.reconnect_retries);
        let con = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RateStoreError(format!("redis connection: {e}")))?;
        Ok(Self { con, ns })
    }

    /// The key holding `key`'s state under `rule`.
    pub fn key(&self, rule: &str, key: &str) -> String {
        format!("{{{}:rl:{rule}:{key}}}", self.ns.as_str())
    }

    /// [`RateStore::check`] at `now_micros` (µs since 1970) instead of
    /// Redis's clock: for tests, which then need no sleeping.
    pub async fn check_at(
        &self,
        rule: &str,
        key: &str,
        algorithm: Algorithm,
        quota: Quota,
        now_micros: u64,
    ) -> Result<LimitDecision, RateStoreError> {
        self.run(rule, key, algorithm, quota, Some(now_micros))
            .await
    }

    async fn run(
        &self,
        rule: &str,
        key: &str,
        algorithm: Algorithm,
        quota: Quota,
        now: Option<u64>,
    ) -> Result<LimitDecision, RateStoreError> {
        let quota = Quota {
            limit: quota.limit.max(1),
            burst: quota.burst.max(1),
            period: quota.period,
        };
        let now = now.map(|n| n.to_string()).unwrap_or_default();
        let key = self.key(rule, key);
        let invocation = match algorithm {
            Algorithm::Gcra | Algorithm::LeakyBucket { .. } => {
                let max_wait = match algorithm {
                    Algorithm::LeakyBucket { max_wait } => micros_floor(max_wait),
                    _ => 0,
                };
                let t = interval(quota);
                let tau = t.saturating_mul(u64::from(quota.burst - 1)).min(MAX_MICROS);
                let mut invocation = GCRA.key(&key);
                invocation.arg(t).arg(tau).arg(max_wait).arg(&now);
                invocation
            }
            Algorithm::FixedWindow | Algorithm::SlidingWindow => {
                let script = match algorithm {
                    Algorithm::FixedWindow => &*FIXED,
                    _ => &*SLIDING,
                };
                let mut invocation = script.key(&key);
                invocation.arg(width(quota)).arg(quota.burst).arg(&now);
                invocation
            }
        };
        let reply: Vec<i64> = invocation
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| RateStoreError(format!("rate limit script: {e}")))?;
        decision(&reply).ok_or_else(|| RateStoreError(format!("unreadable reply {reply:?}")))
    }
}

/// Stores a rule set: bumps the version and writes the text, atomically.
///
/// KEYS: the rule set's hash. ARGV: the text. Replies: the new version.
static STORE_RULES: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'rules', ARGV[1])
return version
",
    )
});

impl RedisRateStore {
    /// The hash holding the rule set every node runs (`version`, `rules`).
    /// Rule state keys are `…:rl:…`, so no rule's name reaches this one.
    pub fn rules_key(&self) -> String {
        format!("{{{}:rate-limit-rules}}", self.ns.as_str())
    }
}

fn rules_failed(what: &str, err: &redis::RedisError) -> RateStoreError {
    RateStoreError(format!("{what}: {err}"))
}

#[async_trait]
impl RateStore for RedisRateStore {
    async fn check(
        &self,
        rule: &str,
        key: &str,
        algorithm: Algorithm,
        quota: Quota,
    ) -> Result<LimitDecision, RateStoreError> {
        self.run(rule, key, algorithm, quota, None).await
    }

    async fn rules_version(&self) -> Result<u64, RateStoreError> {
        let version: Option<u64> = redis::cmd("HGET")
            .arg(self.rules_key())
            .arg("version")
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| rules_failed("reading the rule set's version", &e))?;
        Ok(version.unwrap_or(0))
    }

    async fn load_rules(&self) -> Result<Option<StoredRules>, RateStoreError> {
        let (version, text): (Option<u64>, Option<String>) = redis::cmd("HMGET")
            .arg(self.rules_key())
            .arg("version")
            .arg("rules")
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| rules_failed("reading the rule set", &e))?;
        Ok(match (version, text) {
            (Some(version), Some(text)) => Some(StoredRules { version, text }),
            _ => None,
        })
    }

    async fn store_rules(&self, text: &str) -> Result<u64, RateStoreError> {
        STORE_RULES
            .key(self.rules_key())
            .arg(text)
            .invoke_async(&mut self.con.clone())
            .await
            .map_err(|e| rules_failed("storing the rule set", &e))
    }
}

/// A script's reply as a decision.
fn decision(reply: &[i64]) -> Option<LimitDecision> {
    let &[code, a, b] = reply else {
        return None;
    };
    let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    match code {
        1 => Some(LimitDecision::Allow {
            remaining: u32::try_from(a).unwrap_or(u32::MAX),
            reset: micros(b),
        }),
        2 => Some(LimitDecision::Wait {
            delay: micros(a),
            reset: micros(b),
        }),
        0 => Some(LimitDecision::Deny {
            retry_after: micros(a),
            reset: micros(b),
        }),
        _ => None,
    }
}

/// GCRA's emission interval, `period / limit`, rounded up; at least 1 µs.
fn interval(quota: Quota) -> u64 {
    div_ceil(quota.period.as_nanos(), u128::from(quota.limit) * 1000)
}

/// A window's width, `period · burst / limit`, rounded up; at least 1 µs.
fn width(quota: Quota) -> u64 {
    div_ceil(
        quota.period.as_nanos() * u128::from(quota.burst),
        u128::from(quota.limit) * 1000,
    )
}

fn div_ceil(numerator: u128, denominator: u128) -> u64 {
    let value = numerator.div_ceil(denominator.max(1));
    u64::try_from(value)
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS)
}

fn micros_floor(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(MAX_MICROS)
        .min(MAX_MICROS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_rounded_up_to_the_microsecond() {
        assert_eq!(interval(Quota::per_second(50)), 20_000);
        assert_eq!(interval(Quota::per_second(3)), 333_334);
        assert_eq!(interval(Quota::per_second(10_000_000)), 1);
        assert_eq!(width(Quota::per_second(50).with_burst(10)), 200_000);
        assert_eq!(width(Quota::new(3, Duration::from_secs(1))), 1_000_000);
    }

    #[test]
    fn replies_map_to_decisions() {
        assert_eq!(
            decision(&[1, 4, 1500]),
            Some(LimitDecision::Allow {
                remaining: 4,
                reset: Duration::from_micros(1500)
            })
        );
        assert!(matches!(
            decision(&[2, 10, 20]),
            Some(LimitDecision::Wait { .. })
        ));
        assert!(matches!(
            decision(&[0, 10, 20]),
            Some(LimitDecision::Deny { .. })
        ));
        assert_eq!(decision(&[9, 0, 0]), None);
        assert_eq!(decision(&[1]), None);
    }
}
