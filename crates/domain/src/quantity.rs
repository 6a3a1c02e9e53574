//! Counts of units: how many a sale offers, how many a purchase asks for.

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A positive number of units, at most [`Quantity::MAX`].
/// Read back through [`Quantity::parse`]: stored or sent JSON cannot make
/// one out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "i64")]
pub struct Quantity(u32);

impl TryFrom<i64> for Quantity {
    type Error = ValidationError;

    fn try_from(value: i64) -> Result<Self, ValidationError> {
        Self::parse("quantity", value)
    }
}

impl From<Quantity> for u32 {
    fn from(quantity: Quantity) -> u32 {
        quantity.0
    }
}

impl Quantity {
    /// A billion units: more than any sale needs, small enough that sums of
    /// quantities never overflow a `u64` and prices times quantities an `i64`.
    pub const MAX: u32 = 1_000_000_000;

    pub fn parse(field: &'static str, value: i64) -> Result<Self, ValidationError> {
        match u32::try_from(value) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(ValidationError::new(
                field,
                format!("must be an integer from 1 to {}", Self::MAX),
            )),
        }
    }

    pub const fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_positive_and_bounded() {
        assert!(Quantity::parse("quantity", 0).is_err());
        assert!(Quantity::parse("quantity", -5).is_err());
        assert!(Quantity::parse("quantity", i64::from(Quantity::MAX) + 1).is_err());
        assert_eq!(Quantity::parse("quantity", 3).unwrap().get(), 3);
    }
}
