//! `stampede token`: prints a signed JWT, for admins, scripts and load tests.

use stampede_app::auth::JwtKey;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

use crate::cli::{TokenArgs, TokenRole};
use crate::config::Secret;
use crate::secret;

/// The token `args` asks for.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    if args.ttl > args.jwt_max_ttl_secs {
        anyhow::bail!(
            "--ttl {} is longer than the {} s the server accepts (--jwt-max-ttl-secs, \
             STAMPEDE_JWT_MAX_TTL_SECS)",
            args.ttl,
            args.jwt_max_ttl_secs
        );
    }
    let secret = match &args.jwt_secret {
        Some(value) if !value.is_empty() => Secret::new(value.clone()),
        _ => secret::load_existing(&args.data_dir)?,
    };
    sign(secret.expose(), &args.sub, args.role, args.ttl)
}

/// A token for `sub` with `role`, valid for `ttl` seconds from now, signed
/// with `secret`.
pub fn sign(secret: &str, sub: &str, role: TokenRole, ttl: u32) -> anyhow::Result<String> {
    let user = UserId::parse(sub).map_err(|e| anyhow::anyhow!("--sub: {}", e.message))?;
    let role = match role {
        TokenRole::Customer => Role::Customer,
        TokenRole::Admin => Role::Admin,
    };
    let exp = Timestamp::now().as_millis().div_euclid(1000) + i64::from(ttl);
    Ok(JwtKey::new(secret.as_bytes()).sign(&user, role, exp))
}

pub fn print(args: TokenArgs) -> anyhow::Result<()> {
    println!("{}", mint(&args)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_ttl_past_the_servers_cap_is_refused() {
        let mut args = TokenArgs {
            sub: "alice".into(),
            role: TokenRole::Customer,
            ttl: 604_801,
            jwt_max_ttl_secs: 604_800,
            data_dir: PathBuf::new(),
            jwt_secret: Some("secret".into()),
        };
        let message = mint(&args).unwrap_err().to_string();
        assert!(message.contains("--jwt-max-ttl-secs"), "{message}");
        args.ttl = 604_800;
        assert!(mint(&args).is_ok());
    }
}
