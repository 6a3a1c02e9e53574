//! Accounts and sessions: register with an e-mail and a password, log in for a
//! customer token. Optional: any token signed with the secret is accepted
//! (within its lifetime cap).

use std::sync::Arc;

use stampede_domain::account::{Email, Password, Role, User};
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

use crate::auth::{JwtKey, PasswordHasher};
use crate::error::AppError;
use crate::ports::{Clock, UserStore};

/// A logged-in session: a bearer token and when it stops working.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub expires_at: Timestamp,
}

pub struct AccountService {
    store: Arc<dyn UserStore>,
    hasher: PasswordHasher,
    jwt: JwtKey,
    session_ttl_secs: u32,
    clock: Arc<dyn Clock>,
}

impl AccountService {
    pub fn new(
        store: Arc<dyn UserStore>,
        hasher: PasswordHasher,
        jwt: JwtKey,
        session_ttl_secs: u32,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            hasher,
            jwt,
            session_ttl_secs,
            clock,
        }
    }

    pub async fn register(&self, email: &str, password: &str) -> Result<User, AppError> {
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let password_hash = self.hasher.hash(password.expose().to_owned()).await?;
        let user = User {
            id: UserId::generate(),
            email,
            password_hash,
            created_at: self.clock.now(),
        };
        self.store.insert_user(&user).await?;
        Ok(user)
    }

    /// A customer token for the account, or `Unauthorized` — the same answer,
    /// after the same work, whether the e-mail or the password was wrong.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AppError> {
        const BAD: AppError = AppError::Unauthorized("wrong e-mail or password");
        let (Ok(email), Ok(password)) = (Email::parse(email), Password::parse(password)) else {
            return Err(BAD);
        };
        let user = self.store.user_by_email(&email).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        if !self
            .hasher
            .verify(password.expose().to_owned(), hash)
            .await?
        {
            return Err(BAD);
        }
        let Some(user) = user else { return Err(BAD) };
        Ok(self.session_for(&user.id))
    }

    fn session_for(&self, user: &UserId) -> Session {
        let expires_at = self.clock.now().plus_secs(self.session_ttl_secs);
        let exp = expires_at.as_millis().div_euclid(1000);
        Session {
            token: self.jwt.sign(user, Role::Customer, exp),
            expires_at,
        }
    }
}
