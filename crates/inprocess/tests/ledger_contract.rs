//! The `StockLedger` contract suite (stampede_contract::ledger), run
//! against the in-memory ledger of embedded mode.

use std::sync::Arc;

use stampede_app::ledger::KeyMemorySettings;
use stampede_app::ports::StockLedger;
use stampede_contract::ledger::NOW;
use stampede_inprocess::MemoryLedger;

async fn fresh_ledger() -> Option<Arc<dyn StockLedger>> {
    Some(Arc::new(MemoryLedger::new(
        KeyMemorySettings::default(),
        NOW,
    )))
}

stampede_contract::ledger_contract_tests!(fresh_ledger());
