//! Stampede on Redis (cluster mode): the stock ledger — the
//! [`StockLedger`](stampede_app::ports::StockLedger) port with exactly the
//! memory ledger's behaviour, one atomic Lua script per purchase decision —
//! and, beside it, the shared rate limits, the shared read cache and the
//! waiting rooms' book.
//!
//! - [`ledger`]: [`RedisLedger`] and its settings; the hooks a reconciliation
//!   job uses ([`RedisLedger::lost_sales`], [`RedisLedger::reservations`]).
//! - `scripts`: the Lua scripts, each on the keys of one sale.
//! - [`rate_limits`]: [`RedisRateStore`], the cluster's shared rate-limit
//!   state (`stampede_flow`'s `RateStore`): one script per check, on one key.
//! - [`cache`]: [`RedisCache`], the shared read cache (L2) of products and
//!   sales (`stampede_app`'s `SharedCache`).
//! - [`room`]: [`RedisRoomBook`], the waiting rooms' shared book
//!   (`stampede_app`'s `RoomBook`): one script per join or move of the line,
//!   on keys in the sale's slot, kept until the sale's room is forgotten.
//! - `keys`: key names; every key of a sale shares the hash tag
//!   `{<namespace>:sale:<id>}`, so the layout is Redis Cluster-safe.
//!
//! Loss: a sale's state is one hash with a `loaded` marker. A sale this node
//! has seen whose marker is gone (Redis restarted empty, flushed, keys
//! deleted) answers `Unavailable` — never a fresh full sale — until
//! [`restore`](stampede_app::ports::StockLedger::restore) reloads it from the
//! store; restores load only missing sales, so they never double count.

pub mod cache;
mod keys;
pub mod ledger;
pub mod rate_limits;
pub mod room;
mod scripts;

#[cfg(feature = "testing")]
pub mod testing;

pub use cache::RedisCache;
pub use keys::hash_slot;
pub use ledger::{RedisLedger, RedisLedgerSettings};
pub use rate_limits::{RedisRateSettings, RedisRateStore};
pub use room::RedisRoomBook;
pub use stampede_app::ports::Reservation;
