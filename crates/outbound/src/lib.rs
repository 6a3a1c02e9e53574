//! Adapters for what Stampede calls out to over HTTP:
//!
//! - [`SimulatedProvider`]: the built-in payment provider, for tests and
//!   drills — latency, declines and errors as settings; it confirms each
//!   charge later by calling Stampede's signed payment webhook, like a real
//!   provider.
//! - [`HttpWebhookSender`]: POSTs webhook notifications, through the
//!   [`GuardedClient`].
//! - [`GuardedClient`]: the client for URLs an API client supplies; it
//!   reaches only public addresses, or those the operator allows.
//! - [`HttpCaptchaVerifier`]: the captcha provider's verification call.
//! - [`client`]: the shared HTTP client setup (TLS by rustls on ring).

mod captcha;
mod client;
mod guard;
mod payment_sim;
mod webhook_sender;

pub use captcha::HttpCaptchaVerifier;
pub use client::{client, install_tls_provider};
pub use guard::{GuardedClient, Refused};
pub use payment_sim::{SimulatedProvider, SimulatedSettings};
pub use webhook_sender::HttpWebhookSender;
