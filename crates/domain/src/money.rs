//! Money as integer minor units with an ISO 4217 currency code: no floats anywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A three-letter ISO 4217 code such as `EUR` or `CNY`. Only the shape is checked:
/// three upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        match text.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(ValidationError::new(
                "currency",
                "must be an ISO 4217 code of three upper-case letters, e.g. EUR",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters get in through `parse`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A non-negative price in minor units (cents), bounded so that a price times any
/// allowed quantity still fits in an `i64`.
///
/// Read back through [`Cents::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "i64", try_from = "i64")]
pub struct Cents(i64);

impl TryFrom<i64> for Cents {
    type Error = ValidationError;

    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::parse("price_cents", value)
    }
}

impl From<Cents> for i64 {
    fn from(cents: Cents) -> i64 {
        cents.0
    }
}

impl Cents {
    /// 10^12 minor units: ten billion in a two-decimal currency.
    pub const MAX: i64 = 1_000_000_000_000;

    pub fn parse(field: &'static str, value: i64) -> Result<Self, ValidationError> {
        if (0..=Self::MAX).contains(&value) {
            Ok(Self(value))
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "must be an integer number of minor units from 0 to {}",
                    Self::MAX
                ),
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The amount for `quantity` units. Saturates rather than overflows; with the
    /// bounds on price and quantity it never has to.
    pub fn times(self, quantity: u32) -> i64 {
        self.0.saturating_mul(i64::from(quantity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes_are_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prices_are_non_negative_and_bounded() {
        assert!(Cents::parse("price_cents", -1).is_err());
        assert!(Cents::parse("price_cents", Cents::MAX + 1).is_err());
        assert_eq!(Cents::parse("price_cents", 1999).unwrap().times(3), 5997);
    }
}
