//! [`HttpCaptchaVerifier`]: the captcha provider's `siteverify` call, as
//! hCaptcha, reCAPTCHA and Cloudflare Turnstile all take it: a form POST of
//! `secret`, `response` and `remoteip`, answered `{"success": true|false}`.
//! The URL is the operator's (not a client's), so it is not address-guarded;
//! it gets one try within a short timeout, and no answer is an error (the
//! token is then refused with 503, never issued unchecked).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use stampede_app::ports::{CaptchaError, CaptchaVerifier};

/// How long the provider has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(3);

pub struct HttpCaptchaVerifier {
    client: reqwest::Client,
    url: String,
    secret: String,
}

#[derive(Deserialize)]
struct Verdict {
    success: bool,
}

impl HttpCaptchaVerifier {
    pub fn new(url: String, secret: String) -> reqwest::Result<Self> {
        let client = crate::client::builder("stampede-captcha")
            .timeout(TIMEOUT)
            .build()?;
        Ok(Self {
            client,
            url,
            secret,
        })
    }
}

#[async_trait]
impl CaptchaVerifier for HttpCaptchaVerifier {
    async fn verify(
        &self,
        response: &str,
        remote_ip: Option<IpAddr>,
    ) -> Result<bool, CaptchaError> {
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("secret", &self.secret);
            form.append_pair("response", response);
            if let Some(ip) = remote_ip {
                form.append_pair("remoteip", &ip.to_string());
            }
            form.finish()
        };
        let answer = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|err| CaptchaError(format!("calling the provider: {err}")))?;
        if !answer.status().is_success() {
            return Err(CaptchaError(format!(
                "the provider answered {}",
                answer.status()
            )));
        }
        let verdict: Verdict = answer
            .json()
            .await
            .map_err(|err| CaptchaError(format!("reading the provider's answer: {err}")))?;
        Ok(verdict.success)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::routing::post;

    use super::*;

    /// A real provider stand-in on a socket: takes `good`, records forms.
    async fn provider(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
        let forms = Arc::new(Mutex::new(Vec::new()));
        let seen = forms.clone();
        let app = Router::new().route(
            "/siteverify",
            post(move |body: String| {
                let seen = seen.clone();
                async move {
                    let success = body.contains("response=good");
                    seen.lock().unwrap().push(body);
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        format!(r#"{{"success":{success},"hostname":"shop.example"}}"#),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/siteverify"), forms)
    }

    #[tokio::test]
    async fn the_provider_is_asked_with_the_secret_answer_and_address_and_its_verdict_kept() {
        let (url, forms) = provider(200).await;
        let verifier = HttpCaptchaVerifier::new(url, "s3cr&t".into()).unwrap();
        let ip = Some(IpAddr::from([203, 0, 113, 9]));
        assert!(verifier.verify("good", ip).await.unwrap());
        assert!(!verifier.verify("bad answer", None).await.unwrap());
        let forms = forms.lock().unwrap().clone();
        assert_eq!(
            forms[0],
            "secret=s3cr%26t&response=good&remoteip=203.0.113.9"
        );
        assert_eq!(forms[1], "secret=s3cr%26t&response=bad+answer");
    }

    #[tokio::test]
    async fn a_provider_that_fails_or_is_away_is_an_error_not_a_verdict() {
        let (url, _) = provider(500).await;
        let verifier = HttpCaptchaVerifier::new(url, "s".into()).unwrap();
        assert!(verifier.verify("good", None).await.is_err());
        let away =
            HttpCaptchaVerifier::new("http://127.0.0.1:1/siteverify".into(), "s".into()).unwrap();
        assert!(away.verify("good", None).await.is_err());
    }
}
