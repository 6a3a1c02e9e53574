//! The crowd's identities: tokens minted once per customer from the server's
//! JWT secret (any token signed with it is accepted within the lifetime cap,
//! docs/api.md §2), so no login sits in the measurement and the headers are
//! built before the clock starts.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use hyper::header::HeaderValue;
use stampede_app::auth::JwtKey;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;

use crate::cli::ServerArgs;

/// Tokens live long enough for any run and its audit, and within the
/// server's default lifetime cap (`--jwt-max-ttl-secs`, 7 days).
const TOKEN_TTL_SECS: i64 = 24 * 3600;

/// Signs tokens the server accepts.
#[derive(Clone)]
pub struct Minter {
    key: JwtKey,
    exp: i64,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minter(***)")
    }
}

impl Minter {
    /// From `--jwt-secret`, or else the `jwt-secret` file in `--data-dir`.
    pub fn from_args(server: &ServerArgs) -> anyhow::Result<Self> {
        let secret = match &server.jwt_secret {
            Some(secret) if !secret.is_empty() => secret.clone(),
            _ => read_secret_file(&server.data_dir)?,
        };
        Ok(Self::new(secret.as_bytes()))
    }

    pub fn new(secret: &[u8]) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            key: JwtKey::new(secret),
            exp: i64::try_from(now).unwrap_or(i64::MAX / 2) + TOKEN_TTL_SECS,
        }
    }

    /// `Bearer <token>` for `sub` with `role`.
    pub fn bearer(&self, sub: &str, role: Role) -> anyhow::Result<HeaderValue> {
        let user = UserId::parse(sub).map_err(|e| anyhow!("user id `{sub}`: {}", e.message))?;
        let token = self.key.sign(&user, role, self.exp);
        HeaderValue::try_from(format!("Bearer {token}")).context("token is not a header value")
    }

    /// The admin that creates the sale and reads its stats.
    pub fn admin(&self, run_id: &str) -> anyhow::Result<HeaderValue> {
        self.bearer(&format!("bench-{run_id}-admin"), Role::Admin)
    }
}

fn read_secret_file(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt-secret");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no JWT secret: pass --jwt-secret or set STAMPEDE_JWT_SECRET, or point --data-dir at \
             the server's data directory (reading {})",
            path.display()
        )
    })?;
    let text = text.trim();
    if text.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(text.to_owned())
}

/// A crowd of customers `<prefix><i>` for i in `0..n`, with their headers.
#[derive(Debug)]
pub struct Users {
    pub prefix: String,
    /// `Authorization` of customer `i`.
    pub auth: Vec<HeaderValue>,
}

impl Users {
    pub fn mint(minter: &Minter, prefix: &str, n: u32) -> anyhow::Result<Self> {
        let auth = (0..n)
            .map(|i| minter.bearer(&format!("{prefix}{i}"), Role::Customer))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            prefix: prefix.to_owned(),
            auth,
        })
    }

    pub fn sub(&self, i: u32) -> String {
        format!("{}{i}", self.prefix)
    }

    pub fn len(&self) -> u32 {
        u32::try_from(self.auth.len()).unwrap_or(u32::MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.auth.is_empty()
    }
}

/// A fresh id for this run: user subs and keys carry it, so reruns against
/// the same server never collide.
pub fn run_id() -> String {
    format!("{:08x}", fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use stampede_domain::time::Timestamp;

    use super::*;

    #[test]
    fn minted_tokens_verify_with_the_same_secret() {
        let minter = Minter::new(b"secret");
        let users = Users::mint(&minter, "bench-x-", 3).unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.sub(2), "bench-x-2");
        let header = users.auth[2].to_str().unwrap();
        let token = header.strip_prefix("Bearer ").unwrap();
        let claims = JwtKey::new(b"secret")
            .verify(token, Timestamp::now())
            .unwrap();
        assert_eq!(claims.user.as_str(), "bench-x-2");
        assert_eq!(claims.role, Role::Customer);
    }
}
