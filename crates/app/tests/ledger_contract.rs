//! The `StockLedger` contract suite (stampede_app::contract::ledger), run
//! against the in-memory ledger of embedded mode.

use std::sync::Arc;

use stampede_app::contract::ledger::NOW;
use stampede_app::ledger::{KeyMemorySettings, MemoryLedger};
use stampede_app::ports::StockLedger;

async fn fresh_ledger() -> Option<Arc<dyn StockLedger>> {
    Some(Arc::new(MemoryLedger::new(
        KeyMemorySettings::default(),
        NOW,
    )))
}

stampede_app::ledger_contract_tests!(fresh_ledger());
