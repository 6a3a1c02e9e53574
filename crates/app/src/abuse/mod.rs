//! Anti-abuse hooks (docs/admission.md §6): what makes a throwaway account
//! cost something, so a per-user limit cannot be multiplied for free.
//!
//! - **Purchase tokens.** With `abuse_purchase_token` on, a purchase needs
//!   the buyer's token for the sale (`Purchase-Token`), which is issued only
//!   from `abuse_token_lead_secs` before the sale's start: the classic flash
//!   sale's hidden, per-user purchase address, as a header, so the route stays
//!   what clients and the OpenAPI document know. A bot cannot make one in
//!   advance, and each account must come for its own.
//! - **Proof of work** ([`pow`]), optional: the token is issued only with a
//!   nonce that makes SHA-256 of the buyer's challenge start with
//!   `abuse_pow_bits` zero bits; cheap for one buyer, costly for ten thousand
//!   accounts.
//! - **Captcha**, optional: with a provider's verification URL configured,
//!   the token is issued only for a solved captcha, checked by the provider
//!   ([`CaptchaVerifier`]).
//!
//! Tokens and challenges are keyed tags (`crate::auth::tags`) under keys
//! derived from the JWT secret: any node checks any node's, nothing is
//! stored.

pub mod pow;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use stampede_domain::catalog::Sale;
use stampede_domain::ids::{SaleId, UserId};
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;

use crate::auth::tags::{self, TagKey};
pub use crate::error::AbuseRefusal;
use crate::error::AppError;
use crate::ports::{CaptchaVerifier, Clock};

/// The longest purchase token, challenge or nonce taken.
pub const MAX_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseSettings {
    /// Purchases need the buyer's purchase token for the sale.
    pub purchase_token: bool,
    /// Tokens are issued from this long before a sale's start.
    pub token_lead_secs: u32,
    /// Leading zero bits a proof of work must reach; 0: none asked.
    pub pow_bits: u8,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        Self {
            purchase_token: false,
            token_lead_secs: 60,
            pow_bits: 0,
        }
    }
}

/// What a buyer must do to get a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// To hash with a nonce; `None` when no proof of work is asked.
    pub challenge: Option<String>,
    pub bits: u8,
    /// A captcha must be solved.
    pub captcha: bool,
    /// Tokens are issued from then on.
    pub token_from: Timestamp,
}

/// What a buyer shows for a token.
#[derive(Debug, Clone, Default)]
pub struct Proof {
    pub challenge: Option<String>,
    pub nonce: Option<String>,
    pub captcha: Option<String>,
    pub remote_ip: Option<IpAddr>,
}

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(600);

pub struct AbuseGuard {
    settings: AbuseSettings,
    tokens: TagKey,
    challenges: TagKey,
    captcha: Option<Arc<dyn CaptchaVerifier>>,
    clock: Arc<dyn Clock>,
}

impl AbuseGuard {
    pub fn new(
        secret: &[u8],
        settings: AbuseSettings,
        captcha: Option<Arc<dyn CaptchaVerifier>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            settings,
            tokens: TagKey::derive(secret, "stampede purchase tokens v1"),
            challenges: TagKey::derive(secret, "stampede proof-of-work challenges v1"),
            captcha,
            clock,
        }
    }

    pub fn settings(&self) -> AbuseSettings {
        self.settings
    }

    fn token_from(&self, sale: &Sale) -> Timestamp {
        let lead = i64::from(self.settings.token_lead_secs) * 1000;
        Timestamp::from_millis(sale.starts_at.as_millis().saturating_sub(lead))
    }

    /// What `user` must do for a token of `sale`.
    pub fn challenge(&self, sale: &Sale, user: &UserId) -> Challenge {
        let now = self.clock.now();
        let challenge = (self.settings.pow_bits > 0).then(|| {
            let at = now.as_millis();
            let mut mac = self.challenges.scoped(sale.id, user);
            mac.update(&at.to_be_bytes());
            format!("{at}.{}", tags::hex_tag(mac))
        });
        Challenge {
            challenge,
            bits: self.settings.pow_bits,
            captcha: self.captcha.is_some(),
            token_from: self.token_from(sale),
        }
    }

    /// `user`'s purchase token for `sale`, once the proofs asked are shown
    /// and the sale is close enough to its start.
    pub async fn issue(
        &self,
        sale: &Sale,
        user: &UserId,
        proof: &Proof,
    ) -> Result<String, AppError> {
        let now = self.clock.now();
        if sale.has_ended(now) {
            return Err(AppError::Refused(Refusal::SaleNotActive));
        }
        let from = self.token_from(sale);
        if now < from {
            let wait = u64::try_from(from.as_millis() - now.as_millis()).unwrap_or(0);
            return Err(AppError::TooEarly(Duration::from_millis(wait)));
        }
        if self.settings.pow_bits > 0 && !self.proof_holds(sale.id, user, proof, now) {
            return Err(AppError::Abuse(AbuseRefusal::ProofOfWork));
        }
        if let Some(verifier) = &self.captcha {
            let answer = proof
                .captcha
                .as_deref()
                .filter(|answer| !answer.is_empty() && answer.len() <= 4096)
                .ok_or(AppError::Abuse(AbuseRefusal::Captcha))?;
            let solved = verifier
                .verify(answer, proof.remote_ip)
                .await
                .map_err(|err| {
                    AppError::unavailable_because("the captcha provider did not answer", err)
                })?;
            if !solved {
                return Err(AppError::Abuse(AbuseRefusal::Captcha));
            }
        }
        Ok(self.token(sale.id, user))
    }

    /// Lets a purchase through if no token is asked or it carries the
    /// buyer's token for the sale.
    pub fn check(&self, sale: SaleId, user: &UserId, token: Option<&str>) -> Result<(), AppError> {
        if !self.settings.purchase_token {
            return Ok(());
        }
        let shown = token.unwrap_or_default();
        if tags::verify_hex_tag(self.tokens.scoped(sale, user), shown) {
            Ok(())
        } else {
            Err(AppError::Abuse(AbuseRefusal::PurchaseToken))
        }
    }

    fn token(&self, sale: SaleId, user: &UserId) -> String {
        tags::hex_tag(self.tokens.scoped(sale, user))
    }

    /// The challenge is one this node's key made for `user` and `sale`
    /// within [`CHALLENGE_TTL`], and the nonce reaches the bits.
    fn proof_holds(&self, sale: SaleId, user: &UserId, proof: &Proof, now: Timestamp) -> bool {
        let (Some(challenge), Some(nonce)) = (&proof.challenge, &proof.nonce) else {
            return false;
        };
        if challenge.len() > MAX_LEN || nonce.len() > MAX_LEN {
            return false;
        }
        let Some((at, tag)) = challenge.split_once('.') else {
            return false;
        };
        let Ok(at) = at.parse::<i64>() else {
            return false;
        };
        let age = now.as_millis().saturating_sub(at);
        let ttl = i64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(i64::MAX);
        if !(0..=ttl).contains(&age) {
            return false;
        }
        let mut mac = self.challenges.scoped(sale, user);
        mac.update(&at.to_be_bytes());
        tags::verify_hex_tag(mac, tag)
            && pow::leading_zero_bits(challenge, nonce) >= self.settings.pow_bits
    }
}

#[cfg(test)]
mod tests;
