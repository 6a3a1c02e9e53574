//! Stampede's domain core: the vocabulary of a flash sale and the rules that keep
//! the contract (docs/design.md §1). Plain Rust: no I/O, no async runtime,
//! no clock of its own — callers pass `now`.
//!
//! - [`ids`], [`time`], [`money`], [`quantity`]: validated newtypes (parse, don't validate).
//! - [`catalog`]: products and sales, and how a sale's status follows from time and stock.
//! - [`stock`]: the stock book of one sale — remaining units and each buyer's holding —
//!   where "no oversell" (I1) and "per-user limits hold" (I3) are decided.
//! - [`idempotency`]: keys, request fingerprints and what a repeated request is answered (I4).
//! - [`order`]: orders and their state machine (I6, I7).
//! - [`payment`]: payment attempts and what a provider's answer does to an order.
//! - [`webhook`]: subscriptions to events and their deliveries.
//! - [`net`]: address ranges, and which addresses a client-supplied URL may reach.
//! - [`account`]: users, e-mail addresses, passwords and roles.
//! - [`error`]: the validation error every parser returns.

pub mod account;
pub mod catalog;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod net;
pub mod order;
pub mod payment;
pub mod quantity;
pub mod stock;
pub mod time;
pub mod webhook;

pub use error::ValidationError;
