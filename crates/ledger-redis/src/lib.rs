//! Stampede's stock ledger in Redis (cluster mode): the
//! [`StockLedger`](stampede_app::ports::StockLedger) port with exactly the
//! memory ledger's behaviour, one atomic Lua script per purchase decision.
//!
//! - [`ledger`]: [`RedisLedger`] and its settings; the hooks a reconciliation
//!   job uses ([`RedisLedger::lost_sales`], [`RedisLedger::reservations`]).
//! - `scripts`: the Lua scripts, each on the keys of one sale.
//! - `keys`: key names; every key of a sale shares the hash tag
//!   `{<namespace>:sale:<id>}`, so the layout is Redis Cluster-safe.
//!
//! Loss: a sale's state is one hash with a `loaded` marker. A sale this node
//! has seen whose marker is gone (Redis restarted empty, flushed, keys
//! deleted) answers `Unavailable` — never a fresh full sale — until
//! [`restore`](stampede_app::ports::StockLedger::restore) reloads it from the
//! store; restores load only missing sales, so they never double count.

mod keys;
pub mod ledger;
mod scripts;

#[cfg(feature = "testing")]
pub mod testing;

pub use keys::hash_slot;
pub use ledger::{RedisLedger, RedisLedgerSettings};
pub use stampede_app::ports::Reservation;
