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

/// A client for outbound calls to addresses the operator configured (see
/// [`GuardedClient`](crate::GuardedClient) for those a client supplies).
pub fn client(user_agent: &str) -> reqwest::Result<reqwest::Client> {
    builder(user_agent).build()
}

/// No redirects (a webhook URL that redirects is a misconfiguration, and
/// following it could leak a signed body or lead past the address checks), a
/// connect timeout, and a user agent that says who calls.
pub(crate) fn builder(user_agent: &str) -> reqwest::ClientBuilder {
    install_tls_provider();
    reqwest::Client::builder()
        .user_agent(user_agent)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(30))
}
