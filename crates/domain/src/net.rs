//! Addresses and which of them a URL a client supplies may reach. A webhook
//! URL is chosen by an API client, so without a rule Stampede would POST to
//! itself, its database, its cloud's metadata service or anything else on its
//! private network, and report back what answered (a port scanner). The rule:
//! only addresses reachable on the public internet ([`is_public`]), unless the
//! operator's [`AllowList`] names the host or the address. It is applied to
//! the addresses a name resolves to, where the connection is made
//! (`stampede_outbound`), and to IP literals and `localhost` when a
//! subscription is created.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range: an address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// A range of one address.
    pub fn single(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    /// `10.0.0.0/8`, `fd00::/8`, or a bare address (a range of one).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => return Some(Self::single(text.trim().parse().ok()?)),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4 ranges that are not the public internet (the IANA special-purpose
/// registry's "not globally reachable" entries, and the broadcast and
/// reserved space above 240/4).
const NOT_PUBLIC_V4: &[Cidr] = &[
    Cidr::v4(0, 0, 0, 0, 8),       // "this network"; 0.0.0.0 reaches this host
    Cidr::v4(10, 0, 0, 0, 8),      // private
    Cidr::v4(100, 64, 0, 0, 10),   // carrier-grade NAT
    Cidr::v4(127, 0, 0, 0, 8),     // loopback
    Cidr::v4(169, 254, 0, 0, 16),  // link-local, cloud metadata services
    Cidr::v4(172, 16, 0, 0, 12),   // private
    Cidr::v4(192, 0, 0, 0, 24),    // IETF protocol assignments
    Cidr::v4(192, 0, 2, 0, 24),    // documentation
    Cidr::v4(192, 88, 99, 0, 24),  // 6to4 relays (deprecated)
    Cidr::v4(192, 168, 0, 0, 16),  // private
    Cidr::v4(198, 18, 0, 0, 15),   // benchmarking
    Cidr::v4(198, 51, 100, 0, 24), // documentation
    Cidr::v4(203, 0, 113, 0, 24),  // documentation
    Cidr::v4(224, 0, 0, 0, 4),     // multicast
    Cidr::v4(240, 0, 0, 0, 4),     // reserved, and 255.255.255.255 broadcast
];

/// Global unicast IPv6: everything outside it (loopback, unspecified,
/// IPv4-compatible, unique local fc00::/7, link-local fe80::/10, multicast…)
/// is not public.
const GLOBAL_V6: Cidr = Cidr::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// Inside global unicast, what is not public: IETF protocol assignments
/// (Teredo among them), documentation, and 6to4, whose embedded IPv4
/// address could be any of the above.
const NOT_PUBLIC_V6: &[Cidr] = &[
    Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
    Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
    Cidr::v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
    Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
];

/// NAT64's well-known prefix: the address is its last 32 bits, in IPv4.
const NAT64: Cidr = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// Whether `ip` is an address on the public internet. IPv4-mapped
/// (`::ffff:127.0.0.1`) and NAT64 (`64:ff9b::7f00:1`) addresses are judged
/// by the IPv4 address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !NOT_PUBLIC_V4
            .iter()
            .any(|range| range.contains(IpAddr::V4(v4))),
        IpAddr::V6(v6) if NAT64.contains(IpAddr::V6(v6)) => {
            let [.., a, b, c, d] = v6.octets();
            is_public(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        v6 => GLOBAL_V6.contains(v6) && !NOT_PUBLIC_V6.iter().any(|range| range.contains(v6)),
    }
}

/// Whether a host name names this machine whatever DNS answers:
/// `localhost` and its subdomains (RFC 6761), with or without the final dot.
pub fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The hosts and ranges an operator lets client-supplied URLs reach though
/// they are not public (`webhook_allow_hosts`): internal subscribers, tests.
/// Host names match exactly, case aside, and allow whatever they resolve to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    names: Vec<String>,
    ranges: Vec<Cidr>,
}

impl AllowList {
    /// A comma-separated list of host names, addresses and CIDRs; `Err`
    /// names the first entry that is none of them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut list = Self::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some(range) = Cidr::parse(entry) {
                list.ranges.push(range);
                continue;
            }
            // As a URL's host is read, so `127.1` is 127.0.0.1 here too.
            match url::Host::parse(entry) {
                Ok(url::Host::Domain(name)) if !name.contains('*') => list.names.push(name),
                Ok(url::Host::Ipv4(ip)) => list.ranges.push(Cidr::single(IpAddr::V4(ip))),
                Ok(url::Host::Ipv6(ip)) => list.ranges.push(Cidr::single(IpAddr::V6(ip))),
                _ => return Err(entry.to_owned()),
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ranges.is_empty()
    }

    /// Whether the list names `host` (a URL's host, as the URL parser
    /// normalised it).
    pub fn names(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.names
            .iter()
            .any(|name| name.eq_ignore_ascii_case(host))
    }

    /// Whether a URL naming `host` may connect to `ip`: a public address,
    /// or one the list allows by the host's name or by range.
    pub fn permits(&self, host: &str, ip: IpAddr) -> bool {
        self.names(host) || self.permits_ip(ip)
    }

    /// Whether `ip` is public or in one of the list's ranges.
    fn permits_ip(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        is_public(ip) || self.ranges.iter().any(|range| range.contains(ip))
    }

    /// Whether a URL may name `host` before anything is resolved: an
    /// address the list [`permits`](Self::permits); `localhost` if the list
    /// names it or allows a loopback address; any other name (its addresses
    /// are checked once resolved).
    pub fn permits_host(&self, host: &url::Host<&str>) -> bool {
        match *host {
            url::Host::Ipv4(ip) => self.permits_ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => self.permits_ip(IpAddr::V6(ip)),
            url::Host::Domain(name) if is_localhost(name) => {
                self.names(name)
                    || self.permits_ip(IpAddr::V4(Ipv4Addr::LOCALHOST))
                    || self.permits_ip(IpAddr::V6(Ipv6Addr::LOCALHOST))
            }
            url::Host::Domain(_) => true,
        }
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = (self.names.iter().cloned())
            .chain(self.ranges.iter().map(Cidr::to_string))
            .collect();
        f.write_str(&entries.join(","))
    }
}

/// As a setting: the comma-separated text; empty is none.
impl serde::Serialize for AllowList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.is_empty() {
            serializer.serialize_none()
        } else {
            serializer.collect_str(self)
        }
    }
}

impl<'de> serde::Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
        Self::parse(&text).map_err(|bad| {
            serde::de::Error::custom(format!("`{bad}` is not a host name, an address or a CIDR"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A URL's host as the WHATWG parser reads it, as an address.
    fn host_ip(host: &str) -> IpAddr {
        match url::Host::parse(host).unwrap() {
            url::Host::Ipv4(ip) => IpAddr::V4(ip),
            url::Host::Ipv6(ip) => IpAddr::V6(ip),
            url::Host::Domain(name) => panic!("{host} is the name {name}"),
        }
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(!net.contains(ip("::1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("nope"), None);
    }

    #[test]
    fn loopback_private_link_local_and_special_addresses_are_not_public() {
        for text in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
        ] {
            assert!(!is_public(ip(text)), "{text} passed for public");
        }
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "169.253.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2606:4700:4700::1111",
            "2a00:1450::1",
        ] {
            assert!(is_public(ip(text)), "{text} refused");
        }
    }

    #[test]
    fn odd_notations_of_loopback_are_loopback() {
        for host in [
            "2130706433",
            "0x7f.1",
            "0x7f000001",
            "127.1",
            "0177.0.0.1",
            "127.0.1",
            "0",
            "[::ffff:7f00:1]",
            "[0:0:0:0:0:ffff:127.0.0.1]",
            "[::1]",
        ] {
            assert!(!is_public(host_ip(host)), "{host} passed for public");
        }
    }

    #[test]
    fn localhost_and_its_subdomains_name_this_machine() {
        for name in ["localhost", "LOCALHOST", "localhost.", "api.localhost"] {
            assert!(is_localhost(name), "{name}");
        }
        for name in ["localhost.example.com", "mylocalhost", "example.com"] {
            assert!(!is_localhost(name), "{name}");
        }
    }

    #[test]
    fn the_allow_list_lets_named_hosts_and_ranges_through() {
        let list = AllowList::parse(" hooks.Internal , 10.0.0.0/8,127.1, ::1 ,").unwrap();
        assert!(list.permits("hooks.internal", ip("10.9.9.9")));
        assert!(list.permits("hooks.internal.", ip("192.168.0.1")));
        assert!(list.permits("other.internal", ip("10.1.2.3")));
        assert!(list.permits("127.0.0.1", ip("127.0.0.1")));
        assert!(list.permits("[::ffff:127.0.0.1]", ip("::ffff:127.0.0.1")));
        assert!(list.permits("[::1]", ip("::1")));
        assert!(list.permits("example.com", ip("8.8.8.8")));
        assert!(!list.permits("other.internal", ip("192.168.0.1")));
        assert!(!list.permits("127.0.0.2", ip("127.0.0.2")));
        assert!(!AllowList::default().permits("localhost", ip("127.0.0.1")));
        assert_eq!(
            list.to_string(),
            "hooks.internal,10.0.0.0/8,127.0.0.1/32,::1/128"
        );
        for bad in ["a b", "*.internal", "10.0.0.0/40", "http://x", "[::1"] {
            assert_eq!(AllowList::parse(bad), Err(bad.to_owned()), "{bad}");
        }
    }
}
