//! The `RoomBook` contract suite (stampede_contract::room), run against the
//! waiting rooms' book of embedded mode.

use std::sync::Arc;

use stampede_app::ports::RoomBook;
use stampede_inprocess::MemoryRoomBook;

async fn fresh_book() -> Option<Arc<dyn RoomBook>> {
    Some(Arc::new(MemoryRoomBook::new()))
}

stampede_contract::room_contract_tests!(fresh_book());
