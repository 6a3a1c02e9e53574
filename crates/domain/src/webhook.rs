//! Webhook subscriptions: an admin asks for some event types to be POSTed,
//! signed, to a URL. Each (subscription, event) is one delivery, retried with
//! backoff until it succeeds or its attempts run out (dead letter).

use crate::ValidationError;
use crate::ids::{DeliveryId, EventId, SubscriptionId};
use crate::time::Timestamp;

/// The event types a subscription may ask for; `*` means all of them.
pub const EVENT_TYPES: &[&str] = &[
    "order.created",
    "order.paid",
    "order.cancelled",
    "order.expired",
    "payment.requested",
    "payment.submitted",
    "payment.declined",
    "payment.failed",
    "payment.refund_required",
    "product.created",
    "sale.created",
];

/// A target URL: `http` or `https`, with a host, at most 2048 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let invalid =
            || ValidationError::new("url", "must be an http:// or https:// URL with a host");
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or_else(invalid)?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let valid = text.len() <= 2048
            && !host.is_empty()
            && !host.starts_with(':')
            && text.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which events a subscription wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    /// A non-empty list of known types, or `["*"]`.
    pub fn parse(types: &[String]) -> Result<Self, ValidationError> {
        let known = |t: &String| t == "*" || EVENT_TYPES.contains(&t.as_str());
        if types.is_empty() || types.len() > 32 || !types.iter().all(known) {
            return Err(ValidationError::new(
                "event_types",
                format!(
                    "must be a non-empty list of `*` or of {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        let mut types = types.to_vec();
        types.sort();
        types.dedup();
        Ok(Self(types))
    }

    pub fn matches(&self, event_type: &str) -> bool {
        self.0.iter().any(|t| t == "*" || t == event_type)
    }

    pub fn types(&self) -> &[String] {
        &self.0
    }
}

/// A signing secret: 16 to 256 printable ASCII characters.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        if (16..=256).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(text.to_owned()))
        } else {
            Err(ValidationError::new(
                "secret",
                "must be 16 to 256 printable ASCII characters without spaces",
            ))
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// A signing secret as the store keeps it: sealed by the app
/// (`stampede_app::webhooks`), or in clear in rows written before secrets
/// were sealed. Opaque to the stores: non-empty printable ASCII.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret(String);

impl StoredSecret {
    pub fn parse(text: &str) -> Option<Self> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredSecret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub url: WebhookUrl,
    pub events: EventFilter,
    pub secret: StoredSecret,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    Delivered,
    /// Every attempt failed: kept, visible, never retried on its own.
    Dead,
}

impl DeliveryStatus {
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One event for one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub subscription_id: SubscriptionId,
    pub event_id: EventId,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(WebhookUrl::parse("https://hooks.example.com/stampede?x=1").is_ok());
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "http:///path",
            "https://:80/",
            "https://a b",
            "example.com",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_take_known_types_or_everything() {
        let all = EventFilter::parse(&["*".into()]).unwrap();
        assert!(all.matches("order.paid"));
        let some = EventFilter::parse(&["order.paid".into(), "order.paid".into()]).unwrap();
        assert_eq!(some.types(), ["order.paid"]);
        assert!(!some.matches("order.created"));
        assert!(EventFilter::parse(&[]).is_err());
        assert!(EventFilter::parse(&["order.shipped".into()]).is_err());
    }

    #[test]
    fn secrets_are_long_enough_and_never_printed() {
        assert!(SigningSecret::parse("short").is_err());
        let secret = SigningSecret::parse("a-long-enough-secret").unwrap();
        assert_eq!(format!("{secret:?}"), "SigningSecret(***)");
    }
}
