//! The waiting room's shared book (docs/admission.md §5): per sale, who
//! holds which ticket, how many were issued before the draw, and how far the
//! line has been admitted. Every node of a cluster reads and moves the same
//! book, so a ticket issued by one node is served by any; the pacing (how
//! far to move the line) is each node's own (`crate::room`).
//!
//! Tickets are numbered 1, 2, … in the order they are issued, one per user
//! and sale. The draw at the sale's start fixes `drawn`: tickets up to it
//! take their positions from a random permutation (`crate::room::draw`),
//! later ones keep their number as their position, so the line is a lottery
//! among those who came early and first come first served afterwards.

use async_trait::async_trait;
use stampede_domain::ids::{SaleId, UserId};

use super::LedgerError;

/// One sale's line, as the book holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoomCounters {
    /// Tickets issued so far.
    pub issued: u64,
    /// `None` before the draw.
    pub draw: Option<Draw>,
    /// Positions up to this one may buy.
    pub admitted: u64,
    /// Purchases of admitted holders answered, on every node: the drain.
    pub served: u64,
}

/// What the draw at the start fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Draw {
    /// Tickets 1..=`count` were issued before the draw.
    pub count: u64,
    /// The permutation's key.
    pub seed: u64,
}

/// The answer to a join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The user's ticket (the one they had, or a new one), and the line.
    Ticket(u64, RoomCounters),
    /// The room holds `capacity` tickets already.
    Full,
}

#[async_trait]
pub trait RoomBook: Send + Sync + 'static {
    /// The user's ticket for `sale`, the same on every call; a user without
    /// one gets the next number, unless `capacity` are issued. With
    /// `draw_seed`, a book not drawn yet draws first, so a ticket issued from
    /// the start on is never part of the lottery.
    async fn join(
        &self,
        sale: SaleId,
        user: &UserId,
        draw_seed: Option<u64>,
        capacity: u64,
    ) -> Result<Joined, LedgerError>;

    /// Draws if not drawn yet (with `seed`; the first seed wins), then moves
    /// `admitted` up by at most `by`, never past `issued`, and adds `served`
    /// (this node's purchases answered since its last call). Returns the
    /// line after the move.
    async fn admit(
        &self,
        sale: SaleId,
        seed: u64,
        by: u64,
        served: u64,
    ) -> Result<RoomCounters, LedgerError>;

    /// The line as it is; zeros for a sale with no book.
    async fn counters(&self, sale: SaleId) -> Result<RoomCounters, LedgerError>;

    /// Drops the sale's book (the sale is over).
    async fn forget(&self, sale: SaleId) -> Result<(), LedgerError>;
}
