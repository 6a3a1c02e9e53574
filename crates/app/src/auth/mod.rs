//! Authentication: who is asking ([`Caller`]), HS256 bearer tokens, argon2id password hashes, and the
//! HMAC signatures of webhooks in both directions.

mod caller;
mod jwt;
mod password;
pub mod signature;
mod verified;

pub use caller::Caller;
pub use jwt::{Claims, JwtError, JwtKey};
pub use password::{PasswordHasher, PasswordSettings};
