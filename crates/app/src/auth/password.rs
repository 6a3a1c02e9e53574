//! Password hashing with argon2id (OWASP's first choice), off the async threads.
//!
//! Each hash takes tens of milliseconds and ~19 MiB, so they run on the blocking
//! pool and at most `concurrency` at once; a login storm waits at most
//! `queue_timeout` for a slot and is then told the service is overloaded,
//! instead of spawning hundreds of blocking threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use stampede_flow::QueueBudget;
use tokio::sync::Semaphore;

use crate::error::AppError;

#[derive(Debug, Clone, Copy)]
pub struct PasswordSettings {
    /// Hashes computed at once.
    pub concurrency: usize,
    /// Longest wait for a slot before answering `overloaded`.
    pub queue_timeout: Duration,
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    slots: Arc<Semaphore>,
    /// Hashes waiting for a slot or running, and how long one takes: a
    /// request whose deadline cannot hold the queue ahead is refused now.
    queued: Arc<AtomicUsize>,
    budget: Arc<QueueBudget>,
    settings: PasswordSettings,
    /// A hash of a random password, verified against when the e-mail is unknown
    /// so that a login takes as long whether or not the account exists.
    decoy: Arc<str>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's argon2id baseline (m=19 MiB, t=2, p=1) — the crate's defaults.
    Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        Params::default(),
    )
}

fn hash_now(password: &str) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::internal_because("hashing password", e))
}

fn verify_now(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A place in the hashing queue, given up on drop (also when the request
/// is cancelled while waiting).
struct Queued<'a> {
    count: &'a AtomicUsize,
    /// Hashes queued or running when this one joined.
    ahead: usize,
}

impl<'a> Queued<'a> {
    fn join(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::Relaxed);
        Self { count, ahead }
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PasswordHasher {
    pub fn new(settings: PasswordSettings) -> Result<Self, AppError> {
        let mut random = [0u8; 24];
        getrandom::fill(&mut random)
            .map_err(|e| AppError::internal(format!("reading randomness: {e}")))?;
        let decoy: String = random.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self {
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            queued: Arc::default(),
            // argon2id at OWASP's baseline: tens of milliseconds.
            budget: Arc::new(QueueBudget::new(
                "password_hash",
                settings.concurrency.max(1),
                Duration::from_millis(50),
            )),
            settings,
            decoy: hash_now(&decoy)?.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let queued = Queued::join(&self.queued);
        if self.budget.admit(queued.ahead).is_err() {
            return Err(AppError::Overloaded(
                "too many password checks queued to finish within the deadline",
            ));
        }
        let permit = tokio::time::timeout(
            self.settings.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| AppError::Overloaded("too many password checks at once"))?
        .map_err(|_| AppError::unavailable("shutting down"))?;
        let budget = self.budget.clone();
        let result = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let result = work();
            budget.record(1, started.elapsed());
            drop(permit);
            result
        })
        .await
        .map_err(|e| AppError::internal_because("password task failed", e));
        drop(queued);
        result
    }

    /// The PHC string of a fresh argon2id hash.
    pub async fn hash(&self, password: String) -> Result<String, AppError> {
        self.run(move || hash_now(&password)).await?
    }

    /// Whether `password` matches `hash`; with `None` (unknown account) it spends
    /// the same time and answers false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, AppError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.to_string());
        let matches = self.run(move || verify_now(&password, &hash)).await?;
        Ok(known && matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_nothing_else() {
        let hasher = PasswordHasher::new(PasswordSettings::default()).unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("correct horse".into(), None).await.unwrap());
    }
}
