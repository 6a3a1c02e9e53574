//! The one way Stampede calls a URL a client chose (webhook subscribers):
//! [`GuardedClient`], whose connections reach only the addresses the rule of
//! [`stampede_domain::net`] permits — public ones, or those the operator's
//! allow-list names. Names are checked after resolution, in the client's own
//! resolver, so the addresses checked are the addresses connected to: a name
//! that resolves to a private address (DNS rebinding included) is refused
//! where the connection is made. IP literals, which reqwest connects to
//! without resolving, are checked before the request is built; the URL
//! parser has already read odd notations (`2130706433`, `0x7f.1`, `127.1`)
//! as the addresses they are. Operator-configured addresses (the payment
//! provider, the public URL) use [`client`](crate::client), unchecked.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use stampede_domain::net::AllowList;

/// Why a call was not made. Says nothing of what answers at the address,
/// nor which address a name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not an http:// or https:// URL")]
    NotHttp,
    #[error("destination refused: not a public address")]
    NotPublic,
}

impl Refused {
    /// The refusal behind `err`, if a refusal made it.
    pub fn behind(err: &(dyn std::error::Error + 'static)) -> Option<Self> {
        let mut cause = Some(err);
        while let Some(err) = cause {
            if let Some(refused) = err.downcast_ref::<Self>() {
                return Some(*refused);
            }
            cause = err.source();
        }
        None
    }
}

/// An HTTP client for client-supplied URLs.
#[derive(Clone)]
pub struct GuardedClient {
    client: reqwest::Client,
    allow: Arc<AllowList>,
}

impl GuardedClient {
    /// Environment proxies are ignored: through a proxy the resolver would
    /// see the proxy's name, and the destination would go unchecked.
    pub fn new(user_agent: &str, allow: AllowList) -> reqwest::Result<Self> {
        let allow = Arc::new(allow);
        let client = crate::client::builder(user_agent)
            .no_proxy()
            .dns_resolver(GuardedResolver {
                allow: allow.clone(),
            })
            .build()?;
        Ok(Self { client, allow })
    }

    /// A POST to `url`, unless its scheme is not HTTP or its host is an
    /// address (or `localhost`) the rule refuses; other names are checked
    /// when the request connects.
    pub fn post(&self, url: &str) -> Result<reqwest::RequestBuilder, Refused> {
        let url = reqwest::Url::parse(url).map_err(|_| Refused::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::NotHttp);
        }
        match url.host() {
            Some(host) if self.allow.permits_host(&host) => Ok(self.client.post(url)),
            _ => Err(Refused::NotPublic),
        }
    }
}

/// The system resolver, keeping only the addresses the rule permits.
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str();
            let found = tokio::net::lookup_host((host, 0)).await?;
            let kept = permitted(&allow, host, found)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// The addresses of `found` that `allow` permits for `host`; none is a
/// refusal.
fn permitted(
    allow: &AllowList,
    host: &str,
    found: impl IntoIterator<Item = SocketAddr>,
) -> Result<Vec<SocketAddr>, Refused> {
    let kept: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| allow.permits(host, addr.ip()))
        .collect();
    if kept.is_empty() {
        Err(Refused::NotPublic)
    } else {
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), 0))
            .collect()
    }

    /// What a rebinding name's DNS answers: whatever it likes.
    #[test]
    fn resolved_addresses_that_are_not_public_are_dropped() {
        let none = AllowList::default();
        for answer in [
            &["127.0.0.1"][..],
            &["169.254.169.254"],
            &["10.0.0.1", "::1"],
            &["::ffff:192.168.0.1"],
            &["fd00::1", "fe80::1"],
        ] {
            assert_eq!(
                permitted(&none, "rebind.example", addrs(answer)),
                Err(Refused::NotPublic),
                "{answer:?}"
            );
        }
        assert_eq!(
            permitted(
                &none,
                "mixed.example",
                addrs(&["10.0.0.1", "93.184.216.34"])
            ),
            Ok(addrs(&["93.184.216.34"]))
        );
        assert_eq!(
            permitted(&none, "empty.example", Vec::new()),
            Err(Refused::NotPublic)
        );
    }

    #[test]
    fn the_allow_list_lets_names_and_ranges_resolve_to_private_addresses() {
        let allow = AllowList::parse("hooks.internal,10.1.0.0/16").unwrap();
        assert_eq!(
            permitted(&allow, "hooks.internal", addrs(&["10.9.0.1"])),
            Ok(addrs(&["10.9.0.1"]))
        );
        assert_eq!(
            permitted(&allow, "other.internal", addrs(&["10.1.2.3", "10.9.0.1"])),
            Ok(addrs(&["10.1.2.3"]))
        );
    }
}
