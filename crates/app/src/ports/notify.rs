//! Outbound HTTP for webhook notifications: one signed POST, with a timeout.

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SendError(pub String);

#[async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// POSTs `body` (JSON) with `headers` to `url`; the HTTP status, or why
    /// there was none (connection refused, timeout, …).
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, SendError>;
}
