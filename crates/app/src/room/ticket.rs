//! Waiting-room tickets: `<number>.<mac>`, the MAC (HMAC-SHA256, its first
//! 128 bits in hex) over the sale, the user and the number, under a key
//! derived from the node's JWT secret, so every node of a cluster reads the
//! tickets any node issued, and a ticket names nobody else's place: shown by
//! another user, or for another sale, it does not verify.

use stampede_domain::ids::{SaleId, UserId};

use crate::auth::tags::{self, HmacSha256, TagKey};

/// The longest ticket text: 20 digits, a dot, 32 hex digits.
pub const MAX_LEN: usize = 53;

/// The key tickets are signed with.
#[derive(Debug, Clone)]
pub struct TicketKey {
    key: TagKey,
}

impl TicketKey {
    /// Derived from `secret` (the JWT secret) with a label of its own, so a
    /// ticket's MAC is never a token's.
    pub fn derive(secret: &[u8]) -> Self {
        Self {
            key: TagKey::derive(secret, "stampede waiting-room tickets v1"),
        }
    }

    pub fn issue(&self, sale: SaleId, user: &UserId, ticket: u64) -> String {
        format!("{ticket}.{}", tags::hex_tag(self.mac(sale, user, ticket)))
    }

    /// The ticket's number, if `text` is a ticket this key issued to `user`
    /// for `sale`. The MAC is compared in constant time.
    pub fn read(&self, sale: SaleId, user: &UserId, text: &str) -> Option<u64> {
        if text.len() > MAX_LEN {
            return None;
        }
        let (number, tag) = text.split_once('.')?;
        // Digits as `issue` writes them: no sign, no leading zero.
        let canonical = !number.is_empty()
            && number.len() <= 20
            && number.bytes().all(|b| b.is_ascii_digit())
            && !(number.len() > 1 && number.starts_with('0'));
        if !canonical {
            return None;
        }
        let ticket: u64 = number.parse().ok()?;
        tags::verify_hex_tag(self.mac(sale, user, ticket), tag).then_some(ticket)
    }

    fn mac(&self, sale: SaleId, user: &UserId, ticket: u64) -> HmacSha256 {
        use hmac::Mac;
        let mut mac = self.key.scoped(sale, user);
        mac.update(&ticket.to_be_bytes());
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn a_ticket_reads_back_for_its_user_and_sale_only() {
        let key = TicketKey::derive(b"secret");
        let (sale, other_sale) = (SaleId::generate(), SaleId::generate());
        let text = key.issue(sale, &user("ann"), 42);
        assert!(text.starts_with("42.") && text.len() == 3 + 32, "{text}");
        assert_eq!(key.read(sale, &user("ann"), &text), Some(42));
        assert_eq!(key.read(sale, &user("bob"), &text), None, "another user");
        assert_eq!(
            key.read(other_sale, &user("ann"), &text),
            None,
            "another sale"
        );
        let other_key = TicketKey::derive(b"another secret");
        assert_eq!(
            other_key.read(sale, &user("ann"), &text),
            None,
            "another key"
        );
    }

    #[test]
    fn a_changed_or_malformed_ticket_is_not_read() {
        let key = TicketKey::derive(b"secret");
        let sale = SaleId::generate();
        let ann = user("ann");
        let text = key.issue(sale, &ann, 7);
        let (_, tag) = text.split_once('.').unwrap();
        for forged in [
            format!("8.{tag}"),
            format!("07.{tag}"),
            format!("7.{}", tag.to_uppercase()),
            format!("7.{}", &tag[..30]),
            format!("7.{tag}00"),
            format!("+7.{tag}"),
            format!(".{tag}"),
            "7".to_owned(),
            String::new(),
            "x".repeat(1000),
        ] {
            assert_eq!(key.read(sale, &ann, &forged), None, "{forged}");
        }
    }
}
