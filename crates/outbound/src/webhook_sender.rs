//! Webhook notifications over HTTP(S), through the [`GuardedClient`]: a
//! subscriber's URL is an API client's choice.

use std::time::Duration;

use async_trait::async_trait;
use stampede_app::ports::{SendError, WebhookSender};
use stampede_domain::net::AllowList;

use crate::guard::{GuardedClient, Refused};

pub struct HttpWebhookSender {
    client: GuardedClient,
}

impl HttpWebhookSender {
    /// `allow`: the hosts and ranges subscribers may be at though they are
    /// not public (`webhook_allow_hosts`).
    pub fn new(allow: AllowList) -> reqwest::Result<Self> {
        Ok(Self {
            client: GuardedClient::new(
                concat!("stampede-webhooks/", env!("CARGO_PKG_VERSION")),
                allow,
            )?,
        })
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<u16, SendError> {
        let refused = |refused: Refused| SendError(refused.to_string());
        let mut request = self.client.post(url).map_err(refused)?;
        request = request.timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        // The errors leave the URL out: it may carry credentials.
        let response = request.send().await.map_err(|err| {
            SendError(if let Some(refusal) = Refused::behind(&err) {
                refusal.to_string()
            } else if err.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if err.is_connect() {
                "connection failed".to_owned()
            } else {
                format!("request failed: {}", err.without_url())
            })
        })?;
        Ok(response.status().as_u16())
    }
}
