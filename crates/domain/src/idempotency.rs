//! Idempotency keys (IETF Idempotency-Key draft) and what a repeated purchase is
//! answered (I4). A key belongs to its user; what is remembered is the decision —
//! the order a key won, or the business refusal it got — together with a
//! fingerprint of the request, so the same key sent with another request is
//! recognised as a mismatch.

use std::fmt;

use crate::ValidationError;
use crate::ids::{OrderId, SaleId};
use crate::quantity::Quantity;
use crate::stock::Refusal;

/// A client's `Idempotency-Key`: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        let printable = text.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if text.is_empty() || text.len() > Self::MAX_LEN || !printable {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "must be 1 to 128 printable ASCII characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What identifies a purchase request apart from its key: the sale (the path)
/// and the quantity (the body, whatever its formatting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub sale_id: SaleId,
    pub quantity: Quantity,
}

/// A decision worth repeating to a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The key created this order.
    Won(OrderId),
    /// The key was refused for this business reason.
    Refused(Refusal),
}

/// A remembered decision and the request it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    pub fingerprint: Fingerprint,
    pub answer: Answer,
}

/// The same key came with a different request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("idempotency key reused for another request")]
pub struct Mismatch;

impl Remembered {
    /// The answer for a repeat of the request `fingerprint` with this key.
    pub fn replay(&self, fingerprint: &Fingerprint) -> Result<Answer, Mismatch> {
        if self.fingerprint == *fingerprint {
            Ok(self.answer)
        } else {
            Err(Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_128_printable_ascii_characters() {
        assert!(IdempotencyKey::parse("order-1 retry").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(128)).is_ok());
        for bad in ["", "tab\there", "naïve", "new\nline"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn a_repeat_gets_the_first_answer_and_another_request_a_mismatch() {
        let sale = SaleId::generate();
        let one = Quantity::parse("quantity", 1).unwrap();
        let two = Quantity::parse("quantity", 2).unwrap();
        let order = OrderId::generate();
        let remembered = Remembered {
            fingerprint: Fingerprint {
                sale_id: sale,
                quantity: one,
            },
            answer: Answer::Won(order),
        };
        let same = Fingerprint {
            sale_id: sale,
            quantity: one,
        };
        let more = Fingerprint {
            sale_id: sale,
            quantity: two,
        };
        let elsewhere = Fingerprint {
            sale_id: SaleId::generate(),
            quantity: one,
        };
        assert_eq!(remembered.replay(&same), Ok(Answer::Won(order)));
        assert_eq!(remembered.replay(&more), Err(Mismatch));
        assert_eq!(remembered.replay(&elsewhere), Err(Mismatch));
    }
}
