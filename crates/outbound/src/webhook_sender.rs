//! Webhook notifications over HTTP(S).

use std::time::Duration;

use async_trait::async_trait;
use stampede_app::ports::{SendError, WebhookSender};

pub struct HttpWebhookSender {
    client: reqwest::Client,
}

impl HttpWebhookSender {
    pub fn new() -> reqwest::Result<Self> {
        Ok(Self {
            client: crate::client(concat!("stampede-webhooks/", env!("CARGO_PKG_VERSION")))?,
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
        let mut request = self.client.post(url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.map_err(|err| {
            SendError(if err.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if err.is_connect() {
                "connection failed".to_owned()
            } else {
                format!("request failed: {err}")
            })
        })?;
        Ok(response.status().as_u16())
    }
}
