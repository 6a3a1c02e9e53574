//! Key names. Every key of one sale carries the hash tag `{<ns>:sale:<id>}`, so
//! each script touches one cluster slot; a key's binding to its sale has a
//! slot of its own. All names start with `{<ns>:`, so one namespace can be
//! listed (and deleted) with `SCAN MATCH {<ns>:*`.
//!
//! Layout, for namespace `ns` and sale `S`:
//!
//! - `{ns:sale:S}` — hash: the terms (`quantity`, `limit`, `starts`, `ends`,
//!   `state`, and the sale's `version` they are from; a hash written before
//!   live sale controls has neither of the last two: running, version 0),
//!   `remaining` (below 0 while withdrawn units are still reserved), the
//!   `loaded` marker (or `loading` while a restore writes it),
//!   `h:<user>` units each buyer holds, and `r:<scoped key>` =
//!   `<reserved at ms>:<quantity>` for each reservation not settled yet. One
//!   key, so the stock of a sale vanishes or survives as a whole.
//! - `{ns:sale:S}:key:<scoped key>` — a remembered answer, with a TTL:
//!   `w:<quantity>:<order id>` or `r:<quantity>:<refusal slug>`.
//! - `{ns:key:<scoped key>}` — the sale a key is bound to, with a TTL.

use stampede_app::ports::LedgerError;
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{SaleId, UserId};

/// A validated namespace: 1 to 64 of `[A-Za-z0-9._-]`. No `:`, so no namespace's
/// keys can match another's `{<ns>:*` pattern, and no glob or brace characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace(String);

impl Namespace {
    pub(crate) fn parse(text: &str) -> Result<Self, LedgerError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(LedgerError::unavailable(format!(
                "redis ledger namespace {text:?} must be 1 to 64 of [A-Za-z0-9._-]"
            )))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash of a sale; also the hash tag of all its keys.
    pub(crate) fn sale(&self, sale: SaleId) -> String {
        format!("{{{}:sale:{sale}}}", self.0)
    }

    /// Where the answer of a key used on `sale` is remembered.
    pub(crate) fn record(&self, sale: SaleId, scoped: &str) -> String {
        format!("{{{}:sale:{sale}}}:key:{scoped}", self.0)
    }

    /// Which sale a key is bound to.
    pub(crate) fn binding(&self, scoped: &str) -> String {
        format!("{{{}:key:{scoped}}}", self.0)
    }
}

/// A key as scoped to its user, `<user length>:<user>:<key>`: unambiguous
/// whatever bytes the user id holds.
pub(crate) fn scoped(user: &UserId, key: &IdempotencyKey) -> String {
    let user = user.as_str();
    format!("{}:{user}:{}", user.len(), key.as_str())
}

/// The user and key of a scoped key.
pub(crate) fn unscope(scoped: &str) -> Option<(UserId, IdempotencyKey)> {
    let (len, rest) = scoped.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let user = rest.get(..len)?;
    let key = rest.get(len..)?.strip_prefix(':')?;
    Some((UserId::parse(user).ok()?, IdempotencyKey::parse(key).ok()?))
}

/// The Redis Cluster slot of a key: CRC16/XMODEM of its hash tag (or of the
/// whole key without one), modulo 16384. For tests and operators checking
/// that a script's keys share a slot.
pub fn hash_slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(bytes) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_function_matches_redis() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(hash_slot("123456789"), 12739);
        assert_eq!(
            hash_slot("{user1000}.following"),
            hash_slot("{user1000}.followers")
        );
        assert_eq!(hash_slot("foo{{bar}}zap"), hash_slot("{bar"));
    }

    #[test]
    fn every_key_of_a_sale_is_in_the_sales_slot() {
        let ns = Namespace::parse("test-1").unwrap();
        let sale = SaleId::generate();
        // Keys and users holding braces must not move the record elsewhere.
        let user = UserId::parse("u{x}").unwrap();
        let key = IdempotencyKey::parse("k}{y").unwrap();
        let scoped = scoped(&user, &key);
        let hash = ns.sale(sale);
        assert_eq!(hash_slot(&ns.record(sale, &scoped)), hash_slot(&hash));
        assert!(ns.record(sale, &scoped).starts_with(&hash));
        assert!(ns.binding(&scoped).starts_with("{test-1:key:"));
    }

    #[test]
    fn scoped_keys_round_trip_and_stay_apart() {
        let user = UserId::parse("a:b").unwrap();
        let key = IdempotencyKey::parse("c:d").unwrap();
        assert_eq!(unscope(&scoped(&user, &key)), Some((user, key)));
        let one = scoped(
            &UserId::parse("bc").unwrap(),
            &IdempotencyKey::parse("a").unwrap(),
        );
        let two = scoped(
            &UserId::parse("c").unwrap(),
            &IdempotencyKey::parse("ab").unwrap(),
        );
        assert_ne!(one, two);
    }

    #[test]
    fn namespaces_are_plain_names() {
        assert!(Namespace::parse("stampede-test-0d6e.x_1").is_ok());
        for bad in ["", "a:b", "a{b", "a*", "a b", &"n".repeat(65)] {
            assert!(Namespace::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
