//! Authentication: who is asking ([`Caller`]), HS256 bearer tokens, argon2id password hashes, and the
//! HMAC signatures of webhooks in both directions, and the short keyed tags of
//! tickets and tokens ([`tags`]).

mod caller;
mod jwt;
mod password;
pub mod signature;
pub mod tags;
mod verified;

pub use caller::Caller;
pub use jwt::{Claims, JwtError, JwtKey};
pub use password::{PasswordHasher, PasswordSettings};
