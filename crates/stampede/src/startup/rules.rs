//! Replacing the rate-limit rules while serving (docs/design.md §8.1), as
//! two workers on the node's one driver: following the cluster's stored set
//! (cluster mode), and reading the configuration again on `SIGHUP`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stampede_app::workers::{Next, StepError, Worker, doubling};
use stampede_http::limits::RateLimitRule;
use stampede_http::live_rules::{ReplaceError, Source};
use stampede_http::protect::Protection;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// How often a node looks for the cluster's new rules: a replacement
/// reaches every node within about this.
pub(super) const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Cluster mode: adopts the rule set another node stored (one read of its
/// version each poll).
pub(super) struct FollowRules(pub Arc<Protection>);

#[async_trait]
impl Worker for FollowRules {
    fn name(&self) -> String {
        "rate-limit-rules".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        self.0.rules().follow().await?;
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(FOLLOW_EVERY).await;
    }

    /// Redis back soon is followed soon: at most 5 s between tries.
    fn backoff(&self, failures: u32) -> Duration {
        doubling(FOLLOW_EVERY, failures, Duration::from_secs(5))
    }
}

/// The rules the configuration gives now (file, environment, flags), or why
/// it cannot be read.
pub type LoadRules = Box<dyn Fn() -> anyhow::Result<Vec<RateLimitRule>> + Send>;

/// On `SIGHUP`: the configuration read again and its rules put in force (in
/// cluster mode, for every node); a file that does not load or validate is
/// logged and changes nothing.
pub(super) struct ReloadOnHangup {
    protection: Arc<Protection>,
    load: LoadRules,
    hangups: Signal,
    /// A `SIGHUP` arrived since the last step.
    pending: bool,
}

impl ReloadOnHangup {
    /// Listens from now on: a `SIGHUP` no longer ends the process.
    pub(super) fn new(protection: Arc<Protection>, load: LoadRules) -> std::io::Result<Self> {
        Ok(Self {
            protection,
            load,
            hangups: signal(SignalKind::hangup())?,
            pending: false,
        })
    }
}

#[async_trait]
impl Worker for ReloadOnHangup {
    fn name(&self) -> String {
        "rule-reload".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        if !std::mem::take(&mut self.pending) {
            return Ok(Next::Idle);
        }
        let rules = match (self.load)() {
            Ok(rules) => rules,
            Err(err) => {
                tracing::warn!(reason = %format!("{err:#}"), "SIGHUP: the configuration does not load; the rate limit rules stay");
                return Ok(Next::Idle);
            }
        };
        match self.protection.rules().replace(rules, Source::Sighup).await {
            Ok(_) => {}
            Err(ReplaceError::Invalid(err)) => {
                tracing::warn!(reason = %err, "SIGHUP: the configuration's rate limit rules are refused; the old rules stay");
            }
            // Retried by the driver after its backoff: the file is fine.
            Err(ReplaceError::Unavailable(err)) => {
                self.pending = true;
                return Err(Box::new(err));
            }
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        if self.hangups.recv().await.is_some() {
            self.pending = true;
        } else {
            std::future::pending::<()>().await;
        }
    }
}
