//! Webhook notifications (docs/design.md §7): admins subscribe a URL
//! to event types; the `webhooks` consumer turns each event into one delivery
//! per matching subscription (idempotent per subscription and event), and the
//! delivery worker POSTs them signed, retrying with backoff and full jitter
//! behind a circuit breaker per endpoint, until delivered or dead-lettered.
//! A subscriber's URL is an API client's choice: it must name a public
//! address unless `allow_hosts` lets it through (domain `net`); the sender
//! checks the addresses it connects to, and [`WebhookService::subscribe`]
//! refuses the URLs it can tell already (IP literals, `localhost`).
//! Signing secrets are sealed before the store sees them ([`sealing`]).

mod sealing;

use std::sync::Arc;
use std::time::Duration;

use stampede_domain::ids::{DeliveryId, SubscriptionId};
use stampede_domain::net::AllowList;
use stampede_domain::webhook::{
    Delivery, DeliveryStatus, EventFilter, SigningSecret, Subscription, WebhookUrl,
};

pub use sealing::SecretSealer;
use stampede_flow::breaker::BreakerConfig;
use stampede_flow::retry::RetryPolicy;
use tokio::sync::Notify;

use crate::error::AppError;
use crate::paging;
use crate::ports::{Clock, WebhookStore};

/// How deliveries are attempted (the `webhook_*` settings: the timeout, the
/// attempts, the backoff's first delay and the allow-list).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Longest wait for one POST.
    #[serde(rename = "timeout_ms", with = "stampede_flow::serde_duration::millis")]
    pub timeout: Duration,
    /// Attempts before a delivery is dead; the caller keeps
    /// `backoff.max_attempts` equal to it.
    pub max_attempts: u32,
    /// The schedule between attempts (full jitter, capped).
    #[serde(rename = "backoff_ms", with = "backoff_base")]
    pub backoff: RetryPolicy,
    /// Hosts and ranges subscribers may be at though they are not public
    /// (internal subscribers, tests); the sender and `subscribe` apply it.
    pub allow_hosts: AllowList,
    /// The breaker each endpoint gets.
    #[serde(skip)]
    pub breaker: BreakerConfig,
    /// POSTs in flight at once, across endpoints.
    #[serde(skip)]
    pub concurrency: usize,
    /// How often the worker looks for due deliveries without a wake-up.
    #[serde(skip)]
    pub poll: Duration,
}

/// `backoff_ms`: the backoff's first delay; its cap is the default's.
mod backoff_base {
    use serde::{Deserializer, Serializer};
    use stampede_flow::retry::RetryPolicy;
    use stampede_flow::serde_duration::millis;

    pub fn serialize<S: Serializer>(value: &RetryPolicy, serializer: S) -> Result<S::Ok, S::Error> {
        millis::serialize(&value.base, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<RetryPolicy, D::Error> {
        Ok(RetryPolicy {
            base: millis::deserialize(deserializer)?,
            ..super::WebhookSettings::default().backoff
        })
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_attempts: 8,
            backoff: RetryPolicy {
                max_attempts: 8,
                base: Duration::from_secs(1),
                cap: Duration::from_secs(600),
            },
            allow_hosts: AllowList::default(),
            breaker: BreakerConfig {
                minimum_calls: 5,
                wait_in_open: Duration::from_secs(30),
                ..BreakerConfig::default()
            },
            concurrency: 16,
            poll: Duration::from_millis(250),
        }
    }
}

/// A new subscription's fields as an admin sends them.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub url: String,
    pub event_types: Vec<String>,
    /// Generated when absent.
    pub secret: Option<String>,
}

pub struct WebhookService {
    pub(crate) store: Arc<dyn WebhookStore>,
    pub(crate) clock: Arc<dyn Clock>,
    sealer: SecretSealer,
    /// Wakes the delivery worker when deliveries were scheduled.
    pub(crate) wake: Arc<Notify>,
    /// What subscribers may be at beyond public addresses.
    allow_hosts: AllowList,
}

impl WebhookService {
    pub fn new(
        store: Arc<dyn WebhookStore>,
        clock: Arc<dyn Clock>,
        sealer: SecretSealer,
        allow_hosts: AllowList,
    ) -> Self {
        Self {
            store,
            clock,
            sealer,
            wake: Arc::new(Notify::new()),
            allow_hosts,
        }
    }

    /// Validates and stores a subscription with its secret (given or
    /// generated) sealed; the secret in clear is returned beside it, the only
    /// time it is shown. A URL whose host is an address that is not public,
    /// or `localhost`, is refused here, unless allowed; a name is checked at
    /// each delivery, once resolved.
    pub async fn subscribe(
        &self,
        new: NewSubscription,
    ) -> Result<(Subscription, SigningSecret), AppError> {
        let url = WebhookUrl::parse(&new.url)?;
        url.check_destination(&self.allow_hosts)?;
        let events = EventFilter::parse(&new.event_types)?;
        let secret = match new.secret {
            Some(secret) => SigningSecret::parse(&secret)?,
            None => SigningSecret::parse(&random_secret()?)?,
        };
        let id = SubscriptionId::generate();
        let subscription = Subscription {
            id,
            url,
            events,
            secret: self.sealer.seal(id, &secret)?,
            created_at: self.clock.now(),
        };
        self.store.insert_subscription(&subscription).await?;
        Ok((subscription, secret))
    }

    /// The secret to sign `subscription`'s deliveries with.
    pub fn signing_secret(&self, subscription: &Subscription) -> Result<SigningSecret, AppError> {
        Ok(self
            .sealer
            .open(subscription.id, &subscription.secret)?
            .secret)
    }

    /// At start-up: seals the secrets stored in clear by builds before
    /// sealing, and checks that every sealed one opens with this node's key
    /// (a node with another key would sign nothing), so a wrong key stops
    /// the start instead of every delivery. Returns how many it sealed.
    pub async fn seal_clear_secrets(&self) -> Result<usize, AppError> {
        let mut sealed = 0;
        for subscription in self.store.subscriptions().await? {
            let opened = self.sealer.open(subscription.id, &subscription.secret)?;
            if !opened.was_clear {
                continue;
            }
            let new = self.sealer.seal(subscription.id, &opened.secret)?;
            // Another node starting at once may have sealed it first.
            if self
                .store
                .replace_subscription_secret(subscription.id, &subscription.secret, &new)
                .await?
            {
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    pub async fn list(&self) -> Result<Vec<Subscription>, AppError> {
        Ok(self.store.subscriptions().await?)
    }

    pub async fn get(&self, id: SubscriptionId) -> Result<Subscription, AppError> {
        self.store.subscription(id).await?.ok_or(AppError::NotFound)
    }

    pub async fn unsubscribe(&self, id: SubscriptionId) -> Result<(), AppError> {
        if self.store.delete_subscription(id).await? {
            Ok(())
        } else {
            Err(AppError::NotFound)
        }
    }

    /// A page of a subscription's deliveries, newest first (dead letters
    /// with `status = dead`).
    pub async fn deliveries(
        &self,
        id: SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<(Vec<Delivery>, Option<DeliveryId>), AppError> {
        self.get(id).await?;
        let items = self.store.deliveries(id, status, before, limit + 1).await?;
        Ok(paging::split(items, limit, |d| d.id))
    }
}

fn random_secret() -> Result<String, AppError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| AppError::internal(format!("reading randomness: {e}")))?;
    Ok(format!(
        "whsec_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}
