//! The client's IP address, for per-IP rate limits. The peer address of the
//! connection, unless that peer is a trusted proxy: then the rightmost address
//! in `X-Forwarded-For` that is not itself a trusted proxy. Untrusted peers'
//! `X-Forwarded-For` is ignored, so a client cannot pick its own IP.

use std::net::IpAddr;

use axum::http::HeaderMap;

pub use stampede_domain::net::Cidr;

/// What an address counts as in per-address limits: IPv4 (also when mapped
/// into IPv6) as itself, IPv6 by its /64 prefix, the block one subscriber
/// holds — so rotating addresses inside it buys no fresh budget.
pub fn client_block(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(ip) => IpAddr::V4(ip),
        IpAddr::V6(ip) => IpAddr::V6((u128::from(ip) & !u128::from(u64::MAX)).into()),
    }
}

/// Which peers may tell us the client's address.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(ranges: Vec<Cidr>) -> Self {
        Self(ranges)
    }

    /// Parses a comma-separated list; `None` names the first bad entry.
    pub fn parse_list(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| Cidr::parse(part).ok_or_else(|| part.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// The client's address for a request that came from `peer`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|part| part.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusts(*ip))
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let proxies = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        assert_eq!(
            proxies.client_ip(ip("203.0.113.9"), &xff("1.2.3.4")),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &xff("1.2.3.4")),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::parse_list("10.0.0.0/8, 192.168.0.1").unwrap();
        // A client forging a first entry does not move its real address.
        let headers = xff("6.6.6.6, 198.51.100.7, 192.168.0.1");
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &headers),
            ip("198.51.100.7")
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        assert_eq!(
            TrustedProxies::parse_list("10.0.0.0/8, bad").unwrap_err(),
            "bad"
        );
    }
}
