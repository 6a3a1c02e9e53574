//! The captcha provider's verification endpoint (hCaptcha, reCAPTCHA,
//! Turnstile: all answer a `siteverify` POST the same way), the hook the
//! purchase-token route calls when one is configured.

use std::net::IpAddr;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
#[error("captcha verification unavailable: {0}")]
pub struct CaptchaError(pub String);

#[async_trait]
pub trait CaptchaVerifier: Send + Sync + 'static {
    /// Whether the provider takes `response` (what its widget gave the
    /// client) as solved, for a client at `remote_ip` if known.
    async fn verify(&self, response: &str, remote_ip: Option<IpAddr>)
    -> Result<bool, CaptchaError>;
}
