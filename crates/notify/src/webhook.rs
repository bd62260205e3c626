//! Webhook deliveries: one signed POST per attempt, following the Standard Webhooks
//! specification so that receivers can verify them with its published libraries.
//!
//! - Headers: `webhook-id` (the delivery's id, the same on every retry), `webhook-timestamp`
//!   (Unix seconds of this attempt), `webhook-signature` (`v1,` + base64 of the HMAC-SHA256 of
//!   `{id}.{timestamp}.{body}`, keyed with the base64-decoded part of the `whsec_` secret; during
//!   a rotation one signature per valid secret, separated by spaces), and
//!   `Content-Type: application/json`.
//! - The client follows no redirects, uses no proxy and gives up after 10 seconds.
//! - Unless non-public addresses are allowed, it connects only to addresses it has checked:
//!   its DNS resolver refuses a host if any address it resolves to is not public, and hands
//!   the connector exactly the addresses it checked, so DNS cannot change between the check
//!   and the connection. An address written in the URL is checked before the request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use releasedesk_domain::{RefusedAddress, WebhookHost, WebhookPolicy, WebhookSecret, WebhookUrl};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;

/// How long one attempt may take, connection included.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits after the 1st, 2nd, … failed attempt (±10 % jitter); the last one repeats. With the
/// outbox's attempts for webhooks (8) a delivery is retried for 27½ hours (at least 24¾ with
/// the jitter) before it goes `dead`.
const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long to wait after failed attempt number `attempt` (1-based) of a webhook delivery.
pub fn webhook_retry_delay(attempt: i32) -> Duration {
    let index = usize::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(RETRY_SCHEDULE.len() - 1);
    RETRY_SCHEDULE[index].mul_f64(rand::rng().random_range(0.9..=1.1))
}

/// `v1,` + base64(HMAC-SHA256(key, `{msg_id}.{timestamp}.{body}`)).
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per secret, separated by spaces.
pub fn signature_header(
    secrets: &[WebhookSecret],
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, String> {
    secrets
        .iter()
        .map(|s| {
            s.key()
                .map(|key| sign(&key, msg_id, timestamp, body))
                .map_err(|e| format!("the endpoint's secret is unusable: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|sigs| sigs.join(" "))
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// 2xx: delivered.
    Delivered(u16),
    /// 410: the receiver wants nothing more; the endpoint is disabled.
    Gone,
    /// Anything else: retried later.
    Failed { status: Option<u16>, error: String },
}

/// The HTTP client of webhook deliveries.
pub(crate) struct WebhookClient {
    client: reqwest::Client,
    policy: WebhookPolicy,
    timeout: Duration,
}

impl WebhookClient {
    pub(crate) fn new(policy: WebhookPolicy, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("releasedesk-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .build()?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// One signed POST of `body` to `url`, within `deadline` at most.
    pub(crate) async fn attempt(
        &self,
        url: &str,
        msg_id: &str,
        body: &str,
        secrets: &[WebhookSecret],
        deadline: Duration,
    ) -> Attempt {
        let failed = |error: String| Attempt::Failed {
            status: None,
            error,
        };
        // The settings may have changed since the endpoint was created: apply today's.
        let url = match WebhookUrl::parse(url, self.policy) {
            Ok(url) => url,
            Err(e) => return failed(format!("refused: the endpoint URL {e}")),
        };
        if let WebhookHost::Ip(ip) = url.host()
            && let Err(refused) = self.policy.check_addresses([ip])
        {
            return failed(format!("refused: {refused}"));
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = match signature_header(secrets, msg_id, timestamp, body) {
            Ok(s) => s,
            Err(e) => return failed(e),
        };
        let timeout = self.timeout.min(deadline);
        let sent = self
            .client
            .post(url.as_str())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Attempt::Delivered(status),
                    410 => Attempt::Gone,
                    _ => Attempt::Failed {
                        status: Some(status),
                        error: describe_status(&response),
                    },
                }
            }
            Err(e) if e.is_timeout() => failed(format!(
                "no complete answer within {} s",
                timeout.as_secs_f32()
            )),
            Err(e) => failed(error_chain(&e.without_url())),
        }
    }
}

fn describe_status(response: &reqwest::Response) -> String {
    let status = response.status();
    let reason = status.canonical_reason().unwrap_or("");
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        format!(
            "answered {} {reason} (to {to}); redirects are not followed",
            status.as_u16()
        )
    } else {
        format!("answered {} {reason}", status.as_u16())
    }
}

/// `outer: inner: innermost`, without repeats (reqwest and hyper nest the same message).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

/// Resolves a host and refuses it unless every address is allowed; the connector then
/// connects to exactly those addresses.
struct CheckedResolver {
    policy: WebhookPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("refused: {host} resolves to {refused}")]
struct RefusedHost {
    host: String,
    refused: RefusedAddress,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no addresses").into());
            }
            policy
                .check_addresses(addrs.iter().map(SocketAddr::ip))
                .map_err(|refused| RefusedHost {
                    host: host.clone(),
                    refused,
                })?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use releasedesk_store::OutboxKind;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn signs_the_specification_test_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        let header =
            signature_header(&[secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn during_a_rotation_each_secret_signs_separated_by_a_space() {
        let new = WebhookSecret::generate();
        let old = WebhookSecret::generate();
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1, "{}").unwrap();
        let expected = format!(
            "{} {}",
            sign(&new.key().unwrap(), "msg_1", 1, "{}"),
            sign(&old.key().unwrap(), "msg_1", 1, "{}")
        );
        assert_eq!(header, expected);
        assert_ne!(header.split(' ').next(), header.split(' ').nth(1));
    }

    #[test]
    fn webhook_retries_span_at_least_a_day_before_the_delivery_goes_dead() {
        // Waits happen between attempts: max_attempts - 1 of them, each at its lowest jitter.
        let retries = usize::try_from(OutboxKind::Webhook.max_attempts() - 1).unwrap();
        let shortest: Duration = (1..=retries)
            .map(|a| RETRY_SCHEDULE[(a - 1).min(RETRY_SCHEDULE.len() - 1)].mul_f64(0.9))
            .sum();
        assert!(
            shortest >= Duration::from_secs(24 * 3600),
            "only {shortest:?}"
        );
        for _ in 0..100 {
            let d = webhook_retry_delay(1);
            assert!(d >= Duration::from_millis(4500) && d <= Duration::from_millis(5500));
            assert!(webhook_retry_delay(100) <= Duration::from_secs(11 * 3600));
        }
    }

    #[test]
    fn the_timeout_is_ten_seconds() {
        assert_eq!(WEBHOOK_TIMEOUT, Duration::from_secs(10));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_host_with_any_private_address() {
        let strict = CheckedResolver {
            policy: WebhookPolicy::default(),
        };
        let err = match strict.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("refused: localhost resolves to "), "{err}");
        assert!(err.contains("a loopback address"), "{err}");
        let lax = CheckedResolver {
            policy: WebhookPolicy {
                allow_private: true,
                allow_http: false,
            },
        };
        let addrs: Vec<_> = lax
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
