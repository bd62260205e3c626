//! Configuration: every setting is an environment variable and a flag (DESIGN §5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use releasedesk_console::TrustedProxies;
use releasedesk_domain::WebhookPolicy;

use crate::http::{
    DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, HttpLimits,
};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://releasedesk.db?mode=rwc";

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://file.db?mode=rwc` (embedded default) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// SMTP server URL (`smtp://host:port`, `smtp://user:pass@host?tls=required`,
    /// `smtps://host`). Unset: emails are written as .eml files into the mail dir.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Where emails go when no SMTP URL is set.
    #[arg(long, env = "RELEASEDESK_MAIL_DIR", default_value = "./mail-outbox")]
    pub mail_dir: PathBuf,
    /// The From: of every email.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "releasedesk <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// How long a worker holds a claimed outbox row before another worker may take it.
    #[arg(long, env = "RELEASEDESK_WORKER_LEASE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub worker_lease_secs: u64,
    /// How often an idle worker looks for due rows.
    #[arg(long, env = "RELEASEDESK_WORKER_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub worker_poll_ms: u64,
    /// A support inbox told of every new request.
    #[arg(long, env = "RELEASEDESK_SUPPORT_EMAIL")]
    pub support_email: Option<String>,
    /// Base URL for links in emails (default `http://` + the bind address).
    #[arg(long, env = "RELEASEDESK_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// Where webhook deliveries may go. The defaults are for production: `https://` endpoints on
/// public addresses only.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Accept `http://` webhook endpoint URLs (local development). Accepts 1/0, true/false,
    /// yes/no.
    #[arg(long, env = "RELEASEDESK_WEBHOOK_ALLOW_HTTP", value_parser = BoolishValueParser::new())]
    pub webhook_allow_http: bool,
    /// Accept and deliver to webhook endpoints on loopback, private, link-local and other
    /// non-public addresses (local development and tests). Accepts 1/0, true/false, yes/no.
    #[arg(long, env = "RELEASEDESK_WEBHOOK_ALLOW_PRIVATE", value_parser = BoolishValueParser::new())]
    pub webhook_allow_private: bool,
}

impl WebhookArgs {
    pub fn policy(&self) -> WebhookPolicy {
        WebhookPolicy {
            allow_http: self.webhook_allow_http,
            allow_private: self.webhook_allow_private,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "RELEASEDESK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Serve API and console only; run the outbox worker elsewhere (`releasedesk worker`).
    #[arg(long, env = "RELEASEDESK_NO_WORKER")]
    pub no_worker: bool,
    #[command(flatten)]
    pub edges: EdgeArgs,
}

/// How the server holds up against slow clients and hostile sign-ins (see `docs/security.md`).
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// How long a request's headers may take to arrive, counted from the moment the connection
    /// is ready for a request (so an idle keep-alive connection closes after it too).
    #[arg(long, env = "RELEASEDESK_HEADER_TIMEOUT", default_value = "10s", value_parser = timeout_or(DEFAULT_HEADER_TIMEOUT))]
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, and its answer to be ready, after its
    /// headers (answered 408 beyond).
    #[arg(long, env = "RELEASEDESK_BODY_TIMEOUT", default_value = "30s", value_parser = timeout_or(DEFAULT_BODY_TIMEOUT))]
    pub body_timeout: Duration,
    /// The most connections open at once: at the limit idle ones are closed and new ones wait.
    #[arg(long, env = "RELEASEDESK_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = parse_max_connections)]
    pub max_connections: usize,
    /// Reverse proxies (comma-separated addresses and CIDR blocks) whose `X-Forwarded-For`
    /// names the client; from any other peer the header is ignored.
    #[arg(long, env = "RELEASEDESK_TRUSTED_PROXIES", default_value = "", value_parser = parse_trusted_proxies)]
    pub trusted_proxies: TrustedProxies,
}

impl Default for EdgeArgs {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// A duration such as `10s`, `1m 30s` or `500ms`, more than zero; empty means `default`.
fn timeout_or(
    default: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.trim() {
        "" => Ok(default),
        s => match humantime::parse_duration(s) {
            Ok(d) if d.is_zero() => Err("must be more than zero".into()),
            Ok(d) => Ok(d),
            Err(e) => Err(format!("{e} (write it like 10s, 90s or 2m)")),
        },
    }
}

/// A whole number from 1 to 1,000,000; empty means the default.
fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.trim() {
        "" => Ok(DEFAULT_MAX_CONNECTIONS),
        s => match s.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
            _ => Err("must be a whole number from 1 to 1000000".into()),
        },
    }
}

fn parse_trusted_proxies(s: &str) -> Result<TrustedProxies, String> {
    s.parse().map_err(|e| format!("{e}"))
}

/// Everything `start` needs, resolved from flags and environment (or built by tests).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub database_url: String,
    pub bind: SocketAddr,
    pub public_url: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_dir: PathBuf,
    pub mail_from: String,
    pub support_email: Option<String>,
    pub run_worker: bool,
    pub worker_poll_interval: Duration,
    pub worker_lease: Duration,
    pub max_connections: Option<u32>,
    /// Which webhook endpoints are accepted and delivered to.
    pub webhooks: WebhookPolicy,
    /// How long one webhook delivery attempt may take.
    pub webhook_timeout: Duration,
    /// Timeouts and the connection bound of the HTTP server.
    pub http: HttpLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

impl ServeConfig {
    pub fn from_args(args: ServeArgs) -> Self {
        Self {
            database_url: args.db.database_url,
            bind: args.bind,
            public_url: args.mail.public_url,
            smtp_url: args.mail.smtp_url,
            mail_dir: args.mail.mail_dir,
            mail_from: args.mail.mail_from,
            support_email: args.mail.support_email,
            run_worker: !args.no_worker,
            worker_poll_interval: Duration::from_millis(args.mail.worker_poll_ms),
            worker_lease: Duration::from_secs(args.mail.worker_lease_secs),
            max_connections: None,
            webhooks: args.webhooks.policy(),
            webhook_timeout: releasedesk_notify::webhook::WEBHOOK_TIMEOUT,
            http: HttpLimits {
                header_timeout: args.edges.header_timeout,
                body_timeout: args.edges.body_timeout,
                max_connections: args.edges.max_connections,
            },
            trusted_proxies: args.edges.trusted_proxies,
        }
    }

    /// Defaults for a server on `database_url`, listening on a random loopback port.
    pub fn for_tests(database_url: impl Into<String>, mail_dir: PathBuf) -> Self {
        Self {
            database_url: database_url.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            smtp_url: None,
            mail_dir,
            mail_from: "releasedesk <no-reply@localhost>".into(),
            support_email: None,
            run_worker: true,
            worker_poll_interval: Duration::from_millis(100),
            worker_lease: Duration::from_secs(30),
            max_connections: Some(8),
            webhooks: WebhookPolicy::default(),
            webhook_timeout: releasedesk_notify::webhook::WEBHOOK_TIMEOUT,
            http: HttpLimits::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }

    /// The base of links in emails.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        edges: EdgeArgs,
    }

    fn parse(args: &[&str]) -> Result<EdgeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("releasedesk").chain(args.iter().copied()))
            .map(|cli| cli.edges)
    }

    #[test]
    fn the_edges_default_to_the_documented_values() {
        let edges = parse(&[]).unwrap();
        assert_eq!(edges.header_timeout, Duration::from_secs(10));
        assert_eq!(edges.body_timeout, Duration::from_secs(30));
        assert_eq!(edges.max_connections, 1024);
        assert!(edges.trusted_proxies.is_empty());
        let limits = HttpLimits::default();
        assert_eq!(
            (
                limits.header_timeout,
                limits.body_timeout,
                limits.max_connections
            ),
            (
                edges.header_timeout,
                edges.body_timeout,
                edges.max_connections
            ),
            "the library's defaults are the command line's"
        );
    }

    #[test]
    fn edge_settings_parse_durations_and_lists_and_empty_means_default() {
        let edges = parse(&[
            "--header-timeout=2s",
            "--body-timeout=1m 30s",
            "--max-connections=64",
            "--trusted-proxies=10.0.0.0/8, ::1",
        ])
        .unwrap();
        assert_eq!(edges.header_timeout, Duration::from_secs(2));
        assert_eq!(edges.body_timeout, Duration::from_secs(90));
        assert_eq!(edges.max_connections, 64);
        assert!(edges.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(edges.trusted_proxies.contains("::1".parse().unwrap()));

        let empty = parse(&[
            "--header-timeout=",
            "--body-timeout=",
            "--max-connections=",
            "--trusted-proxies=",
        ])
        .unwrap();
        assert_eq!(empty.header_timeout, DEFAULT_HEADER_TIMEOUT);
        assert_eq!(empty.body_timeout, DEFAULT_BODY_TIMEOUT);
        assert_eq!(empty.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert!(empty.trusted_proxies.is_empty());

        for bad in [
            "--header-timeout=0s",
            "--body-timeout=soon",
            "--max-connections=0",
            "--trusted-proxies=proxy.internal",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }
}
