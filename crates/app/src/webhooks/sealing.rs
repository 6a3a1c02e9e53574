//! Webhook signing secrets sealed at rest: a copy of the database (a backup,
//! a replica, a stolen disk) must not let anyone sign events as Stampede.
//! The app seals each secret before the store sees it and opens it only to
//! sign a delivery, so both stores keep ciphertext without knowing it.
//!
//! Stored form: `v1:` then base64url (no padding) of a random 96-bit nonce
//! and the ChaCha20-Poly1305 ciphertext with its tag. The subscription's id
//! is the associated data, so a sealed secret copied onto another row does
//! not open. A value without the prefix was written before sealing existed:
//! it is read as clear text, and [`WebhookService::seal_clear_secrets`]
//! rewrites it sealed at start-up.
//!
//! [`WebhookService::seal_clear_secrets`]: super::WebhookService::seal_clear_secrets

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use stampede_domain::ids::SubscriptionId;
use stampede_domain::webhook::{SigningSecret, StoredSecret};

use crate::error::AppError;

/// The prefix of a sealed secret; a new format gets a new version.
const SEALED: &str = "v1:";
const NONCE_LEN: usize = 12;

/// The key that seals webhook signing secrets: 32 bytes.
#[derive(Clone)]
pub struct SecretSealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(***)")
    }
}

/// A stored secret, opened.
#[derive(Debug)]
pub struct Opened {
    pub secret: SigningSecret,
    /// Stored in clear (written before sealing): to be sealed.
    pub was_clear: bool,
}

impl SecretSealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// A key written as 64 hexadecimal digits, as settings and the data
    /// directory's `webhook-secret-key` file hold it.
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim().as_bytes();
        if text.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        Some(Self::new(&key))
    }

    /// `secret`, sealed for the subscription `id`.
    pub fn seal(
        &self,
        id: SubscriptionId,
        secret: &SigningSecret,
    ) -> Result<StoredSecret, AppError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| AppError::internal(format!("reading randomness: {e}")))?;
        let aad = id.to_string();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| AppError::internal("sealing a webhook secret"))?;
        let mut text = String::with_capacity(SEALED.len() + (NONCE_LEN + sealed.len()) * 4 / 3 + 4);
        text.push_str(SEALED);
        URL_SAFE_NO_PAD.encode_string([nonce.as_slice(), &sealed].concat(), &mut text);
        StoredSecret::parse(&text).ok_or_else(|| AppError::internal("sealed secret is not text"))
    }

    /// The secret `stored` for the subscription `id` holds. Fails when it was
    /// sealed with another key (or for another row), or is not a secret.
    pub fn open(&self, id: SubscriptionId, stored: &StoredSecret) -> Result<Opened, AppError> {
        let Some(encoded) = stored.as_str().strip_prefix(SEALED) else {
            let secret = SigningSecret::parse(stored.as_str()).map_err(|_| {
                AppError::internal(format!("webhook {id}: stored secret is corrupt"))
            })?;
            return Ok(Opened {
                secret,
                was_clear: true,
            });
        };
        let wrong = || {
            AppError::internal(format!(
                "webhook {id}: its secret does not open with this node's webhook_secret_key \
                 (every node needs the same key)"
            ))
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| wrong())?;
        if bytes.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = id.to_string();
        let clear = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        let secret = std::str::from_utf8(&clear)
            .ok()
            .and_then(|text| SigningSecret::parse(text).ok())
            .ok_or_else(wrong)?;
        Ok(Opened {
            secret,
            was_clear: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> SecretSealer {
        SecretSealer::new(&[byte; 32])
    }

    fn secret() -> SigningSecret {
        SigningSecret::parse("whsec_a-long-enough-secret").unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_and_row_only() {
        let id = SubscriptionId::generate();
        let stored = sealer(1).seal(id, &secret()).unwrap();
        assert!(stored.as_str().starts_with("v1:"));
        assert!(!stored.as_str().contains("whsec_"));
        let opened = sealer(1).open(id, &stored).unwrap();
        assert_eq!(opened.secret, secret());
        assert!(!opened.was_clear);
        // Fresh nonce each time.
        assert_ne!(sealer(1).seal(id, &secret()).unwrap(), stored);
        assert!(sealer(2).open(id, &stored).is_err());
        assert!(sealer(1).open(SubscriptionId::generate(), &stored).is_err());
        for bad in ["v1:", "v1:AAAA", "v1:!!"] {
            let bad = StoredSecret::parse(bad).unwrap();
            assert!(sealer(1).open(id, &bad).is_err());
        }
    }

    #[test]
    fn a_secret_stored_before_sealing_reads_as_clear_text() {
        let id = SubscriptionId::generate();
        let clear = StoredSecret::parse(secret().expose()).unwrap();
        let opened = sealer(1).open(id, &clear).unwrap();
        assert_eq!(opened.secret, secret());
        assert!(opened.was_clear);
    }

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(SecretSealer::from_hex(&"ab".repeat(32)).is_some());
        assert!(SecretSealer::from_hex(&format!("{}\n", "AB".repeat(32))).is_some());
        for bad in [
            "",
            "ab",
            &"ab".repeat(33),
            &"zz".repeat(32),
            &"é".repeat(32),
        ] {
            assert!(SecretSealer::from_hex(bad).is_none(), "{bad}");
        }
        assert_eq!(format!("{:?}", sealer(1)), "SecretSealer(***)");
    }
}
