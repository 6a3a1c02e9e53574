//! The closed-loop waiting room (docs/admission.md §5), optional per sale.
//!
//! Buyers who come before the start join and get a signed ticket
//! ([`ticket`]); at the start the tickets issued so far are put in a random
//! order ([`draw`]), and tickets issued afterwards queue behind them in the
//! order they came. Every node moves the shared line ([`RoomBook`]) as fast
//! as its purchase path drains it ([`pace`]), and a purchase of a room sale
//! needs a ticket whose place the line has reached. The room ends the moment
//! the sale sells out: joins and purchases are answered `sold-out` at once.

pub mod draw;
mod pace;
pub mod ticket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use stampede_domain::catalog::Sale;
use stampede_domain::ids::{SaleId, UserId};
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;
use stampede_flow::adaptive::AdaptiveLimit;
use tokio::time::Instant;

pub use pace::{ADMITTED_COUNTS_FOR, MAX_WINDOW, MIN_WINDOW, RATE_OVER};
pub use ticket::TicketKey;

pub use crate::error::{TicketProblem, Wait};

use crate::AppError;
use crate::ports::{Clock, Joined, LedgerError, RoomBook, RoomCounters};
use pace::Pace;

/// How often each node moves its rooms' lines.
pub const PACE_EVERY: Duration = Duration::from_millis(100);

/// The first window while no adaptive in-flight limit is followed (then
/// it stays: nothing tells how loaded the path is).
pub const DEFAULT_WINDOW: u32 = 256;

/// The shortest and longest wait a waiting answer asks for.
pub const MIN_RETRY: Duration = Duration::from_millis(250);
pub const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    /// Most tickets per sale: the room's memory bound.
    pub capacity: u64,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
        }
    }
}

/// Where a ticket holder stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub ticket: String,
    /// 1 first; `None` before the draw.
    pub position: Option<u64>,
    /// Places not admitted yet before this one; `None` before the draw.
    pub ahead: Option<u64>,
    /// The holder may buy now.
    pub admitted: bool,
    /// When to ask again: 0 once admitted.
    pub retry_after: Duration,
    /// Purchases answered per second across the cluster, recently.
    pub served_per_sec: f64,
    /// When the positions are drawn: the sale's start.
    pub draw_at: Timestamp,
}

/// This node's waiting rooms.
pub struct WaitingRoom {
    book: Arc<dyn RoomBook>,
    key: TicketKey,
    clock: Arc<dyn Clock>,
    settings: RoomSettings,
    window: OnceLock<AdaptiveLimit>,
    lines: RwLock<HashMap<SaleId, Arc<Line>>>,
}

/// One sale's line as this node knows it.
struct Line {
    /// What this node proposes for the draw; the book keeps the first.
    seed: u64,
    /// The last the book said, merged (counters only grow).
    counters: Mutex<RoomCounters>,
    sold_out: AtomicBool,
    /// What the ledger had left at the last step (`u64::MAX`: not known).
    left: AtomicU64,
    /// Purchases of admitted holders answered here since the last step.
    served: AtomicU64,
    pace: Mutex<Pace>,
}

impl Line {
    fn counters(&self) -> RoomCounters {
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn learn(&self, read: RoomCounters) -> RoomCounters {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        counters.issued = counters.issued.max(read.issued);
        counters.admitted = counters.admitted.max(read.admitted);
        counters.served = counters.served.max(read.served);
        counters.draw = counters.draw.or(read.draw);
        *counters
    }
}

impl WaitingRoom {
    pub fn new(
        book: Arc<dyn RoomBook>,
        key: TicketKey,
        clock: Arc<dyn Clock>,
        settings: RoomSettings,
    ) -> Self {
        Self {
            book,
            key,
            clock,
            settings,
            window: OnceLock::new(),
            lines: RwLock::new(HashMap::new()),
        }
    }

    /// From now on the window is `limit`'s live value (the edge's adaptive
    /// in-flight limit); the first call wins.
    pub fn follow(&self, limit: AdaptiveLimit) {
        let _ = self.window.set(limit);
    }

    /// The purchase path's load: requests in flight, and the limit.
    fn load(&self) -> Option<(u32, u32)> {
        let limit = self.window.get()?;
        Some((limit.in_flight(), limit.limit()))
    }

    fn line(&self, sale: SaleId) -> Arc<Line> {
        if let Some(line) = self
            .lines
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&sale)
        {
            return line.clone();
        }
        let initial = self
            .load()
            .map_or(u64::from(DEFAULT_WINDOW), |(_, limit)| u64::from(limit));
        let mut lines = self.lines.write().unwrap_or_else(PoisonError::into_inner);
        lines
            .entry(sale)
            .or_insert_with(|| {
                Arc::new(Line {
                    seed: fastrand::u64(..),
                    counters: Mutex::new(RoomCounters::default()),
                    sold_out: AtomicBool::new(false),
                    left: AtomicU64::new(u64::MAX),
                    served: AtomicU64::new(0),
                    pace: Mutex::new(Pace::new(initial)),
                })
            })
            .clone()
    }

    /// Joins `user` to `sale`'s line, or tells them where they stand: the
    /// same ticket on every call.
    pub async fn join(&self, sale: &Sale, user: &UserId) -> Result<Standing, AppError> {
        if !sale.waiting_room {
            return Err(AppError::NoWaitingRoom);
        }
        let now = self.clock.now();
        if sale.has_ended(now) {
            return Err(AppError::Refused(Refusal::SaleNotActive));
        }
        let line = self.line(sale.id);
        if line.sold_out.load(Ordering::Acquire) {
            return Err(AppError::Refused(Refusal::SoldOut));
        }
        let draw = (now >= sale.starts_at).then_some(line.seed);
        let joined = self
            .book
            .join(sale.id, user, draw, self.settings.capacity)
            .await
            .map_err(room_unavailable)?;
        let (ticket, read) = match joined {
            Joined::Ticket(ticket, counters) => (ticket, counters),
            Joined::Full => return Err(AppError::Overloaded("the sale's waiting room is full")),
        };
        let counters = line.learn(read);
        let text = self.key.issue(sale.id, user, ticket);
        Ok(line.standing(text, ticket, counters, sale.starts_at, now))
    }

    /// Lets a purchase of `sale` through if it needs no ticket, or shows
    /// the buyer's ticket and its place has been reached. Once the room has
    /// ended at the sell-out, a ticket not admitted is answered `sold-out`
    /// at once; an admitted one still goes to the ledger, which sells it a
    /// unit that came back, or refuses.
    pub async fn check(
        &self,
        sale: &Sale,
        user: &UserId,
        ticket: Option<&str>,
    ) -> Result<(), AppError> {
        if !sale.waiting_room {
            return Ok(());
        }
        let line = self.line(sale.id);
        let text = ticket.ok_or(AppError::QueueTicket(TicketProblem::Missing))?;
        let number = (self.key)
            .read(sale.id, user, text)
            .ok_or(AppError::QueueTicket(TicketProblem::Invalid))?;
        if admitted(number, line.counters()) {
            return Ok(());
        }
        if line.sold_out.load(Ordering::Acquire) {
            return Err(AppError::Refused(Refusal::SoldOut));
        }
        // Another node may have moved the line since this one last read it.
        let read = self
            .book
            .counters(sale.id)
            .await
            .map_err(room_unavailable)?;
        let counters = line.learn(read);
        if admitted(number, counters) {
            return Ok(());
        }
        let now = self.clock.now();
        let at = line.standing(String::new(), number, counters, sale.starts_at, now);
        Err(AppError::NotYourTurn(Wait {
            position: at.position,
            ahead: at.ahead,
            retry_after: at.retry_after,
            served_per_sec: at.served_per_sec,
        }))
    }

    /// A purchase of an admitted holder was answered (bought or refused):
    /// room for the next in line.
    pub fn served(&self, sale: SaleId) {
        self.line(sale).served.fetch_add(1, Ordering::Relaxed);
    }

    /// What the ledger has left: none ends the room (until units come
    /// back); the count caps the waits told.
    pub fn learn_left(&self, sale: SaleId, left: Option<u64>) {
        let line = self.line(sale);
        line.left.store(left.unwrap_or(u64::MAX), Ordering::Relaxed);
        line.sold_out.store(left == Some(0), Ordering::Release);
    }

    /// One pacing step for a started, live room sale: moves the line by the
    /// room in this node's window and records what was served.
    pub async fn pace(&self, sale: SaleId) -> Result<(), LedgerError> {
        let line = self.line(sale);
        if line.sold_out.load(Ordering::Acquire) {
            return Ok(());
        }
        let now = Instant::now();
        let served = line.served.swap(0, Ordering::Relaxed);
        let by = {
            let mut pace = line.pace.lock().unwrap_or_else(PoisonError::into_inner);
            pace.serve(served);
            if let Some((in_flight, limit)) = self.load() {
                pace.adjust(now, in_flight, limit);
            }
            // No more admitted and not served than units left: the rest
            // would only be told `sold-out` at the purchase.
            let left = line.left.load(Ordering::Relaxed);
            pace.room(now)
                .min(left.saturating_sub(pace.outstanding(now)))
        };
        let before = line.counters().admitted;
        let read = match self.book.admit(sale, line.seed, by, served).await {
            Ok(read) => read,
            Err(err) => {
                // Not lost: the book counts them at the next step.
                line.served.fetch_add(served, Ordering::Relaxed);
                return Err(err);
            }
        };
        let after = line.learn(read);
        // What this step moved; another node's moves in between count as
        // ours at most up to what we asked for.
        let admitted = after.admitted.saturating_sub(before).min(by);
        let mut pace = line.pace.lock().unwrap_or_else(PoisonError::into_inner);
        pace.record(now, admitted, after.served);
        Ok(())
    }

    /// The sales this node keeps a line for.
    pub fn sales(&self) -> Vec<SaleId> {
        let lines = self.lines.read().unwrap_or_else(PoisonError::into_inner);
        lines.keys().copied().collect()
    }

    /// Drops the sale's line here and, once the sale is over, in the book.
    pub async fn forget(&self, sale: SaleId) -> Result<(), LedgerError> {
        (self.lines.write().unwrap_or_else(PoisonError::into_inner)).remove(&sale);
        self.book.forget(sale).await
    }
}

fn room_unavailable(err: LedgerError) -> AppError {
    AppError::unavailable_because("the waiting room's book is unavailable", err)
}

fn admitted(ticket: u64, counters: RoomCounters) -> bool {
    draw::position(ticket, counters.draw).is_some_and(|at| at <= counters.admitted)
}

impl Line {
    /// Where `ticket` stands in `counters`, with the wait the drain (purchases
    /// answered per second) predicts.
    fn standing(
        &self,
        text: String,
        ticket: u64,
        counters: RoomCounters,
        starts_at: Timestamp,
        now: Timestamp,
    ) -> Standing {
        let (rate, window) = {
            let pace = self.pace.lock().unwrap_or_else(PoisonError::into_inner);
            (pace.rate(), pace.window())
        };
        let left = self.left.load(Ordering::Relaxed);
        let drain = Drain { rate, window, left };
        standing(text, ticket, counters, drain, starts_at, now)
    }
}

/// What the wait told is computed from.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Purchases answered a second, measured; 0 before any.
    rate: f64,
    /// This node's window: before a rate is measured, the guess is a
    /// window every [`MIN_RETRY`] (a holder's turn at its quickest), on the
    /// short side: a wait told too short costs one more ask, one told too
    /// long leaves units unsold while buyers sleep.
    window: u64,
    /// Units the ledger had left; `u64::MAX`: not known.
    left: u64,
}

impl Drain {
    fn rate_or_guess(&self) -> f64 {
        if self.rate > 0.0 {
            self.rate
        } else {
            self.window.max(1) as f64 / MIN_RETRY.as_secs_f64()
        }
    }
}

/// Where `ticket` stands in `counters`, with the wait the drain predicts:
/// for the places before it, or for the units left to sell out if that
/// comes first, so a waiter behind more buyers than units comes back about
/// when the sale sells out. Before the draw, the wait is to the start, with
/// up to a second more, spread by ticket, so a crowd does not come back in
/// one instant.
fn standing(
    text: String,
    ticket: u64,
    counters: RoomCounters,
    drain: Drain,
    starts_at: Timestamp,
    now: Timestamp,
) -> Standing {
    let position = draw::position(ticket, counters.draw);
    let ahead = position.map(|at| at.saturating_sub(counters.admitted + 1));
    let admitted = position.is_some_and(|at| at <= counters.admitted);
    let retry_after = match (position, ahead) {
        _ if admitted => Duration::ZERO,
        // Before the draw: at the start, when positions are known.
        (None, _) | (_, None) => {
            let to_start = u64::try_from(starts_at.as_millis() - now.as_millis()).unwrap_or(0);
            let spread = ticket.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024 ms
            Duration::from_millis(to_start + spread).clamp(MIN_RETRY, MAX_RETRY)
        }
        (Some(_), Some(ahead)) => {
            let before = (ahead + 1).min(drain.left.saturating_add(1));
            Duration::from_secs_f64(before as f64 / drain.rate_or_guess())
                .clamp(MIN_RETRY, MAX_RETRY)
        }
    };
    Standing {
        ticket: text,
        position,
        ahead,
        admitted,
        retry_after,
        served_per_sec: drain.rate,
        draw_at: starts_at,
    }
}
