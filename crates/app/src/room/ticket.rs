//! Waiting-room tickets: `<number>.<mac>`, the MAC (HMAC-SHA256, its first
//! 128 bits in hex) over the sale, the user and the number, under a key
//! derived from the node's JWT secret, so every node of a cluster reads the
//! tickets any node issued, and a ticket names nobody else's place: shown by
//! another user, or for another sale, it does not verify.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stampede_domain::ids::{SaleId, UserId};

type HmacSha256 = Hmac<Sha256>;

/// The longest ticket text: 20 digits, a dot, 32 hex digits.
pub const MAX_LEN: usize = 53;

const TAG_BYTES: usize = 16;

/// The key tickets are signed with.
#[derive(Clone)]
pub struct TicketKey {
    key: [u8; 32],
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(..)")
    }
}

impl TicketKey {
    /// Derived from `secret` (the JWT secret) with a label of its own, so a
    /// ticket's MAC is never a token's.
    pub fn derive(secret: &[u8]) -> Self {
        let mut mac = hmac(secret);
        mac.update(b"stampede waiting-room tickets v1");
        Self {
            key: mac.finalize().into_bytes().into(),
        }
    }

    pub fn issue(&self, sale: SaleId, user: &UserId, ticket: u64) -> String {
        let tag = self.mac(sale, user, ticket).finalize().into_bytes();
        let mut text = format!("{ticket}.");
        for byte in &tag[..TAG_BYTES] {
            let _ = write!(text, "{byte:02x}");
        }
        text
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
        let tag = hex(tag)?;
        self.mac(sale, user, ticket)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| ticket)
    }

    fn mac(&self, sale: SaleId, user: &UserId, ticket: u64) -> HmacSha256 {
        let mut mac = hmac(&self.key);
        mac.update(sale.as_uuid().as_bytes());
        // Lengths first: no two (user, number) pairs feed the same bytes.
        mac.update(&(user.as_str().len() as u64).to_be_bytes());
        mac.update(user.as_str().as_bytes());
        mac.update(&ticket.to_be_bytes());
        mac
    }
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts keys of any length"),
    }
}

/// Exactly `TAG_BYTES` bytes from lowercase hex.
fn hex(text: &str) -> Option<[u8; TAG_BYTES]> {
    if text.len() != TAG_BYTES * 2 {
        return None;
    }
    let mut out = [0u8; TAG_BYTES];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
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
