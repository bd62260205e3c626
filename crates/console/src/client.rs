//! Which address a request comes from: the TCP peer, or — when the peer is a trusted reverse
//! proxy — the right-most `X-Forwarded-For` hop that is not itself a trusted proxy.
//!
//! Only hops appended by proxies we trust can be believed: everything left of them is whatever
//! the client chose to send. So the list is read from the right, skipping trusted proxies, and
//! the first other address is the client. From a peer that is not trusted the header is ignored
//! entirely, or anyone could pick the address the sign-in throttle counts against.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

/// The reverse proxies whose `X-Forwarded-For` is believed: addresses and CIDR blocks
/// (`RELEASEDESK_TRUSTED_PROXIES=10.0.0.5,192.168.0.0/16,::1`). Empty by default: no proxy is
/// trusted, the TCP peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `RELEASEDESK_TRUSTED_PROXIES` entry that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or a CIDR block (such as 10.0.0.0/8)")]
pub struct TrustedProxiesError(String);

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;

    /// Comma-separated addresses and CIDR blocks; an empty string trusts nobody.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| TrustedProxiesError(entry.to_owned()))
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl TrustedProxies {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client address of a request (see the module docs); `None` when the server passed no
/// peer address (in-process tests).
pub(crate) fn client_address(parts: &Parts, trusted: &TrustedProxies) -> Option<IpAddr> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    Some(resolve(peer.ip(), &parts.headers, trusted))
}

fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return peer;
    }
    // Several header lines form one list, in order.
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            // Not text: nothing in it, or left of it, can be read; the nearest trusted proxy
            // (the peer) is the best address known.
            return peer;
        };
        hops.extend(value.split(',').map(str::trim));
    }
    let mut nearest = peer;
    for hop in hops.into_iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            return nearest;
        };
        if !trusted.contains(ip) {
            return ip;
        }
        nearest = ip;
    }
    // Every hop is a trusted proxy: the farthest one is as near the client as we can see.
    nearest
}

/// An `X-Forwarded-For` hop: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(hop)
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn settings_parse_addresses_and_blocks_and_refuse_the_rest() {
        let t: TrustedProxies = " 10.0.0.5, 192.168.0.0/16 ,::1,fd00::/8,".parse().unwrap();
        assert!(t.contains(ip("10.0.0.5")));
        assert!(!t.contains(ip("10.0.0.6")));
        assert!(t.contains(ip("192.168.44.1")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("fd12::7")));
        assert!(t.contains(ip("::ffff:10.0.0.5")), "IPv4-mapped peers match");
        assert_eq!(t.to_string(), "10.0.0.5/32,192.168.0.0/16,::1/128,fd00::/8");
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert_eq!(
            "10.0.0.1,proxy.internal".parse::<TrustedProxies>(),
            Err(TrustedProxiesError("proxy.internal".into()))
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn the_header_is_ignored_from_an_untrusted_peer() {
        let trusted: TrustedProxies = "10.0.0.5".parse().unwrap();
        let h = xff(&["198.51.100.9"]);
        assert_eq!(resolve(ip("203.0.113.7"), &h, &trusted), ip("203.0.113.7"));
        assert_eq!(
            resolve(ip("203.0.113.7"), &h, &TrustedProxies::default()),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let peer = ip("10.0.0.5");
        // The client forged the first hop; the proxies appended the real one and themselves.
        let h = xff(&["1.1.1.1, 198.51.100.9", "10.1.2.3"]);
        assert_eq!(resolve(peer, &h, &trusted), ip("198.51.100.9"));
        assert_eq!(
            resolve(peer, &xff(&["2001:db8::1"]), &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(
            resolve(peer, &xff(&["198.51.100.9:4711"]), &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            resolve(peer, &xff(&["[2001:db8::1]:80"]), &trusted),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn without_a_usable_hop_the_nearest_trusted_address_stands() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let peer = ip("10.0.0.5");
        assert_eq!(resolve(peer, &HeaderMap::new(), &trusted), peer);
        assert_eq!(resolve(peer, &xff(&["garbage"]), &trusted), peer);
        assert_eq!(
            resolve(peer, &xff(&["198.51.100.9, garbage, 10.9.9.9"]), &trusted),
            ip("10.9.9.9")
        );
        assert_eq!(
            resolve(peer, &xff(&["10.7.7.7, 10.9.9.9"]), &trusted),
            ip("10.7.7.7")
        );
    }
}
