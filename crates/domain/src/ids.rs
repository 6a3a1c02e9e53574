//! Identifiers. Server-made ids are UUIDv7: time-ordered, so new rows land at the
//! end of the store's indexes (measurably faster inserts, docs/stack.md) and ids
//! sort by creation. They are opaque strings to clients.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ValidationError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub struct $name(Uuid);

        /// Read back through `parse`.
        impl TryFrom<String> for $name {
            type Error = ValidationError;

            fn try_from(text: String) -> Result<Self, ValidationError> {
                Self::parse(&text).ok_or_else(|| ValidationError::new("id", "must be a UUID"))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl $name {
            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses the textual form; `None` for anything that cannot be an id
            /// (the HTTP edge answers 404 for those, as for unknown ids).
            pub fn parse(text: &str) -> Option<Self> {
                Uuid::try_parse(text).ok().map(Self)
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A product in the catalog.
    ProductId
);
uuid_id!(
    /// A flash sale of one product.
    SaleId
);
uuid_id!(
    /// An order: one winning purchase.
    OrderId
);
uuid_id!(
    /// An event in the outbox; consumers deduplicate by it.
    EventId
);
uuid_id!(
    /// One attempt to pay an order.
    PaymentId
);
uuid_id!(
    /// A webhook subscription.
    SubscriptionId
);
uuid_id!(
    /// One event to deliver to one webhook subscription.
    DeliveryId
);

/// The buyer: the `sub` claim of a token. Any non-empty string up to 128 bytes, so
/// an external identity provider's subjects work unchanged.
///
/// Read back through [`UserId::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct UserId(String);

impl TryFrom<String> for UserId {
    type Error = ValidationError;

    fn try_from(text: String) -> Result<Self, ValidationError> {
        Self::parse(text)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: impl Into<String>) -> Result<Self, ValidationError> {
        let text = text.into();
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "sub",
                "must be a non-empty string of at most 128 bytes",
            ));
        }
        Ok(Self(text))
    }

    /// A fresh id for an account registered here: a UUIDv7 in text form.
    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_through_text_and_sort_by_creation() {
        let first = OrderId::generate();
        let second = OrderId::generate();
        assert_eq!(OrderId::parse(&first.to_string()), Some(first));
        assert!(first < second);
    }

    #[test]
    fn text_that_is_not_a_uuid_is_no_id() {
        assert_eq!(SaleId::parse("42"), None);
        assert_eq!(SaleId::parse(""), None);
        assert_eq!(SaleId::parse("../etc/passwd"), None);
    }

    #[test]
    fn user_ids_are_non_empty_and_bounded() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("u".repeat(128)).is_ok());
        assert!(UserId::parse("u".repeat(129)).is_err());
    }
}
