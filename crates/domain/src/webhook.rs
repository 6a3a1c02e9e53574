//! Webhook subscriptions: an admin asks for some event types to be POSTed,
//! signed, to a URL. Each (subscription, event) is one delivery, retried with
//! backoff until it succeeds or its attempts run out (dead letter).

use std::borrow::Cow;
use std::cell::Cell;

use crate::ValidationError;
use crate::ids::{DeliveryId, EventId, SubscriptionId};
use crate::net::AllowList;
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
    "sale.paused",
    "sale.resumed",
    "sale.ended",
    "sale.amended",
    "sale.stock_added",
    "sale.stock_withdrawn",
];

/// A target URL: an absolute `http` or `https` URL with a host, read by the
/// WHATWG rules (those of the `url` crate, which reqwest calls with), at
/// most 2048 bytes, kept in its normalised form: `HTTP://Hooks.Example.COM:443/a/../b`
/// is `https://hooks.example.com/b`, `http://2130706433/` is `http://127.0.0.1/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

/// Whether the parser had to guess at `violation`: where the authority
/// starts (`http:/x`, `http:///x`, a backslash), where the credentials end
/// (an unencoded `@`), or what characters it dropped meant. Parsers differ
/// in such guesses, so such a URL is refused rather than reinterpreted.
fn is_guess(violation: url::SyntaxViolation) -> bool {
    use url::SyntaxViolation::{
        Backslash, C0SpaceIgnored, ExpectedDoubleSlash, NullInFragment, TabOrNewlineIgnored,
        UnencodedAtSign,
    };
    matches!(
        violation,
        Backslash
            | C0SpaceIgnored
            | ExpectedDoubleSlash
            | NullInFragment
            | TabOrNewlineIgnored
            | UnencodedAtSign
    )
}

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let invalid = |message: &str| ValidationError::new("url", message);
        let guessed = Cell::new(false);
        let note = |violation| guessed.set(guessed.get() || is_guess(violation));
        let url = url::Url::options()
            .syntax_violation_callback(Some(&note))
            .parse(text)
            .map_err(|err| invalid(&format!("is not a URL: {err}")))?;
        if guessed.get() {
            return Err(invalid(
                "must be written plainly: `//` after the scheme, no backslashes, \
                 spaces, tabs or unencoded `@`",
            ));
        }
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid("must be an http:// or https:// URL with a host"));
        }
        let url = String::from(url);
        if text.len().max(url.len()) > 2048 {
            return Err(invalid("must be at most 2048 bytes"));
        }
        Ok(Self(url))
    }

    /// A URL as a store kept it. One stored under older, looser rules is
    /// kept as it was, so its subscription still lists and can be deleted;
    /// delivery reads it again and fails what does not parse.
    pub fn from_store(text: &str) -> Self {
        Self::parse(text).unwrap_or_else(|_| Self(text.to_owned()))
    }

    /// Refuses, at creation, a URL whose host is an address that is not
    /// public, or `localhost`, unless `allow` lets it through (delivery
    /// would refuse it; other names are checked at delivery, once resolved).
    pub fn check_destination(&self, allow: &AllowList) -> Result<(), ValidationError> {
        let permitted = match url::Url::parse(&self.0) {
            Ok(url) => url.host().is_some_and(|host| allow.permits_host(&host)),
            Err(_) => false,
        };
        if permitted {
            Ok(())
        } else {
            Err(ValidationError::new(
                "url",
                "must not name a loopback, private, link-local or other non-public address",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without its credentials (`https://user:secret@host/` is
    /// `https://host/`): what logs and error messages may show.
    pub fn redacted(&self) -> Cow<'_, str> {
        let text = self.0.as_str();
        let Some(start) = text.find("://").map(|at| at + 3) else {
            return text.into();
        };
        let end = text[start..]
            .find(['/', '?', '#', '\\'])
            .map_or(text.len(), |at| start + at);
        match text[start..end].rfind('@') {
            Some(at) => format!("{}{}", &text[..start], &text[start + at + 1..]).into(),
            None => text.into(),
        }
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
            "http:/example.com/",
            "http:\\\\example.com\\",
            "http://a@b@example.com/",
            " http://example.com/",
            "http://exa\tmple.com/",
            "mailto:x@example.com",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(WebhookUrl::parse(&long).is_err());
    }

    #[test]
    fn what_is_not_a_url_is_refused() {
        for bad in ["http://[/", "http://[1:2]/", "http://x:[1]/", "http://x]/"] {
            let err = WebhookUrl::parse(bad).unwrap_err();
            assert_eq!(err.field, "url", "{bad}");
        }
    }

    #[test]
    fn urls_are_kept_normalised() {
        for (given, kept) in [
            (
                "HTTPS://Hooks.Example.COM:443/a/../b",
                "https://hooks.example.com/b",
            ),
            ("http://example.com", "http://example.com/"),
            ("http://2130706433:8080/x", "http://127.0.0.1:8080/x"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://[0:0::1]/", "http://[::1]/"),
            (
                "https://bücher.example/ä",
                "https://xn--bcher-kva.example/%C3%A4",
            ),
        ] {
            assert_eq!(WebhookUrl::parse(given).unwrap().as_str(), kept);
        }
    }

    #[test]
    fn literal_addresses_and_localhost_must_be_public_or_allowed() {
        let none = AllowList::default();
        for url in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://LocalHost./",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
        ] {
            let parsed = WebhookUrl::parse(url).unwrap();
            assert!(parsed.check_destination(&none).is_err(), "{url}");
        }
        for url in [
            "https://hooks.example.com/",
            "http://8.8.8.8/",
            "http://internal.corp/",
        ] {
            let parsed = WebhookUrl::parse(url).unwrap();
            assert!(parsed.check_destination(&none).is_ok(), "{url}");
        }
        let allow = AllowList::parse("127.0.0.1,10.0.0.0/8").unwrap();
        for url in ["http://127.1/", "http://10.1.2.3/", "http://localhost/"] {
            let parsed = WebhookUrl::parse(url).unwrap();
            assert!(parsed.check_destination(&allow).is_ok(), "{url}");
        }
    }

    #[test]
    fn redacted_urls_lose_their_credentials() {
        let url = WebhookUrl::parse("https://user:p%40ss@hooks.example.com/x?a=b@c").unwrap();
        assert_eq!(url.redacted(), "https://hooks.example.com/x?a=b@c");
        let plain = WebhookUrl::parse("https://hooks.example.com/x").unwrap();
        assert_eq!(plain.redacted(), "https://hooks.example.com/x");
        let legacy = WebhookUrl::from_store("http://u:secret@[/");
        assert_eq!(legacy.as_str(), "http://u:secret@[/");
        assert_eq!(legacy.redacted(), "http://[/");
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
