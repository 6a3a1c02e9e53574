//! The stock book of one sale: how many units are left and how many each buyer
//! holds. Every reservation and release goes through here, so "no oversell" (I1)
//! and "per-user limits hold" (I3) are decided in one small place. Ledgers wrap a
//! book in whatever concurrency control their medium needs.

use std::collections::HashMap;

use crate::catalog::{Sale, SaleState};
use crate::ids::UserId;
use crate::quantity::Quantity;
use crate::time::Timestamp;

/// Why a purchase is refused before anything is written. These are the business
/// refusals docs/api.md §4 remembers per idempotency key, all but a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Fewer units are left than asked for.
    SoldOut,
    /// The buyer would hold more than the sale's per-user limit.
    LimitExceeded,
    /// The sale has not started or has ended.
    SaleNotActive,
    /// An admin paused the sale. Not remembered: a retry after it resumes
    /// is decided afresh.
    SalePaused,
}

impl Refusal {
    /// The stable problem slug of docs/api.md §5.
    pub fn slug(self) -> &'static str {
        match self {
            Self::SoldOut => "sold-out",
            Self::LimitExceeded => "limit-exceeded",
            Self::SaleNotActive => "sale-not-active",
            Self::SalePaused => "sale-paused",
        }
    }

    /// Whether the key that met it keeps this answer.
    pub fn is_remembered(self) -> bool {
        self != Self::SalePaused
    }
}

/// The rules of a sale that a ledger needs to decide a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleTerms {
    pub quantity: u32,
    pub per_user_limit: u32,
    pub starts_at: Timestamp,
    pub ends_at: Option<Timestamp>,
    pub state: SaleState,
    /// The sale's version these terms are from: a ledger takes newer terms
    /// only ([`StockBook::amend`]).
    pub version: u64,
}

impl SaleTerms {
    pub fn of(sale: &Sale) -> Self {
        Self {
            quantity: sale.quantity,
            per_user_limit: sale.per_user_limit.get(),
            starts_at: sale.starts_at,
            ends_at: sale.ends_at,
            state: sale.state,
            version: sale.version,
        }
    }

    /// Whether a purchase at `now` may reserve (stock and limit aside), or
    /// the refusal it meets. An ended sale is not active even while paused.
    pub fn admits(&self, now: Timestamp) -> Result<(), Refusal> {
        let in_window = now >= self.starts_at && self.ends_at.is_none_or(|end| now < end);
        match self.state {
            SaleState::Ended => Err(Refusal::SaleNotActive),
            _ if !in_window => Err(Refusal::SaleNotActive),
            SaleState::Paused => Err(Refusal::SalePaused),
            SaleState::Running => Ok(()),
        }
    }
}

/// A release that does not match what the book holds: a bug upstream (a release
/// applied twice, or for units never reserved). The book is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("release of {asked} units by {user} who holds {held}")]
pub struct ReleaseMismatch {
    pub user: UserId,
    pub asked: u32,
    pub held: u32,
}

/// A restored book whose numbers do not add up: the store says more units are
/// held or left than the sale ever had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stock of {quantity} units cannot have {remaining} left with {held} held")]
pub struct Inconsistent {
    pub quantity: u32,
    pub remaining: u64,
    pub held: u64,
}

/// Buyers a book makes room for up front (see [`StockBook::new`]).
const PRESIZED_BUYERS: u32 = 1 << 18;

/// Remaining units and holdings of one sale.
///
/// Invariant: `remaining + Σ held == quantity`, and every holding was at most
/// the per-user limit when it was taken. `remaining` is below 0 only when
/// units were withdrawn while purchases held them but had not committed
/// them: the store refuses those commits, and their units come back.
#[derive(Debug, Clone)]
pub struct StockBook {
    terms: SaleTerms,
    remaining: i64,
    held: HashMap<UserId, u32>,
}

impl StockBook {
    /// A fresh sale: all units left, nobody holds any.
    ///
    /// The holdings are sized for as many buyers as there are units (up to
    /// 262,144, which the table rounds up to room for 458,752) at once:
    /// growing them rehashes every buyer while the sale is locked, and at
    /// 200,000 buyers that held every purchase of the sale for about 5 ms.
    /// The price is memory: once buyers are spread over the table its pages
    /// are all touched, up to 17 MB for the largest sales where growing would
    /// have reached half that (docs/benchmarks.md, round five).
    pub fn new(terms: SaleTerms) -> Self {
        Self {
            terms,
            remaining: i64::from(terms.quantity),
            held: HashMap::with_capacity(Self::room(&terms)),
        }
    }

    fn room(terms: &SaleTerms) -> usize {
        terms.quantity.min(PRESIZED_BUYERS) as usize
    }

    /// Rebuilds a book from what the store says each buyer holds (units in orders
    /// that are not cancelled); what is left follows from it.
    pub fn restore(
        terms: SaleTerms,
        holdings: impl IntoIterator<Item = (UserId, u32)>,
    ) -> Result<Self, Inconsistent> {
        let mut held: HashMap<UserId, u32> = holdings.into_iter().filter(|(_, n)| *n > 0).collect();
        held.reserve(Self::room(&terms).saturating_sub(held.len()));
        let total: u64 = held.values().map(|n| u64::from(*n)).sum();
        let quantity = u64::from(terms.quantity);
        if total > quantity {
            return Err(Inconsistent {
                quantity: terms.quantity,
                remaining: 0,
                held: total,
            });
        }
        Ok(Self {
            terms,
            // Both at most a billion units (Quantity::MAX) times buyers: an i64.
            remaining: i64::try_from(quantity - total).unwrap_or(i64::MAX),
            held,
        })
    }

    pub fn terms(&self) -> &SaleTerms {
        &self.terms
    }

    /// Units purchases can take now (0 while withdrawn units are still held).
    pub fn remaining(&self) -> u64 {
        u64::try_from(self.remaining).unwrap_or(0)
    }

    /// Takes the terms of a newer version of the sale; older or equal ones
    /// change nothing (returns whether it took them). What is left moves
    /// with the quantity, so units added are for sale at once and units
    /// withdrawn are never sold.
    pub fn amend(&mut self, terms: SaleTerms) -> bool {
        if terms.version <= self.terms.version {
            return false;
        }
        self.remaining += i64::from(terms.quantity) - i64::from(self.terms.quantity);
        self.terms = terms;
        true
    }

    pub fn held_by(&self, user: &UserId) -> u32 {
        self.held.get(user).copied().unwrap_or(0)
    }

    /// Takes `quantity` units for `user`, or says why not. Checks, in order: the
    /// sale window and state, the stock, the user's limit. A refusal changes
    /// nothing.
    pub fn reserve(
        &mut self,
        user: &UserId,
        quantity: Quantity,
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let asked = quantity.get();
        self.terms.admits(now)?;
        if i64::from(asked) > self.remaining {
            return Err(Refusal::SoldOut);
        }
        let held = self.held_by(user);
        if held.saturating_add(asked) > self.terms.per_user_limit {
            return Err(Refusal::LimitExceeded);
        }
        self.remaining -= i64::from(asked);
        *self.held.entry(user.clone()).or_insert(0) += asked;
        Ok(())
    }

    /// Gives back `quantity` units held by `user` (an order cancelled or never
    /// committed).
    pub fn release(&mut self, user: &UserId, quantity: u32) -> Result<(), ReleaseMismatch> {
        let held = self.held_by(user);
        if quantity > held {
            return Err(ReleaseMismatch {
                user: user.clone(),
                asked: quantity,
                held,
            });
        }
        if held == quantity {
            self.held.remove(user);
        } else {
            self.held.insert(user.clone(), held - quantity);
        }
        self.remaining += i64::from(quantity);
        Ok(())
    }

    /// Units held by all buyers together.
    pub fn total_held(&self) -> u64 {
        self.held.values().map(|n| u64::from(*n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn terms(quantity: u32, per_user_limit: u32) -> SaleTerms {
        SaleTerms {
            quantity,
            per_user_limit,
            starts_at: NOW,
            ends_at: Some(NOW.plus_secs(60)),
            state: SaleState::Running,
            version: 1,
        }
    }

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn qty(n: i64) -> Quantity {
        Quantity::parse("quantity", n).unwrap()
    }

    #[test]
    fn sells_exactly_the_stock() {
        let mut book = StockBook::new(terms(2, 5));
        assert_eq!(book.reserve(&user("a"), qty(1), NOW), Ok(()));
        assert_eq!(book.reserve(&user("b"), qty(1), NOW), Ok(()));
        assert_eq!(book.reserve(&user("c"), qty(1), NOW), Err(Refusal::SoldOut));
        assert_eq!(book.remaining(), 0);
    }

    #[test]
    fn asking_for_more_than_is_left_is_sold_out_and_changes_nothing() {
        let mut book = StockBook::new(terms(3, 5));
        assert_eq!(book.reserve(&user("a"), qty(4), NOW), Err(Refusal::SoldOut));
        assert_eq!(book.remaining(), 3);
        assert_eq!(book.held_by(&user("a")), 0);
    }

    #[test]
    fn a_user_cannot_pass_the_limit_in_one_purchase_or_in_several() {
        let mut book = StockBook::new(terms(10, 2));
        assert_eq!(
            book.reserve(&user("a"), qty(3), NOW),
            Err(Refusal::LimitExceeded)
        );
        assert_eq!(book.reserve(&user("a"), qty(2), NOW), Ok(()));
        assert_eq!(
            book.reserve(&user("a"), qty(1), NOW),
            Err(Refusal::LimitExceeded)
        );
        assert_eq!(book.remaining(), 8);
    }

    #[test]
    fn outside_the_window_the_sale_is_not_active() {
        let mut book = StockBook::new(terms(10, 2));
        let before = NOW.plus_millis(-1);
        let at_end = NOW.plus_secs(60);
        assert_eq!(
            book.reserve(&user("a"), qty(1), before),
            Err(Refusal::SaleNotActive)
        );
        assert_eq!(
            book.reserve(&user("a"), qty(1), at_end),
            Err(Refusal::SaleNotActive)
        );
    }

    #[test]
    fn released_units_can_be_bought_again_and_count_against_nobody() {
        let mut book = StockBook::new(terms(1, 1));
        book.reserve(&user("a"), qty(1), NOW).unwrap();
        book.release(&user("a"), 1).unwrap();
        assert_eq!(book.held_by(&user("a")), 0);
        assert_eq!(book.reserve(&user("b"), qty(1), NOW), Ok(()));
    }

    #[test]
    fn releasing_more_than_is_held_is_refused_and_changes_nothing() {
        let mut book = StockBook::new(terms(5, 5));
        book.reserve(&user("a"), qty(2), NOW).unwrap();
        assert!(book.release(&user("a"), 3).is_err());
        assert!(book.release(&user("b"), 1).is_err());
        assert_eq!(book.remaining(), 3);
        assert_eq!(book.held_by(&user("a")), 2);
    }

    #[test]
    fn restoring_derives_what_is_left_and_rejects_impossible_holdings() {
        let book = StockBook::restore(terms(10, 5), [(user("a"), 3), (user("b"), 2)]).unwrap();
        assert_eq!(book.remaining(), 5);
        assert!(StockBook::restore(terms(4, 5), [(user("a"), 3), (user("b"), 2)]).is_err());
    }

    #[test]
    fn newer_terms_move_what_is_left_with_the_quantity_and_older_ones_change_nothing() {
        let mut book = StockBook::new(terms(3, 5));
        book.reserve(&user("a"), qty(2), NOW).unwrap();
        let mut fewer = terms(2, 5);
        fewer.version = 2;
        assert!(book.amend(fewer));
        assert_eq!(book.remaining(), 0);
        // An older copy arriving late is ignored.
        assert!(!book.amend(terms(3, 5)));
        assert_eq!(book.terms().quantity, 2);
        // Withdrawn past what is free: nothing is left until units come back.
        let mut none = terms(1, 5);
        none.version = 3;
        assert!(book.amend(none));
        assert_eq!(book.remaining(), 0);
        assert_eq!(book.reserve(&user("b"), qty(1), NOW), Err(Refusal::SoldOut));
        book.release(&user("a"), 2).unwrap();
        assert_eq!(book.remaining(), 1);
    }

    #[test]
    fn a_paused_sale_refuses_with_a_pause_and_an_ended_one_is_not_active() {
        let mut book = StockBook::new(terms(3, 5));
        let mut paused = terms(3, 5);
        paused.state = SaleState::Paused;
        paused.version = 2;
        book.amend(paused);
        assert_eq!(
            book.reserve(&user("a"), qty(1), NOW),
            Err(Refusal::SalePaused)
        );
        assert!(!Refusal::SalePaused.is_remembered());
        let mut ended = paused;
        ended.state = SaleState::Ended;
        ended.version = 3;
        book.amend(ended);
        assert_eq!(
            book.reserve(&user("a"), qty(1), NOW),
            Err(Refusal::SaleNotActive)
        );
        assert_eq!(book.remaining(), 3);
    }
}
