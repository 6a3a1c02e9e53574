//! A progress line per second on stderr, only when stderr is a terminal (so
//! logs and CI output stay clean, and `--json` on stdout is never mixed).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::outcome::Outcome;
use crate::report::Recorder;

/// Whether and how to show progress for one phase.
#[derive(Debug, Clone)]
pub struct Progress {
    phase: &'static str,
}

impl Progress {
    /// `Some` when stderr is a terminal.
    pub fn for_phase(phase: &'static str) -> Option<Self> {
        std::io::stderr().is_terminal().then_some(Self { phase })
    }

    /// Prints a line a second, from `snapshot` (the counts so far) and the
    /// time since `started`, until aborted.
    pub(crate) fn start(
        self,
        started: Instant,
        snapshot: impl Fn() -> Recorder + Send + 'static,
    ) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.tick().await;
            let mut before = 0u64;
            loop {
                ticker.tick().await;
                let now = snapshot();
                let total = now.total();
                let secs = started.elapsed().as_secs();
                let mut line = format!(
                    "[{:<8} {secs:>3}s] {:>8} req/s",
                    self.phase,
                    total.saturating_sub(before)
                );
                for outcome in Outcome::ALL {
                    let n = now.count(outcome);
                    if n > 0 {
                        line.push_str(&format!("  {} {n}", outcome.name()));
                    }
                }
                eprintln!("{line}");
                before = total;
            }
        })
    }
}
