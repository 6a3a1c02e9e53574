//! The in-process stock ledger (embedded mode): one [`StockBook`] per sale behind
//! a mutex, with copies of its terms and of what is left that are read without
//! the lock, so a crowd refused (sold out, paused, not active) never takes it,
//! and a [`KeyMemory`] for idempotency keys. A refusal that is not remembered
//! (a pause) leaves the key as it found it.
//!
//! Lock order is always key shard, then sale; nothing awaits while holding
//! either, so `decide` finishes in one poll and cannot be cancelled half-way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use stampede_domain::catalog::Sale;
use stampede_domain::idempotency::{Answer, Fingerprint, Remembered};
use stampede_domain::ids::{SaleId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::{Refusal, SaleTerms, StockBook};
use stampede_domain::time::Timestamp;
use tokio::sync::oneshot;

use stampede_app::ledger::KeyMemorySettings;

use crate::key_memory::{KeyMemory, Lookup, ScopedKey};
use stampede_app::ports::ledger::{Attempt, Decision, LedgerError, Settlement, StockLedger};
use stampede_app::ports::store::{KeyRecord, SaleSnapshot};

struct SaleEntry {
    /// The terms in force: a copy of `book.terms()`, swapped under the book's
    /// lock when an admin changes the sale, read without it to refuse cheaply.
    terms: ArcSwap<SaleTerms>,
    /// A copy of `book.remaining()` ([`pack`]ed with the version of the terms
    /// it was written under), written under the book's lock; read without it
    /// to refuse a sold-out crowd cheaply. Never above the true value for
    /// longer than a lock hold, and a stale read only sends a request to the
    /// lock.
    published: AtomicU64,
    book: Mutex<StockBook>,
}

/// What is left (low 32 bits: at most the quantity, a `u32`) and the low 32
/// bits of the version of the terms it goes with (high 32 bits), as one word,
/// so a fast refusal never pairs one version's terms with another's stock.
fn pack(remaining: u64, version: u64) -> u64 {
    (version << 32) | remaining.min(u64::from(u32::MAX))
}

fn unpack(word: u64) -> (u64, u32) {
    (word & u64::from(u32::MAX), (word >> 32) as u32)
}

impl SaleEntry {
    fn new(book: StockBook) -> Self {
        Self {
            terms: ArcSwap::from_pointee(*book.terms()),
            published: AtomicU64::new(pack(book.remaining(), book.terms().version)),
            book: Mutex::new(book),
        }
    }

    fn book(&self) -> MutexGuard<'_, StockBook> {
        // The book's methods leave it consistent at every return, so a panic
        // elsewhere while it was held leaves nothing half-done.
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes what `book` (locked by the caller) has left.
    fn publish(&self, book: &StockBook) {
        let word = pack(book.remaining(), book.terms().version);
        self.published.store(word, Ordering::Release);
    }

    /// Units purchases can take now, as last published.
    fn remaining(&self) -> u64 {
        unpack(self.published.load(Ordering::Acquire)).0
    }

    /// Checks in the book's order (window and state, stock, limit); the first
    /// two are tried without the lock.
    fn reserve(&self, user: &UserId, quantity: Quantity, now: Timestamp) -> Result<(), Refusal> {
        // What is left first: terms are swapped before what is left is
        // published under them, so if both name the same version they are
        // that version's (or what was left under it a moment ago).
        let (remaining, version) = unpack(self.published.load(Ordering::Acquire));
        let terms = self.terms.load();
        terms.admits(now)?;
        if version == terms.version as u32 && remaining < u64::from(quantity.get()) {
            return Err(Refusal::SoldOut);
        }
        drop(terms);
        let mut book = self.book();
        let result = book.reserve(user, quantity, now);
        self.publish(&book);
        result
    }

    fn release(&self, user: &UserId, quantity: u32) -> Result<(), LedgerError> {
        let mut book = self.book();
        let result = book.release(user, quantity);
        self.publish(&book);
        result.map_err(|e| LedgerError::inconsistent(e.to_string()))
    }

    /// Takes newer terms (older or equal ones change nothing).
    fn amend(&self, terms: SaleTerms) {
        let mut book = self.book();
        if book.amend(terms) {
            // Swapped before what is left is published under them.
            self.terms.store(Arc::new(terms));
            self.publish(&book);
        }
    }
}

/// The embedded stock ledger.
pub struct MemoryLedger {
    sales: RwLock<HashMap<SaleId, Arc<SaleEntry>>>,
    keys: KeyMemory,
}

impl MemoryLedger {
    pub fn new(settings: KeyMemorySettings, now: Timestamp) -> Self {
        Self {
            sales: RwLock::new(HashMap::new()),
            keys: KeyMemory::new(settings, now),
        }
    }

    fn sale(&self, id: SaleId) -> Option<Arc<SaleEntry>> {
        self.sales
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    fn insert_sale(&self, id: SaleId, entry: SaleEntry) {
        self.sales
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert_with(|| Arc::new(entry));
    }

    /// Units `user` holds in `sale` (for tests and audits).
    pub fn held_by(&self, sale: SaleId, user: &UserId) -> u32 {
        self.sale(sale).map_or(0, |s| s.book().held_by(user))
    }

    /// Answers remembered now (for tests and metrics).
    pub fn remembered_keys(&self) -> usize {
        self.keys.remembered_len()
    }

    fn wake(waiters: Vec<oneshot::Sender<()>>) {
        for waiter in waiters {
            // A waiter that went away needs no wake-up.
            let _ = waiter.send(());
        }
    }
}

#[async_trait]
impl StockLedger for MemoryLedger {
    async fn open_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        self.insert_sale(sale.id, SaleEntry::new(StockBook::new(SaleTerms::of(sale))));
        Ok(())
    }

    async fn amend_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        // A sale not tracked gets the store's terms when it is restored.
        if let Some(entry) = self.sale(sale.id) {
            entry.amend(SaleTerms::of(sale));
        }
        Ok(())
    }

    async fn decide(&self, attempt: &Attempt) -> Result<Decision, LedgerError> {
        let key = ScopedKey::new(&attempt.user, &attempt.key);
        let mut shard = self.keys.lock(&key);
        match shard.lookup(&key, attempt.now) {
            Lookup::InFlight { fingerprint, wait } => {
                if fingerprint != attempt.fingerprint {
                    return Ok(Decision::Mismatch);
                }
                return Ok(Decision::Wait(Box::pin(async move {
                    // Woken, or the sender was dropped: either way, decide again.
                    let _ = wait.await;
                })));
            }
            Lookup::Remembered(remembered) => {
                return Ok(match remembered.replay(&attempt.fingerprint) {
                    Ok(answer) => Decision::Replay(answer),
                    Err(_) => Decision::Mismatch,
                });
            }
            Lookup::Unknown => {}
        }
        let Some(sale) = self.sale(attempt.fingerprint.sale_id) else {
            return Ok(Decision::UnknownSale);
        };
        match sale.reserve(&attempt.user, attempt.fingerprint.quantity, attempt.now) {
            Ok(()) => {
                shard.start(key, attempt.fingerprint);
                Ok(Decision::Reserved)
            }
            // A pause is decided afresh on every try: neither remembered nor
            // left in flight.
            Err(refusal) if !refusal.is_remembered() => Ok(Decision::Refused(refusal)),
            Err(refusal) => {
                let remembered = Remembered {
                    fingerprint: attempt.fingerprint,
                    answer: Answer::Refused(refusal),
                };
                shard.remember(key, remembered, attempt.now);
                Ok(Decision::Refused(refusal))
            }
        }
    }

    async fn settle(&self, attempt: &Attempt, settlement: Settlement) -> Result<(), LedgerError> {
        let key = ScopedKey::new(&attempt.user, &attempt.key);
        let (remembered, give_back) = match settlement {
            Settlement::Won(order) => (
                Some(Remembered {
                    fingerprint: attempt.fingerprint,
                    answer: Answer::Won(order),
                }),
                false,
            ),
            Settlement::Abandoned => (None, true),
            Settlement::Replaced(remembered) => (Some(remembered), true),
        };
        let mut result = Ok(());
        if give_back {
            result = match self.sale(attempt.fingerprint.sale_id) {
                Some(sale) => sale.release(&attempt.user, attempt.fingerprint.quantity.get()),
                None => Err(LedgerError::inconsistent(format!(
                    "settling a reservation on unknown sale {}",
                    attempt.fingerprint.sale_id
                ))),
            };
        }
        // Finish the key whatever happened above, or its waiters would hang.
        let waiters = self.keys.lock(&key).finish(&key, remembered, attempt.now);
        Self::wake(waiters);
        result
    }

    async fn release(&self, sale: SaleId, user: &UserId, quantity: u32) -> Result<(), LedgerError> {
        match self.sale(sale) {
            Some(entry) => entry.release(user, quantity),
            None => Err(LedgerError::inconsistent(format!(
                "release on unknown sale {sale}"
            ))),
        }
    }

    async fn remaining(&self, sale: SaleId) -> Result<Option<u64>, LedgerError> {
        Ok(self.sale(sale).map(|entry| entry.remaining()))
    }

    async fn restore(
        &self,
        sales: Vec<SaleSnapshot>,
        keys: Vec<KeyRecord>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        let mut restored = HashMap::with_capacity(sales.len());
        for snapshot in sales {
            let terms = SaleTerms::of(&snapshot.sale);
            let book = StockBook::restore(terms, snapshot.holdings).map_err(|e| {
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
            restored.insert(snapshot.sale.id, Arc::new(SaleEntry::new(book)));
        }
        // A sale already live is left as it is (the port's rule): the repair
        // rebuilds one sale at a time, and replacing the whole map dropped
        // every other sale (found by the simulation, crates/sim).
        let mut sales = self.sales.write().unwrap_or_else(|p| p.into_inner());
        for (id, entry) in restored {
            sales.entry(id).or_insert(entry);
        }
        drop(sales);
        for record in keys {
            let key = ScopedKey::new(&record.user_id, &record.key);
            let quantity =
                Quantity::parse("quantity", i64::from(record.quantity)).map_err(|e| {
                    LedgerError::inconsistent(format!("order {}: {e}", record.order_id))
                })?;
            let remembered = Remembered {
                fingerprint: Fingerprint {
                    sale_id: record.sale_id,
                    quantity,
                },
                answer: Answer::Won(record.order_id),
            };
            self.keys.lock(&key).remember(key, remembered, now);
        }
        Ok(())
    }
}
