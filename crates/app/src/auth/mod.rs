//! Authentication: HS256 bearer tokens and argon2id password hashes.

mod jwt;
mod password;

pub use jwt::{Claims, JwtError, JwtKey};
pub use password::{PasswordHasher, PasswordSettings};
