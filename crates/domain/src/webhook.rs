//! Webhooks: the events a customer can subscribe to, an endpoint's URL and signing secret, and
//! the rule that keeps deliveries away from addresses that are not on the public internet.
//!
//! The rule is pure (an address in, a verdict out); the API applies it to the addresses a host
//! resolves to when an endpoint is created, and the worker applies it again at every delivery,
//! to the very addresses it then connects to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

use crate::{RequestEvent, UnknownValue};

/// What happened, as named in a delivery's `type` and in an endpoint's `events`. The string form
/// of each event is written here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEvent {
    /// A release request was created (`pending`).
    RequestCreated,
    /// The customer cancelled a pending request.
    RequestCancelled,
    /// Support approved a request; the release follows.
    RequestApproved,
    /// Support rejected a request.
    RequestRejected,
    /// The number was released.
    RequestReleased,
    /// A pending request got no decision in time.
    RequestExpired,
    /// Sent on demand to one endpoint (`POST /webhook-endpoints/{id}/test`); not subscribable.
    Test,
}

impl WebhookEvent {
    pub const ALL: &'static [WebhookEvent] = &[
        WebhookEvent::RequestCreated,
        WebhookEvent::RequestCancelled,
        WebhookEvent::RequestApproved,
        WebhookEvent::RequestRejected,
        WebhookEvent::RequestReleased,
        WebhookEvent::RequestExpired,
        WebhookEvent::Test,
    ];

    /// The events an endpoint can subscribe to (its default: all of them).
    pub const SUBSCRIBABLE: &'static [WebhookEvent] = &[
        WebhookEvent::RequestCreated,
        WebhookEvent::RequestCancelled,
        WebhookEvent::RequestApproved,
        WebhookEvent::RequestRejected,
        WebhookEvent::RequestReleased,
        WebhookEvent::RequestExpired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::RequestCreated => "release_request.created",
            WebhookEvent::RequestCancelled => "release_request.cancelled",
            WebhookEvent::RequestApproved => "release_request.approved",
            WebhookEvent::RequestRejected => "release_request.rejected",
            WebhookEvent::RequestReleased => "release_request.released",
            WebhookEvent::RequestExpired => "release_request.expired",
            WebhookEvent::Test => "webhook.test",
        }
    }

    pub const fn is_subscribable(self) -> bool {
        !matches!(self, WebhookEvent::Test)
    }

    /// The webhook that announces what happened to a release request.
    pub const fn for_request(event: RequestEvent) -> WebhookEvent {
        match event {
            RequestEvent::Created => WebhookEvent::RequestCreated,
            RequestEvent::Cancelled => WebhookEvent::RequestCancelled,
            RequestEvent::Approved => WebhookEvent::RequestApproved,
            RequestEvent::Rejected => WebhookEvent::RequestRejected,
            RequestEvent::Released => WebhookEvent::RequestReleased,
            RequestEvent::Expired => WebhookEvent::RequestExpired,
        }
    }
}

impl fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WebhookEvent {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// What the operator allows beyond the safe defaults (https only, public addresses only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Accept `http://` endpoint URLs.
    pub allow_http: bool,
    /// Deliver to loopback, private, link-local and other non-public addresses.
    pub allow_private: bool,
}

impl WebhookPolicy {
    /// Checks every address a host resolved to: one non-public address refuses them all (a
    /// connection may go to any of them).
    pub fn check_addresses(
        &self,
        addresses: impl IntoIterator<Item = IpAddr>,
    ) -> Result<(), RefusedAddress> {
        if self.allow_private {
            return Ok(());
        }
        for address in addresses {
            if let Some(why) = why_not_public(address) {
                return Err(RefusedAddress { address, why });
            }
        }
        Ok(())
    }
}

/// An address a webhook may not go to, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{address} is {why}; webhooks go to public addresses only")]
pub struct RefusedAddress {
    pub address: IpAddr,
    pub why: &'static str,
}

/// Why `address` is not a public, globally reachable unicast address, or `None` when it is.
///
/// The ranges are those of the IANA special-purpose address registries (the same table as the
/// standard library's still-unstable `is_global`), plus multicast. IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are refused outright: they are how a private
/// IPv4 address is smuggled past an IPv6-only check.
pub fn why_not_public(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => why_not_public_v4(v4),
        IpAddr::V6(v6) => why_not_public_v6(v6),
    }
}

fn why_not_public_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    Some(if a.is_unspecified() || o0 == 0 {
        "an unspecified address"
    } else if a.is_loopback() {
        "a loopback address"
    } else if a.is_private() {
        "a private address"
    } else if a.is_link_local() {
        "a link-local address"
    } else if a.is_multicast() {
        "a multicast address"
    } else if a.is_broadcast() || o0 >= 240 {
        "a reserved address"
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        "a shared (carrier-grade NAT) address"
    } else if a.is_documentation() {
        "a documentation address"
    } else if o0 == 198 && (o1 & 0xfe) == 18 {
        "a benchmarking address"
    } else if o0 == 192 && o1 == 0 && o2 == 0 {
        "an IETF protocol address"
    } else {
        return None;
    })
}

fn why_not_public_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    Some(if a.is_unspecified() {
        "an unspecified address"
    } else if a.is_loopback() {
        "a loopback address"
    } else if a.is_multicast() {
        "a multicast address"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "a link-local address"
    } else if (s[0] & 0xffc0) == 0xfec0 {
        "a site-local address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "a private (unique local) address"
    } else if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0 || s[5] == 0xffff) {
        "an IPv4-mapped or IPv4-compatible address"
    } else if s[0] == 0x64 && s[1] == 0xff9b {
        "a NAT64 address"
    } else if s[0] == 0x2002 {
        "a 6to4 address"
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        "a documentation address"
    } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        "a discard-only address"
    } else if s[0] == 0x2001 && s[1] < 0x0200 {
        "an IETF protocol address"
    } else {
        return None;
    })
}

/// Longest accepted endpoint URL.
pub const MAX_WEBHOOK_URL_CHARS: usize = 2000;

/// An endpoint URL: absolute `https://` (or `http://` when allowed), with a host, without
/// credentials or a fragment. Whether its host is a public address is a separate question
/// (it needs DNS): see [`WebhookPolicy::check_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

/// Where an endpoint URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookHost {
    /// A name to resolve.
    Name(String),
    /// An address written in the URL itself.
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("must be at most {MAX_WEBHOOK_URL_CHARS} characters")]
    TooLong,
    #[error("is not an absolute URL: {0}")]
    Malformed(String),
    #[error("must be an https:// URL")]
    NotHttps,
    #[error("must be an https:// URL (this server does not accept http://)")]
    HttpNotAllowed,
    #[error("must name a host")]
    NoHost,
    #[error("must not contain a user name or password")]
    Credentials,
    #[error("must not contain a #fragment (it is never sent)")]
    Fragment,
}

impl WebhookUrl {
    pub fn parse(input: &str, policy: WebhookPolicy) -> Result<Self, WebhookUrlError> {
        let input = input.trim();
        if input.chars().count() > MAX_WEBHOOK_URL_CHARS {
            return Err(WebhookUrlError::TooLong);
        }
        let url = url::Url::parse(input).map_err(|e| WebhookUrlError::Malformed(e.to_string()))?;
        match url.scheme() {
            "https" => {}
            "http" if policy.allow_http => {}
            "http" => return Err(WebhookUrlError::HttpNotAllowed),
            _ => return Err(WebhookUrlError::NotHttps),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(WebhookUrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(WebhookUrlError::Fragment);
        }
        match url.host() {
            None => return Err(WebhookUrlError::NoHost),
            Some(url::Host::Domain("")) => return Err(WebhookUrlError::NoHost),
            Some(_) => {}
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn host(&self) -> WebhookHost {
        match self.0.host() {
            Some(url::Host::Ipv4(ip)) => WebhookHost::Ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => WebhookHost::Ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => WebhookHost::Name(d.to_owned()),
            // `parse` refused URLs without a host.
            None => WebhookHost::Name(String::new()),
        }
    }

    /// The port connected to: the URL's, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The prefix of every signing secret, as the Standard Webhooks specification writes them.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a new secret.
const SECRET_BYTES: usize = 32;
/// Key lengths accepted when a stored secret is read back.
const SECRET_KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

/// An endpoint's signing secret: `whsec_` + base64 of 32 random bytes. It is an HMAC key the
/// service needs in full to sign each delivery, so it is stored as it is (a hash could not sign);
/// it is shown to the customer only when created or rotated. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed webhook secret")]
pub struct WebhookSecretError;

impl WebhookSecret {
    pub fn generate() -> Self {
        let mut key = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self(format!("{WEBHOOK_SECRET_PREFIX}{}", STANDARD.encode(key)))
    }

    pub fn parse(s: &str) -> Result<Self, WebhookSecretError> {
        let secret = Self(s.to_owned());
        secret.key()?;
        Ok(secret)
    }

    /// The HMAC key: the base64-decoded part after `whsec_`.
    pub fn key(&self) -> Result<Vec<u8>, WebhookSecretError> {
        let encoded = self
            .0
            .strip_prefix(WEBHOOK_SECRET_PREFIX)
            .ok_or(WebhookSecretError)?;
        let key = STANDARD.decode(encoded).map_err(|_| WebhookSecretError)?;
        if !SECRET_KEY_LEN.contains(&key.len()) {
            return Err(WebhookSecretError);
        }
        Ok(key)
    }

    /// The secret itself: to store, and to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// Longest endpoint description, in characters.
pub const MAX_WEBHOOK_DESCRIPTION_CHARS: usize = 200;

/// An endpoint's description: one line, trimmed, at most 200 characters; blank means none.
pub fn parse_webhook_description(input: &str) -> Result<Option<String>, String> {
    let trimmed = input.trim();
    if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
        return Err(format!(
            "must be one line without control characters (found U+{:04X})",
            c as u32
        ));
    }
    let n = trimmed.chars().count();
    if n > MAX_WEBHOOK_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_WEBHOOK_DESCRIPTION_CHARS} characters (got {n})"
        ));
    }
    Ok((n > 0).then(|| trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn event_names_round_trip_and_only_the_test_event_is_not_subscribable() {
        for &e in WebhookEvent::ALL {
            assert_eq!(e.as_str().parse::<WebhookEvent>(), Ok(e));
            assert_eq!(e.is_subscribable(), WebhookEvent::SUBSCRIBABLE.contains(&e));
        }
        assert_eq!(
            WebhookEvent::SUBSCRIBABLE.len() + 1,
            WebhookEvent::ALL.len()
        );
        assert!(!WebhookEvent::Test.is_subscribable());
        assert!("release_request.nope".parse::<WebhookEvent>().is_err());
    }

    #[test]
    fn every_request_event_has_its_webhook_of_the_same_name() {
        for &e in RequestEvent::ALL {
            let hook = WebhookEvent::for_request(e);
            assert!(hook.is_subscribable());
            assert_eq!(hook.as_str(), format!("release_request.{e}"));
        }
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for (addr, why) in [
            ("0.0.0.0", "an unspecified address"),
            ("0.1.2.3", "an unspecified address"),
            ("127.0.0.1", "a loopback address"),
            ("127.255.0.9", "a loopback address"),
            ("10.1.2.3", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "a link-local address"),
            ("224.0.0.1", "a multicast address"),
            ("239.255.255.250", "a multicast address"),
            ("255.255.255.255", "a reserved address"),
            ("240.0.0.1", "a reserved address"),
            ("100.64.0.1", "a shared (carrier-grade NAT) address"),
            ("192.0.2.1", "a documentation address"),
            ("198.18.0.1", "a benchmarking address"),
            ("192.0.0.8", "an IETF protocol address"),
            ("::", "an unspecified address"),
            ("::1", "a loopback address"),
            ("fe80::1", "a link-local address"),
            ("fec0::1", "a site-local address"),
            ("fc00::1", "a private (unique local) address"),
            ("fd12:3456::1", "a private (unique local) address"),
            ("ff02::1", "a multicast address"),
            (
                "::ffff:127.0.0.1",
                "an IPv4-mapped or IPv4-compatible address",
            ),
            (
                "::ffff:8.8.8.8",
                "an IPv4-mapped or IPv4-compatible address",
            ),
            ("::127.0.0.1", "an IPv4-mapped or IPv4-compatible address"),
            ("64:ff9b::a00:1", "a NAT64 address"),
            ("2002:7f00:1::", "a 6to4 address"),
            ("2001:db8::1", "a documentation address"),
            ("100::1", "a discard-only address"),
            ("2001::1", "an IETF protocol address"),
        ] {
            assert_eq!(why_not_public(ip(addr)), Some(why), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
        ] {
            assert_eq!(why_not_public(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn one_private_address_among_public_ones_refuses_the_host() {
        let strict = WebhookPolicy::default();
        assert!(strict.check_addresses([ip("8.8.8.8")]).is_ok());
        let err = strict
            .check_addresses([ip("8.8.8.8"), ip("10.0.0.5")])
            .unwrap_err();
        assert_eq!(err.address, ip("10.0.0.5"));
        assert_eq!(
            err.to_string(),
            "10.0.0.5 is a private address; webhooks go to public addresses only"
        );
        let lax = WebhookPolicy {
            allow_private: true,
            ..Default::default()
        };
        assert!(lax.check_addresses([ip("127.0.0.1")]).is_ok());
    }

    #[test]
    fn endpoint_urls_must_be_https_unless_http_is_allowed() {
        let strict = WebhookPolicy::default();
        let u = WebhookUrl::parse(" https://hooks.example.com/in?x=1 ", strict).unwrap();
        assert_eq!(u.as_str(), "https://hooks.example.com/in?x=1");
        assert_eq!(u.port(), 443);
        assert_eq!(u.host(), WebhookHost::Name("hooks.example.com".into()));
        assert_eq!(
            WebhookUrl::parse("http://hooks.example.com/", strict),
            Err(WebhookUrlError::HttpNotAllowed)
        );
        let http = WebhookPolicy {
            allow_http: true,
            ..Default::default()
        };
        let u = WebhookUrl::parse("http://127.0.0.1:9000/hook", http).unwrap();
        assert_eq!(
            (u.host(), u.port()),
            (WebhookHost::Ip(ip("127.0.0.1")), 9000)
        );
        let u = WebhookUrl::parse("https://[::1]/", strict).unwrap();
        assert_eq!(u.host(), WebhookHost::Ip(ip("::1")));
    }

    #[test]
    fn malformed_endpoint_urls_are_refused() {
        let p = WebhookPolicy {
            allow_http: true,
            allow_private: true,
        };
        for (input, err) in [
            ("ftp://example.com/", WebhookUrlError::NotHttps),
            ("file:///etc/passwd", WebhookUrlError::NotHttps),
            ("https://user:pw@example.com/", WebhookUrlError::Credentials),
            ("https://example.com/#x", WebhookUrlError::Fragment),
        ] {
            assert_eq!(WebhookUrl::parse(input, p), Err(err), "{input}");
        }
        assert!(matches!(
            WebhookUrl::parse("example.com/hook", p),
            Err(WebhookUrlError::Malformed(_))
        ));
        assert!(matches!(
            WebhookUrl::parse("https://", p),
            Err(WebhookUrlError::Malformed(_) | WebhookUrlError::NoHost)
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL_CHARS));
        assert_eq!(WebhookUrl::parse(&long, p), Err(WebhookUrlError::TooLong));
    }

    #[test]
    fn secrets_are_whsec_and_32_random_bytes_and_never_debug_printed() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(a.key().unwrap().len(), 32);
        assert_eq!(WebhookSecret::parse(a.expose()), Ok(a.clone()));
        assert!(!format!("{a:?}").contains(&a.expose()[6..]));
        // The specification's example secret (24 bytes) reads back.
        let spec = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(spec.key().unwrap().len(), 24);
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!!",
            "whsec_AAAA",
        ] {
            assert!(WebhookSecret::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_one_trimmed_line_of_at_most_200_characters() {
        assert_eq!(parse_webhook_description("  "), Ok(None));
        assert_eq!(
            parse_webhook_description(" Billing system "),
            Ok(Some("Billing system".into()))
        );
        assert!(parse_webhook_description("two\nlines").is_err());
        assert!(parse_webhook_description(&"é".repeat(200)).is_ok());
        assert!(parse_webhook_description(&"é".repeat(201)).is_err());
    }
}
