//! One way to build an HTTP client. reqwest is built without a bundled TLS
//! crypto provider (the default one needs an aws-lc C build); rustls' ring
//! provider is installed process-wide before any client exists.

use std::time::Duration;

/// Installs rustls' ring provider as the process default, once; later calls
/// (and a provider installed by someone else) are left alone.
pub fn install_tls_provider() {
    // `Err` means a provider is already installed, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for outbound calls: no redirects (a webhook URL that redirects is
/// a misconfiguration, and following it could leak a signed body), a connect
/// timeout, and a user agent that says who calls.
pub fn client(user_agent: &str) -> reqwest::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
}
