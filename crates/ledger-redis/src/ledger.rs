//! [`RedisLedger`]: the [`StockLedger`] port on Redis, deciding as the memory
//! ledger does (crates/inprocess/src/ledger.rs), one script per decision.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use metrics::{counter, histogram};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError};
use stampede_app::ports::ledger::WaitFor;
use stampede_app::ports::{
    Attempt, Decision, KeyRecord, LedgerError, Reservation, SaleSnapshot, Settlement, StockLedger,
};
use stampede_domain::catalog::Sale;
use stampede_domain::idempotency::{Answer, Fingerprint, Remembered};
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::{Refusal, SaleTerms, StockBook};
use stampede_domain::time::Timestamp;
use stampede_flow::breaker::{BreakerConfig, BreakerError, CircuitBreaker};
use stampede_flow::bulkhead::Bulkhead;
use tokio::time::Instant;

use crate::keys::{self, Namespace};
use crate::scripts;

/// Tuning of the Redis ledger.
#[derive(Debug, Clone)]
pub struct RedisLedgerSettings {
    /// Answers (won and refused keys) are remembered at least this long, as
    /// Redis TTLs (docs/api.md §4 promises 24 hours).
    pub key_retention: Duration,
    /// A repeat of a key being decided polls for the decision: first after
    /// this, then at twice the pause each time, up to 20 ms.
    pub wait_poll: Duration,
    /// …and gives up polling after this; the caller then decides again (and
    /// gives up itself after a few rounds).
    pub wait_bound: Duration,
    /// Each command's answer must arrive within this, or the ledger is
    /// unavailable for that call.
    pub response_timeout: Duration,
    /// Connecting (and each reconnect) must succeed within this.
    pub connect_timeout: Duration,
    /// Reconnect attempts of the connection manager before a call fails.
    pub reconnect_retries: usize,
    /// Holdings written per script while restoring a sale, so a sale with many
    /// buyers never blocks Redis for long.
    pub restore_chunk: usize,
    /// A restore claimed by a node that has not finished it within this is
    /// taken over (that node died mid-restore).
    pub restore_stale: Duration,
    /// How long a restore waits for another node's restore of the same sale.
    pub restore_wait: Duration,
}

impl Default for RedisLedgerSettings {
    fn default() -> Self {
        Self {
            key_retention: Duration::from_secs(24 * 3600),
            wait_poll: Duration::from_millis(2),
            wait_bound: Duration::from_millis(500),
            response_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            reconnect_retries: 2,
            restore_chunk: 1000,
            restore_stale: Duration::from_secs(10),
            restore_wait: Duration::from_secs(15),
        }
    }
}

/// The cluster-mode stock ledger. Cheap to share behind an `Arc`; the
/// connection manager multiplexes every call over one connection and
/// reconnects after failures.
pub struct RedisLedger {
    con: ConnectionManager,
    ns: Namespace,
    settings: RedisLedgerSettings,
    /// `key_retention` in milliseconds, as scripts take it.
    retention_ms: u64,
    /// Sales this node has seen loaded (opened, restored, or decided on). A
    /// missing hash for one of these is a lost sale, never an unknown one, so
    /// it is not reopened with all its units. Only grows.
    seen: RwLock<HashSet<SaleId>>,
    /// Names this node's restore claims.
    node: String,
    guard: Guard,
}

/// What stands between callers and Redis: a breaker that opens when Redis
/// keeps failing, so purchases are refused with 503 at once instead of each
/// waiting out the response timeout; and a concurrency budget, so a slow
/// Redis holds at most `IN_FLIGHT` calls and the rest are refused at once.
struct Guard {
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
}

/// Ledger calls in flight at once on one node: far above what a healthy
/// Redis holds (one call per purchase being decided), reached only when it
/// stalls.
const IN_FLIGHT: u32 = 1024;

impl RedisLedger {
    /// Connects to the Redis at `url` (`redis://[:password@]host:port[/db]`) and
    /// keeps every key under `namespace` (1 to 64 of `[A-Za-z0-9._-]`), so
    /// deployments and tests sharing one Redis never meet. Needs Redis ≥ 7.0.
    pub async fn connect(
        url: &str,
        namespace: &str,
        settings: RedisLedgerSettings,
    ) -> Result<Self, LedgerError> {
        let ns = Namespace::parse(namespace)?;
        let client = redis::Client::open(url)
            .map_err(|e| LedgerError::unavailable_because("redis url is not valid", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.response_timeout))
            .set_number_of_retries(settings.reconnect_retries);
        let mut con = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| unavailable("connecting", e))?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await
            .map_err(|e| unavailable("reading the server version", e))?;
        check_version(&info)?;
        let retention_ms = u64::try_from(settings.key_retention.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Self {
            con,
            ns,
            settings,
            retention_ms,
            seen: RwLock::new(HashSet::new()),
            node: format!("{:016x}", fastrand::u64(..)),
            guard: Guard {
                breaker: CircuitBreaker::new("redis_ledger", BreakerConfig::default()),
                bulkhead: Bulkhead::new("redis_ledger", IN_FLIGHT, Duration::ZERO),
            },
        })
    }

    pub fn namespace(&self) -> &str {
        self.ns.as_str()
    }

    /// Sales this node has seen whose state is gone from Redis (flushed,
    /// restarted empty, deleted). A reconciliation job reads their snapshots
    /// from the store and passes them to [`StockLedger::restore`], which loads
    /// only sales that are missing; until then they answer `Unavailable`.
    pub async fn lost_sales(&self) -> Result<Vec<SaleId>, LedgerError> {
        let seen: Vec<SaleId> = self.read_seen().iter().copied().collect();
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sale in &seen {
            pipe.cmd("HEXISTS").arg(self.ns.sale(*sale)).arg("loaded");
        }
        let loaded: Vec<bool> = pipe
            .query_async(&mut self.con.clone())
            .guarded(&self.guard, "checking sales")
            .await?;
        Ok(seen
            .into_iter()
            .zip(loaded)
            .filter(|(_, loaded)| !loaded)
            .map(|(sale, _)| sale)
            .collect())
    }

    /// Sales with a hash in this namespace (`SCAN ... TYPE hash`).
    async fn sales_in_redis(&self) -> Result<Vec<SaleId>, LedgerError> {
        let mut con = self.con.clone();
        let prefix = format!("{{{}:sale:", self.ns.as_str());
        let mut cursor = "0".to_owned();
        let mut sales = Vec::new();
        loop {
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("TYPE")
                .arg("hash")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .guarded(&self.guard, "listing sales")
                .await?;
            sales.extend(keys.iter().filter_map(|key| {
                key.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix('}'))
                    .and_then(SaleId::parse)
            }));
            if next == "0" {
                return Ok(sales);
            }
            cursor = next;
        }
    }

    /// The reservations of `sale` not settled yet, oldest first.
    pub async fn reservations(&self, sale: SaleId) -> Result<Vec<Reservation>, LedgerError> {
        let hash = self.ns.sale(sale);
        let mut con = self.con.clone();
        let mut cursor = "0".to_owned();
        let mut found = Vec::new();
        loop {
            let (next, items): (String, Vec<String>) = redis::cmd("HSCAN")
                .arg(&hash)
                .arg(&cursor)
                .arg("MATCH")
                .arg("r:*")
                .arg("COUNT")
                .arg(500)
                .query_async(&mut con)
                .guarded(&self.guard, "listing reservations")
                .await?;
            for pair in items.chunks_exact(2) {
                let parsed = pair[0]
                    .strip_prefix("r:")
                    .and_then(keys::unscope)
                    .zip(parse_flight(&pair[1]));
                match parsed {
                    Some(((user, key), (reserved_at, quantity))) => found.push(Reservation {
                        sale_id: sale,
                        user,
                        key,
                        quantity,
                        reserved_at,
                    }),
                    None => {
                        return Err(LedgerError::inconsistent(format!(
                            "sale {sale}: unreadable reservation {:?}",
                            pair[0]
                        )));
                    }
                }
            }
            if next == "0" {
                break;
            }
            cursor = next;
        }
        found.sort_by_key(|r| r.reserved_at);
        Ok(found)
    }

    fn read_seen(&self) -> std::sync::RwLockReadGuard<'_, HashSet<SaleId>> {
        self.seen.read().unwrap_or_else(|p| p.into_inner())
    }

    fn has_seen(&self, sale: SaleId) -> bool {
        self.read_seen().contains(&sale)
    }

    fn see(&self, sale: SaleId) {
        if !self.has_seen(sale) {
            self.seen
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sale);
        }
    }

    /// What a missing sale means: lost (this node saw it, or a part of it is
    /// left) or unknown.
    fn missing(&self, sale: SaleId, hash_exists: bool) -> Option<LedgerError> {
        if hash_exists || self.has_seen(sale) {
            counter!("stampede_ledger_lost_sale_total").increment(1);
            tracing::error!(sale_id = %sale, "the stock ledger lost a sale; it must be rebuilt from the store");
            Some(rebuilding(sale))
        } else {
            None
        }
    }

    /// Runs a script, timing it.
    async fn run<T: FromRedisValue>(
        &self,
        name: &'static str,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LedgerError> {
        let started = Instant::now();
        let result = invocation
            .invoke_async(&mut self.con.clone())
            .guarded(&self.guard, name)
            .await;
        histogram!("stampede_ledger_script_seconds", "script" => name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Runs `script` as `evalsha` (from [`evalsha`]), loading it if Redis lost
    /// it, timed as `name`.
    async fn run_alone<T: FromRedisValue>(
        &self,
        name: &'static str,
        script: &redis::Script,
        evalsha: redis::Cmd,
    ) -> Result<T, LedgerError> {
        let started = Instant::now();
        let mut con = self.con.clone();
        let result = async {
            match evalsha.query_async(&mut con).await {
                Err(err) if is_noscript(&err) => load_and_run(con, script, &evalsha).await,
                other => other,
            }
        }
        .guarded(&self.guard, name)
        .await;
        histogram!("stampede_ledger_script_seconds", "script" => name)
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Runs `command`, then `script` as `evalsha` (from [`evalsha`]), in one
    /// round trip, timing both as `name`. The command's error fails the call;
    /// the script's is returned apart, as the command took effect. A script
    /// Redis does not hold (restarted, flushed) is loaded and run again alone.
    async fn run_after<C: FromRedisValue, T: FromRedisValue>(
        &self,
        name: &'static str,
        command: redis::Cmd,
        script: &redis::Script,
        evalsha: redis::Cmd,
    ) -> Result<(C, Result<T, LedgerError>), LedgerError> {
        let started = Instant::now();
        let mut pipe = redis::pipe();
        pipe.add_command(command).add_command(evalsha);
        let (first, second): (redis::RedisResult<C>, redis::RedisResult<T>) = pipe
            .ignore_errors()
            .query_async(&mut self.con.clone())
            .guarded(&self.guard, name)
            .await?;
        let first = first.map_err(|err| unavailable(name, err))?;
        let second = match second {
            // The pipeline's second command is the script's.
            Err(err) if is_noscript(&err) => match pipe.cmd_iter().nth(1) {
                Some(evalsha) => {
                    load_and_run(self.con.clone(), script, evalsha)
                        .guarded(&self.guard, name)
                        .await
                }
                None => Err(unavailable(name, err)),
            },
            other => other.map_err(|err| unavailable(name, err)),
        };
        histogram!("stampede_ledger_script_seconds", "script" => name)
            .record(started.elapsed().as_secs_f64());
        Ok((first, second))
    }

    /// A decision made for a key bound to another sale is a mismatch, and what
    /// it wrote is undone: a reservation is given back, a fresh refusal
    /// forgotten (the key's answers live in its own sale).
    async fn undo_mismatched(
        &self,
        attempt: &Attempt,
        record: &str,
        reply: Result<Vec<String>, LedgerError>,
    ) -> Result<Decision, LedgerError> {
        match reply?.first().map(String::as_str) {
            Some("reserved") => self.settle(attempt, Settlement::Abandoned).await?,
            Some("refused") => {
                redis::cmd("DEL")
                    .arg(record)
                    .query_async::<()>(&mut self.con.clone())
                    .guarded(&self.guard, "forgetting a mismatched refusal")
                    .await?;
            }
            _ => {}
        }
        Ok(Decision::Mismatch)
    }

    /// Forgets which sale a key belongs to, if it is still `sale`.
    async fn unbind(&self, scoped: &str, sale: SaleId) -> Result<(), LedgerError> {
        let mut unbind = scripts::UNBIND.prepare_invoke();
        unbind.key(self.ns.binding(scoped)).arg(sale.to_string());
        self.run::<i64>("unbind", &unbind).await.map(drop)
    }

    /// Binds a key to `sale`, overwriting, for `key_retention`.
    async fn bind(&self, scoped: &str, sale: SaleId) -> Result<(), LedgerError> {
        self.bind_command(scoped, sale)
            .query_async::<()>(&mut self.con.clone())
            .guarded(&self.guard, "binding a key")
            .await
    }

    /// The command of [`bind`](Self::bind), to send alone or in a pipeline
    /// (or, with `NX GET`, to bind a key not bound yet).
    fn bind_command(&self, scoped: &str, sale: SaleId) -> redis::Cmd {
        let mut bind = redis::cmd("SET");
        bind.arg(self.ns.binding(scoped))
            .arg(sale.to_string())
            .arg("PX")
            .arg(self.retention_ms);
        bind
    }

    /// A future that ends once the reservation `field` of `hash` is settled,
    /// or after `wait_bound`.
    fn wait_for(&self, hash: String, field: String) -> WaitFor {
        let mut con = self.con.clone();
        let mut pause = self.settings.wait_poll.max(Duration::from_millis(1));
        let deadline = Instant::now() + self.settings.wait_bound;
        Box::pin(async move {
            loop {
                tokio::time::sleep(pause).await;
                let pending: Result<bool, RedisError> = redis::cmd("HEXISTS")
                    .arg(&hash)
                    .arg(&field)
                    .query_async(&mut con)
                    .await;
                // An error also ends the wait: deciding again reports it.
                if !matches!(pending, Ok(true)) || Instant::now() >= deadline {
                    return;
                }
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        })
    }

    /// Loads one sale from its snapshot unless it is live (or another node
    /// loads it meanwhile). Never touches a live sale.
    async fn restore_sale(&self, snapshot: &SaleSnapshot) -> Result<(), LedgerError> {
        let sale = &snapshot.sale;
        let hash = self.ns.sale(sale.id);
        let terms = SaleTerms::of(sale);
        let deadline = Instant::now() + self.settings.restore_wait;
        let stale_ms = u64::try_from(self.settings.restore_stale.as_millis()).unwrap_or(u64::MAX);
        loop {
            let mut begin = scripts::RESTORE_BEGIN.prepare_invoke();
            begin
                .key(&hash)
                .arg(&self.node)
                .arg(stale_ms)
                .arg(terms.quantity)
                .arg(terms.per_user_limit)
                .arg(terms.starts_at.as_millis())
                .arg(ends_arg(&terms))
                .arg(terms.state.as_str())
                .arg(terms.version);
            let reply: Vec<String> = self.run("restore_begin", &begin).await?;
            match reply.first().map(String::as_str) {
                Some("live") => return Ok(()),
                Some("claimed") => {
                    let token = reply.get(1).cloned().unwrap_or_default();
                    if self.write_restore(&hash, &token, snapshot).await? {
                        tracing::info!(sale_id = %sale.id, remaining = snapshot.remaining, "restored a sale into the stock ledger");
                        return Ok(());
                    }
                }
                Some("busy") => {}
                _ => return Err(bad_reply("restore_begin", &reply)),
            }
            if Instant::now() >= deadline {
                return Err(LedgerError::unavailable(format!(
                    "sale {} is being rebuilt by another node",
                    sale.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes the holdings and what is left under a restore claim; `false`
    /// if the claim was taken over meanwhile.
    async fn write_restore(
        &self,
        hash: &str,
        token: &str,
        snapshot: &SaleSnapshot,
    ) -> Result<bool, LedgerError> {
        let holdings: Vec<&(UserId, u32)> =
            snapshot.holdings.iter().filter(|(_, n)| *n > 0).collect();
        for chunk in holdings.chunks(self.settings.restore_chunk.max(1)) {
            let mut write = scripts::RESTORE_HOLDINGS.prepare_invoke();
            write.key(hash).arg(token);
            for (user, units) in chunk {
                write.arg(user.as_str()).arg(*units);
            }
            if self.run::<i64>("restore_holdings", &write).await? == 0 {
                return Ok(false);
            }
        }
        let mut commit = scripts::RESTORE_COMMIT.prepare_invoke();
        commit.key(hash).arg(token).arg(snapshot.remaining);
        Ok(self.run::<i64>("restore_commit", &commit).await? == 1)
    }
}

#[async_trait]
impl StockLedger for RedisLedger {
    async fn reservations_before(
        &self,
        before: Timestamp,
    ) -> Result<Vec<Reservation>, LedgerError> {
        let mut stale = Vec::new();
        for sale in self.sales_in_redis().await? {
            stale.extend(
                self.reservations(sale)
                    .await?
                    .into_iter()
                    .filter(|r| r.reserved_at < before),
            );
        }
        Ok(stale)
    }

    async fn open_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        let terms = SaleTerms::of(sale);
        let mut open = scripts::OPEN.prepare_invoke();
        open.key(self.ns.sale(sale.id))
            .arg(terms.quantity)
            .arg(terms.per_user_limit)
            .arg(terms.starts_at.as_millis())
            .arg(ends_arg(&terms))
            .arg(if self.has_seen(sale.id) { "0" } else { "1" })
            .arg(terms.state.as_str())
            .arg(terms.version);
        let reply: String = self.run("open", &open).await?;
        match reply.as_str() {
            "opened" | "live" => {
                self.see(sale.id);
                Ok(())
            }
            "loading" | "missing" => Err(rebuilding(sale.id)),
            _ => Err(bad_reply("open", &[reply])),
        }
    }

    async fn amend_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        let terms = SaleTerms::of(sale);
        let mut amend = scripts::AMEND.prepare_invoke();
        amend
            .key(self.ns.sale(sale.id))
            .arg(terms.version)
            .arg(terms.quantity)
            .arg(terms.per_user_limit)
            .arg(terms.starts_at.as_millis())
            .arg(ends_arg(&terms))
            .arg(terms.state.as_str());
        let reply: Vec<String> = self.run("amend", &amend).await?;
        match (
            reply.first().map(String::as_str),
            reply.get(1).map(String::as_str),
        ) {
            (Some("amended" | "stale"), _) => {
                self.see(sale.id);
                Ok(())
            }
            // Being restored, perhaps from a snapshot older than this
            // version: the caller tries again once it is loaded.
            (Some("loading"), _) => Err(rebuilding(sale.id)),
            // Lost, likewise; never known: it gets the store's terms when
            // it is opened or restored.
            (Some("missing"), exists) => match self.missing(sale.id, exists == Some("1")) {
                Some(lost) => Err(lost),
                None => Ok(()),
            },
            (Some("inconsistent"), Some(detail)) => Err(LedgerError::inconsistent(format!(
                "sale {}: {detail}",
                sale.id
            ))),
            _ => Err(bad_reply("amend", &reply)),
        }
    }

    async fn decide(&self, attempt: &Attempt) -> Result<Decision, LedgerError> {
        let sale = attempt.fingerprint.sale_id;
        let quantity = attempt.fingerprint.quantity;
        let scoped = keys::scoped(&attempt.user, &attempt.key);
        let sale_text = sale.to_string();
        // A key belongs to the first sale it was used on, as in the memory
        // ledger, where keys are scoped by user only: it is bound to its sale
        // (its answers live in that sale's slot, out of reach of other sales).
        // The binding and the decision travel in one round trip, the binding
        // first; the decision's slot is the sale's, so it cannot read the
        // binding, and a key bound to another sale is undone below.
        let mut bind = self.bind_command(&scoped, sale);
        bind.arg("NX").arg("GET");
        let hash = self.ns.sale(sale);
        let record = self.ns.record(sale, &scoped);
        let mut decide = evalsha(&scripts::DECIDE, 2);
        decide
            .arg(&hash)
            .arg(&record)
            .arg(attempt.user.as_str())
            .arg(&scoped)
            .arg(quantity.get())
            .arg(attempt.now.as_millis())
            .arg(self.retention_ms);
        let (bound, reply) = self
            .run_after::<Option<String>, Vec<String>>("decide", bind, &scripts::DECIDE, decide)
            .await?;
        let bound_here = match bound {
            Some(other) if other != sale_text => {
                return self.undo_mismatched(attempt, &record, reply).await;
            }
            Some(_) => false,
            None => true,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(err) => {
                if bound_here {
                    // Best effort: an answerless binding only expires later.
                    let _ = self.unbind(&scoped, sale).await;
                }
                return Err(err);
            }
        };
        let detail = reply.get(1).map(String::as_str);
        let outcome = match (reply.first().map(String::as_str), detail) {
            (Some("reserved"), _) => {
                self.see(sale);
                return Ok(Decision::Reserved);
            }
            (Some("refused"), Some(slug)) => {
                self.see(sale);
                let refusal = parse_refusal(slug).ok_or_else(|| bad_reply("decide", &reply))?;
                if refusal.is_remembered() {
                    return Ok(Decision::Refused(refusal));
                }
                // A pause: the script remembered nothing, so the key is
                // unbound below and a retry is decided afresh.
                Ok(Decision::Refused(refusal))
            }
            (Some("flight"), Some(flight)) => {
                let (_, held) = parse_flight(flight).ok_or_else(|| bad_reply("decide", &reply))?;
                if held != quantity {
                    return Ok(Decision::Mismatch);
                }
                return Ok(Decision::Wait(self.wait_for(hash, format!("r:{scoped}"))));
            }
            (Some("known"), Some(record)) => {
                let remembered =
                    parse_record(sale, record).ok_or_else(|| bad_reply("decide", &reply))?;
                return Ok(match remembered.replay(&attempt.fingerprint) {
                    Ok(answer) => Decision::Replay(answer),
                    Err(_) => Decision::Mismatch,
                });
            }
            (Some("loading"), _) => Err(rebuilding(sale)),
            (Some("missing"), exists) => match self.missing(sale, exists == Some("1")) {
                Some(lost) => Err(lost),
                None => Ok(Decision::UnknownSale),
            },
            _ => Err(bad_reply("decide", &reply)),
        };
        // Nothing is remembered under the key: it binds it to nothing either.
        if bound_here {
            let _ = self.unbind(&scoped, sale).await;
        }
        outcome
    }

    async fn settle(&self, attempt: &Attempt, settlement: Settlement) -> Result<(), LedgerError> {
        let sale = attempt.fingerprint.sale_id;
        let scoped = keys::scoped(&attempt.user, &attempt.key);
        let (give_back, record) = match settlement {
            Settlement::Won(order) => (
                false,
                encode_record(attempt.fingerprint.quantity, Answer::Won(order)),
            ),
            Settlement::Abandoned => {
                // Unbound first: a repeat woken by the settle binds it afresh.
                self.unbind(&scoped, sale).await?;
                (true, String::new())
            }
            // An answer that is not remembered (a pause): as abandoned.
            Settlement::Replaced(Remembered {
                answer: Answer::Refused(refusal),
                ..
            }) if !refusal.is_remembered() => {
                self.unbind(&scoped, sale).await?;
                (true, String::new())
            }
            Settlement::Replaced(remembered) if remembered.fingerprint.sale_id == sale => (
                true,
                encode_record(remembered.fingerprint.quantity, remembered.answer),
            ),
            Settlement::Replaced(remembered) => {
                // The store's answer belongs to another sale: remember it there
                // and move the binding before the reservation ends, so a
                // repeat woken by the settle finds the key taken.
                let other = remembered.fingerprint.sale_id;
                redis::cmd("SET")
                    .arg(self.ns.record(other, &scoped))
                    .arg(encode_record(
                        remembered.fingerprint.quantity,
                        remembered.answer,
                    ))
                    .arg("PX")
                    .arg(self.retention_ms)
                    .query_async::<()>(&mut self.con.clone())
                    .guarded(&self.guard, "remembering an answer")
                    .await?;
                self.bind(&scoped, other).await?;
                (true, String::new())
            }
        };
        let mut settle = evalsha(&scripts::SETTLE, 2);
        settle
            .arg(self.ns.sale(sale))
            .arg(self.ns.record(sale, &scoped))
            .arg(attempt.user.as_str())
            .arg(&scoped)
            .arg(if give_back { "1" } else { "0" })
            .arg(&record)
            .arg(self.retention_ms);
        let reply: Vec<String> = if record.is_empty() {
            self.run_alone("settle", &scripts::SETTLE, settle).await?
        } else {
            // The answer is remembered in this sale: keep the key bound to it
            // as long (the binding already names this sale, so renewing it
            // first changes nothing anyone sees).
            let bind = self.bind_command(&scoped, sale);
            let ((), reply) = self
                .run_after("settle", bind, &scripts::SETTLE, settle)
                .await?;
            reply?
        };
        match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("settled"), _) => Ok(()),
            (Some("none"), _) => {
                if give_back {
                    // Settled before, or the sale was rebuilt from the store
                    // since (which counted no uncommitted units): nothing to
                    // give back.
                    tracing::warn!(sale_id = %sale, "no reservation to give back");
                }
                Ok(())
            }
            (Some("inconsistent"), Some(detail)) => {
                Err(LedgerError::inconsistent(format!("sale {sale}: {detail}")))
            }
            _ => Err(bad_reply("settle", &reply)),
        }
    }

    async fn release(&self, sale: SaleId, user: &UserId, quantity: u32) -> Result<(), LedgerError> {
        let mut release = scripts::RELEASE.prepare_invoke();
        release
            .key(self.ns.sale(sale))
            .arg(user.as_str())
            .arg(quantity);
        let reply: Vec<String> = self.run("release", &release).await?;
        match (
            reply.first().map(String::as_str),
            reply.get(1).map(String::as_str),
        ) {
            (Some("ok"), _) => Ok(()),
            (Some("loading"), _) => Err(rebuilding(sale)),
            (Some("missing"), exists) => {
                Err(self.missing(sale, exists == Some("1")).unwrap_or_else(|| {
                    LedgerError::inconsistent(format!("release on unknown sale {sale}"))
                }))
            }
            (Some("inconsistent"), Some(detail)) => {
                Err(LedgerError::inconsistent(format!("sale {sale}: {detail}")))
            }
            _ => Err(bad_reply("release", &reply)),
        }
    }

    async fn remaining(&self, sale: SaleId) -> Result<Option<u64>, LedgerError> {
        let (loaded, remaining, loading): (Option<String>, Option<i64>, Option<String>) =
            redis::cmd("HMGET")
                .arg(self.ns.sale(sale))
                .arg("loaded")
                .arg("remaining")
                .arg("loading")
                .query_async(&mut self.con.clone())
                .guarded(&self.guard, "reading remaining")
                .await?;
        match (loaded, remaining, loading) {
            (Some(_), Some(remaining), _) => {
                self.see(sale);
                // Below 0 while withdrawn units are still held: none left.
                Ok(Some(u64::try_from(remaining).unwrap_or(0)))
            }
            (_, _, Some(_)) => Err(rebuilding(sale)),
            _ => match self.missing(sale, false) {
                Some(lost) => Err(lost),
                None => Ok(None),
            },
        }
    }

    async fn restore(
        &self,
        sales: Vec<SaleSnapshot>,
        keys: Vec<KeyRecord>,
        _now: Timestamp,
    ) -> Result<(), LedgerError> {
        // Check everything before writing anything, as the memory ledger does.
        for snapshot in &sales {
            let terms = SaleTerms::of(&snapshot.sale);
            let book =
                StockBook::restore(terms, snapshot.holdings.iter().cloned()).map_err(|e| {
                    LedgerError::inconsistent(format!("sale {}: {e}", snapshot.sale.id))
                })?;
            if book.remaining() != snapshot.remaining {
                return Err(LedgerError::inconsistent(format!(
                    "sale {}: its stock column says {} left, its orders say {}",
                    snapshot.sale.id,
                    snapshot.remaining,
                    book.remaining()
                )));
            }
        }
        let mut records = Vec::with_capacity(keys.len());
        for record in &keys {
            let quantity =
                Quantity::parse("quantity", i64::from(record.quantity)).map_err(|e| {
                    LedgerError::inconsistent(format!("order {}: {e}", record.order_id))
                })?;
            let scoped = keys::scoped(&record.user_id, &record.key);
            let value = encode_record(quantity, Answer::Won(record.order_id));
            records.push((record.sale_id, scoped, value));
        }
        for snapshot in &sales {
            self.restore_sale(snapshot).await?;
            self.see(snapshot.sale.id);
        }
        // The store's winning keys: what it says is final, so overwrite.
        for chunk in records.chunks(self.settings.restore_chunk.max(1)) {
            let mut pipe = redis::pipe();
            for (sale, scoped, value) in chunk {
                pipe.cmd("SET")
                    .arg(self.ns.record(*sale, scoped))
                    .arg(value)
                    .arg("PX")
                    .arg(self.retention_ms)
                    .ignore();
                pipe.cmd("SET")
                    .arg(self.ns.binding(scoped))
                    .arg(sale.to_string())
                    .arg("PX")
                    .arg(self.retention_ms)
                    .ignore();
            }
            pipe.query_async::<()>(&mut self.con.clone())
                .guarded(&self.guard, "restoring keys")
                .await?;
        }
        Ok(())
    }
}

/// Fails unless the server is Redis 7.0 or newer (`SET … NX GET`).
fn check_version(info: &str) -> Result<(), LedgerError> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .map(str::trim)
        .unwrap_or("");
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major >= 7 {
        Ok(())
    } else {
        Err(LedgerError::unavailable(format!(
            "the stock ledger needs Redis 7.0 or newer, the server is {version:?}"
        )))
    }
}

fn ends_arg(terms: &SaleTerms) -> String {
    terms
        .ends_at
        .map(|end| end.as_millis().to_string())
        .unwrap_or_default()
}

fn unavailable(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> LedgerError {
    LedgerError::unavailable_because(format!("redis ledger, {what}"), err)
}

/// A Redis call through the ledger's [`Guard`]: refused at once while the
/// breaker is open or the budget is spent; every Redis error counts as a
/// failure (the scripts answer refusals as values, not errors).
trait Guarded<T>: Future<Output = redis::RedisResult<T>> + Sized {
    async fn guarded(self, guard: &Guard, what: &str) -> Result<T, LedgerError> {
        let _slot = guard
            .bulkhead
            .try_acquire()
            .map_err(|full| unavailable(what, full))?;
        guard
            .breaker
            .call(self, |_| true)
            .await
            .map_err(|err| match err {
                BreakerError::Rejected(rejected) => unavailable(what, rejected),
                BreakerError::Inner(err) => unavailable(what, err),
            })
    }
}

impl<T, F: Future<Output = redis::RedisResult<T>>> Guarded<T> for F {}

/// An `EVALSHA` of `script` with its first `keys` arguments as keys: a
/// script call that can join a pipeline.
fn evalsha(script: &redis::Script, keys: usize) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

fn is_noscript(err: &RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// Loads `script` (Redis restarted or flushed its scripts), then runs it.
async fn load_and_run<T: FromRedisValue>(
    mut con: ConnectionManager,
    script: &redis::Script,
    evalsha: &redis::Cmd,
) -> redis::RedisResult<T> {
    script.load_async(&mut con).await?;
    evalsha.query_async(&mut con).await
}

fn rebuilding(sale: SaleId) -> LedgerError {
    LedgerError::unavailable(format!(
        "the stock ledger lost sale {sale}: rebuilding it from the store"
    ))
}

fn bad_reply(script: &str, reply: &[String]) -> LedgerError {
    LedgerError::inconsistent(format!(
        "redis ledger, {script}: unexpected reply {reply:?}"
    ))
}

/// `w:<quantity>:<order>` or `r:<quantity>:<refusal slug>`.
fn encode_record(quantity: Quantity, answer: Answer) -> String {
    match answer {
        Answer::Won(order) => format!("w:{}:{order}", quantity.get()),
        Answer::Refused(refusal) => format!("r:{}:{}", quantity.get(), refusal.slug()),
    }
}

/// A remembered answer; its sale is the one whose slot holds it.
fn parse_record(sale: SaleId, record: &str) -> Option<Remembered> {
    let mut parts = record.splitn(3, ':');
    let (kind, quantity, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let quantity = Quantity::parse("quantity", quantity.parse().ok()?).ok()?;
    let answer = match kind {
        "w" => Answer::Won(OrderId::parse(rest)?),
        "r" => Answer::Refused(parse_refusal(rest)?),
        _ => return None,
    };
    Some(Remembered {
        fingerprint: Fingerprint {
            sale_id: sale,
            quantity,
        },
        answer,
    })
}

/// A reservation's `<reserved at ms>:<quantity>`.
fn parse_flight(flight: &str) -> Option<(Timestamp, Quantity)> {
    let (at, quantity) = flight.rsplit_once(':')?;
    Some((
        Timestamp::from_millis(at.parse().ok()?),
        Quantity::parse("quantity", quantity.parse().ok()?).ok()?,
    ))
}

fn parse_refusal(slug: &str) -> Option<Refusal> {
    [
        Refusal::SoldOut,
        Refusal::LimitExceeded,
        Refusal::SaleNotActive,
        Refusal::SalePaused,
    ]
    .into_iter()
    .find(|r| r.slug() == slug)
}

/// Readiness: Redis answers `PING`.
#[async_trait]
impl stampede_app::ports::Probe for RedisLedger {
    fn name(&self) -> &'static str {
        "ledger"
    }

    async fn check(&self) -> Result<(), String> {
        let mut con = self.con.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map(|_| ())
            .map_err(|err| format!("redis: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let sale = SaleId::generate();
        let two = Quantity::parse("quantity", 2).unwrap();
        for answer in [
            Answer::Won(OrderId::generate()),
            Answer::Refused(Refusal::SoldOut),
            Answer::Refused(Refusal::LimitExceeded),
            Answer::Refused(Refusal::SaleNotActive),
            Answer::Refused(Refusal::SalePaused),
        ] {
            let remembered = parse_record(sale, &encode_record(two, answer)).unwrap();
            assert_eq!(remembered.answer, answer);
            assert_eq!(remembered.fingerprint.quantity, two);
            assert_eq!(remembered.fingerprint.sale_id, sale);
        }
        assert!(parse_record(sale, "x:1:y").is_none());
    }

    #[test]
    fn only_redis_7_or_newer_is_accepted() {
        assert!(check_version("# Server\r\nredis_version:7.0.15\r\n").is_ok());
        assert!(check_version("redis_version:8.2.1\r\n").is_ok());
        assert!(check_version("redis_version:6.2.14\r\n").is_err());
        assert!(check_version("").is_err());
    }
}
