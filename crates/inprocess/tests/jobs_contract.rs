//! The `JobQueue` contract suite (stampede_contract::jobs), run against
//! the in-process queue of embedded mode.

use std::sync::Arc;
use std::time::Duration;

use stampede_app::ports::JobQueue;
use stampede_contract::jobs::JobsFixture;
use stampede_inprocess::MemoryJobQueue;

const LEASE: Duration = Duration::from_millis(500);

struct InProcess(Arc<MemoryJobQueue>);

impl JobsFixture for InProcess {
    fn queue(&self) -> Arc<dyn JobQueue> {
        self.0.clone()
    }

    fn lease(&self) -> Duration {
        LEASE
    }
}

async fn fresh() -> Option<InProcess> {
    Some(InProcess(Arc::new(MemoryJobQueue::new(LEASE))))
}

stampede_contract::jobs_contract_tests!(fresh());
