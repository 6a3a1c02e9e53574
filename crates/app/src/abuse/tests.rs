use std::sync::Mutex;

use async_trait::async_trait;
use stampede_domain::catalog::{Product, SaleRequest};

use super::*;
use crate::ports::{CaptchaError, ManualClock, ManualClockHandle};

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// A provider that takes the answers it was told to, and records what it
/// was asked.
struct Provider {
    solved: &'static [&'static str],
    asked: Mutex<Vec<(String, Option<IpAddr>)>>,
}

#[async_trait]
impl CaptchaVerifier for Provider {
    async fn verify(&self, response: &str, ip: Option<IpAddr>) -> Result<bool, CaptchaError> {
        self.asked.lock().unwrap().push((response.to_owned(), ip));
        if response == "provider-down" {
            return Err(CaptchaError("timed out".into()));
        }
        Ok(self.solved.contains(&response))
    }
}

fn sale_starting_in(secs: u32) -> Sale {
    let product = Product::create("SKU-ABUSE", "Phone", 100, "EUR", NOW).unwrap();
    let request = SaleRequest {
        quantity: 10,
        starts_at: Some(NOW.plus_secs(secs)),
        ..SaleRequest::default()
    };
    Sale::create(&product, &request, NOW).unwrap()
}

fn guard(
    settings: AbuseSettings,
    captcha: Option<Arc<dyn CaptchaVerifier>>,
) -> (AbuseGuard, ManualClockHandle) {
    let clock = ManualClock::new(NOW);
    let guard = AbuseGuard::new(b"secret", settings, captcha, clock.clone());
    (guard, clock)
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn tokens_on() -> AbuseSettings {
    AbuseSettings {
        purchase_token: true,
        token_lead_secs: 30,
        pow_bits: 0,
    }
}

#[tokio::test]
async fn a_token_is_issued_only_shortly_before_the_start_and_buys_for_its_user_and_sale_only() {
    let (guard, clock) = guard(tokens_on(), None);
    let sale = sale_starting_in(100);
    let ann = user("ann");
    match guard.issue(&sale, &ann, &Proof::default()).await {
        Err(AppError::TooEarly(wait)) => assert_eq!(wait, Duration::from_secs(70)),
        other => panic!("{other:?}"),
    }
    clock.advance_millis(70_000);
    let token = guard.issue(&sale, &ann, &Proof::default()).await.unwrap();
    assert_eq!(token.len(), 32);
    assert!(guard.check(sale.id, &ann, Some(&token)).is_ok());
    let refused = |result: Result<(), AppError>| {
        matches!(result, Err(AppError::Abuse(AbuseRefusal::PurchaseToken)))
    };
    assert!(refused(guard.check(sale.id, &ann, None)));
    assert!(refused(guard.check(sale.id, &user("bob"), Some(&token))));
    assert!(refused(guard.check(SaleId::generate(), &ann, Some(&token))));
    assert!(refused(guard.check(sale.id, &ann, Some("x"))));
    // Tokens off: nothing asked.
    let (off, _) = self::guard(AbuseSettings::default(), None);
    assert!(off.check(sale.id, &ann, None).is_ok());
}

#[tokio::test]
async fn a_proof_of_work_must_reach_the_bits_on_the_buyers_own_fresh_challenge() {
    let settings = AbuseSettings {
        pow_bits: 10,
        ..tokens_on()
    };
    let (guard, clock) = guard(settings, None);
    let sale = sale_starting_in(0);
    let ann = user("ann");
    let challenge = guard.challenge(&sale, &ann);
    assert_eq!(challenge.bits, 10);
    let text = challenge.challenge.unwrap();
    let nonce = pow::solve(&text, 10);
    let proof = |challenge: &str, nonce: &str| Proof {
        challenge: Some(challenge.to_owned()),
        nonce: Some(nonce.to_owned()),
        ..Proof::default()
    };
    let pow_refused = |result: Result<String, AppError>| {
        matches!(result, Err(AppError::Abuse(AbuseRefusal::ProofOfWork)))
    };
    assert!(pow_refused(
        guard.issue(&sale, &ann, &Proof::default()).await
    ));
    let unsolved = (0u64..)
        .map(|n| n.to_string())
        .find(|n| pow::leading_zero_bits(&text, n) < 10)
        .unwrap();
    assert!(pow_refused(
        guard.issue(&sale, &ann, &proof(&text, &unsolved)).await
    ));
    // Bob cannot use Ann's work.
    assert!(pow_refused(
        guard
            .issue(&sale, &user("bob"), &proof(&text, &nonce))
            .await
    ));
    let token = guard
        .issue(&sale, &ann, &proof(&text, &nonce))
        .await
        .unwrap();
    assert!(guard.check(sale.id, &ann, Some(&token)).is_ok());
    // Ten minutes on, the challenge is stale.
    clock.advance_millis(i64::try_from(CHALLENGE_TTL.as_millis()).unwrap() + 1);
    assert!(pow_refused(
        guard.issue(&sale, &ann, &proof(&text, &nonce)).await
    ));
}

#[tokio::test]
async fn a_captcha_must_be_solved_as_the_provider_says() {
    let provider = Arc::new(Provider {
        solved: &["solved"],
        asked: Mutex::new(Vec::new()),
    });
    let (guard, _) = guard(tokens_on(), Some(provider.clone()));
    let sale = sale_starting_in(0);
    let ann = user("ann");
    assert!(guard.challenge(&sale, &ann).captcha);
    let with = |answer: &str| Proof {
        captcha: Some(answer.to_owned()),
        remote_ip: Some(IpAddr::from([203, 0, 113, 7])),
        ..Proof::default()
    };
    let captcha_refused = |result: Result<String, AppError>| {
        matches!(result, Err(AppError::Abuse(AbuseRefusal::Captcha)))
    };
    assert!(captcha_refused(
        guard.issue(&sale, &ann, &Proof::default()).await
    ));
    assert!(captcha_refused(
        guard.issue(&sale, &ann, &with("wrong")).await
    ));
    assert!(matches!(
        guard.issue(&sale, &ann, &with("provider-down")).await,
        Err(AppError::Unavailable { .. })
    ));
    assert!(guard.issue(&sale, &ann, &with("solved")).await.is_ok());
    let asked = provider.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 3, "no call without an answer: {asked:?}");
    assert_eq!(
        asked[2],
        ("solved".to_owned(), Some(IpAddr::from([203, 0, 113, 7])))
    );
}
