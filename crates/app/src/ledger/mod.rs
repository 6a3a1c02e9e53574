//! What the app does around any stock ledger: the repair that rebuilds a sale
//! a ledger lost from the store, and the reconciler that settles reservations a
//! dead node left behind.

mod repair;

pub use repair::LedgerRepair;
