//! Short keyed tags: HMAC-SHA256 cut to its first 128 bits and written as
//! lowercase hex, for the values this service hands out and checks later
//! without keeping them (waiting-room tickets, purchase tokens, proof-of-work
//! challenges). Each kind derives its own key from the node's secret, so a
//! tag of one kind is never valid as another.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stampede_domain::ids::{SaleId, UserId};

pub type HmacSha256 = Hmac<Sha256>;

/// Bytes in a tag; twice as many hex digits.
pub const TAG_BYTES: usize = 16;

/// A key for one kind of tag, derived from `secret` with `label`.
#[derive(Clone)]
pub struct TagKey([u8; 32]);

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(..)")
    }
}

impl TagKey {
    pub fn derive(secret: &[u8], label: &str) -> Self {
        let mut mac = hmac(secret);
        mac.update(label.as_bytes());
        Self(mac.finalize().into_bytes().into())
    }

    /// A MAC under this key, for the caller to feed.
    pub fn mac(&self) -> HmacSha256 {
        hmac(&self.0)
    }

    /// A MAC fed with a sale and a user: a tag that names them, for the
    /// caller to feed further.
    pub fn scoped(&self, sale: SaleId, user: &UserId) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(sale.as_uuid().as_bytes());
        // Its length first: no two (user, what follows) feed the same bytes.
        mac.update(&(user.as_str().len() as u64).to_be_bytes());
        mac.update(user.as_str().as_bytes());
        mac
    }
}

/// The tag of a fed MAC, as hex.
pub fn hex_tag(mac: HmacSha256) -> String {
    let tag = mac.finalize().into_bytes();
    let mut text = String::with_capacity(TAG_BYTES * 2);
    for byte in &tag[..TAG_BYTES] {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Whether `text` is the hex tag of the fed `mac`, compared in constant time.
pub fn verify_hex_tag(mac: HmacSha256, text: &str) -> bool {
    hex(text).is_some_and(|tag| mac.verify_truncated_left(&tag).is_ok())
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
    use hmac::Mac;

    use super::*;

    #[test]
    fn a_tag_verifies_under_its_key_and_input_only() {
        let key = TagKey::derive(b"secret", "kind one");
        let fed = |key: &TagKey, input: &[u8]| {
            let mut mac = key.mac();
            mac.update(input);
            mac
        };
        let tag = hex_tag(fed(&key, b"a"));
        assert_eq!(tag.len(), 32);
        assert!(verify_hex_tag(fed(&key, b"a"), &tag));
        assert!(!verify_hex_tag(fed(&key, b"b"), &tag));
        let other = TagKey::derive(b"secret", "kind two");
        assert!(!verify_hex_tag(fed(&other, b"a"), &tag));
        for bad in [&tag[..30], &tag.to_uppercase(), "", "zz"] {
            assert!(!verify_hex_tag(fed(&key, b"a"), bad), "{bad}");
        }
    }
}
