//! Configuration: every setting is an environment variable and a flag (`docs/operations.md`
//! lists them). Values are checked here, as they are parsed, so that a mistyped setting is
//! refused before anything starts, with a message that says what to write instead; the
//! command line names the setting (variable and flag) in front of it (`cli::usage_error`).
//!
//! An empty environment variable counts as unset (`cli::parse`), and booleans accept
//! `1/0`, `true/false`, `yes/no`, `on/off`.

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
use releasedesk_domain::ServiceLevels;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://releasedesk.db?mode=rwc";
/// Where `releasedesk demo` serves `/metrics` unless `RELEASEDESK_METRICS_BIND` says otherwise.
pub const DEMO_METRICS_BIND: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    9464,
));

#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// Database URL: `sqlite://releasedesk.db?mode=rwc` (embedded; `mode=rwc` creates the file)
    /// or `postgres://user@host:5432/database`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// SMTP server URL: `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS), `smtps://user:pass@host` (TLS). Unset: emails are written as .eml files
    /// into the mail dir.
    #[arg(long, env = "SMTP_URL", value_parser = parse_smtp_url, hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Where emails go, as .eml files, when no SMTP URL is set.
    #[arg(long, env = "RELEASEDESK_MAIL_DIR", default_value = "./mail-outbox")]
    pub mail_dir: PathBuf,
    /// The From: of every email.
    #[arg(
        long,
        env = "MAIL_FROM",
        default_value = "releasedesk <no-reply@localhost>"
    )]
    pub mail_from: String,
    /// How long a claimed outbox row stays leased without a renewal (the worker renews it every
    /// third of this while it works on it): a crashed worker's row is taken over after this.
    #[arg(long, env = "RELEASEDESK_WORKER_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub worker_lease_secs: u64,
    /// How often an idle worker looks for due rows (milliseconds).
    #[arg(long, env = "RELEASEDESK_WORKER_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub worker_poll_ms: u64,
    /// A support inbox told of every new request.
    #[arg(long, env = "RELEASEDESK_SUPPORT_EMAIL")]
    pub support_email: Option<String>,
    /// Base URL for links in emails, e.g. `https://releasedesk.example.com` (default `http://`
    /// + the bind address); `https://` also marks the console's cookies Secure.
    #[arg(long, env = "RELEASEDESK_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub service_levels: ServiceLevelArgs,
}

/// How long a pending request may wait, and how often the worker checks (see
/// `docs/review-policy.md`). Durations are written like `90s`, `15m`, `24h`, `30d`; an empty
/// value means the default.
#[derive(Debug, Clone, Args)]
pub struct ServiceLevelArgs {
    /// A request pending longer is overdue: marked in the console's queue, and the support
    /// inbox gets one reminder. `off` turns both off.
    #[arg(long, env = "RELEASEDESK_REMIND_AFTER", default_value = "24h", value_parser = level_or(DEFAULT_REMIND_AFTER))]
    pub remind_after: Level,
    /// A request pending longer expires (the customer is told; the number is free for a new
    /// request). `off` keeps pending requests forever.
    #[arg(long, env = "RELEASEDESK_EXPIRE_AFTER", default_value = "30d", value_parser = level_or(DEFAULT_EXPIRE_AFTER))]
    pub expire_after: Level,
    /// How often the worker sweeps for overdue and expired requests.
    #[arg(long, env = "RELEASEDESK_SWEEP_INTERVAL", default_value = "1m", value_parser = interval_or(DEFAULT_SWEEP_INTERVAL))]
    pub sweep_interval: Duration,
}

const DEFAULT_REMIND_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_EXPIRE_AFTER: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const DEFAULT_SWEEP_INTERVAL: Duration = releasedesk_notify::DEFAULT_SWEEP_INTERVAL;

/// A service level: a duration, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level(pub Option<Duration>);

impl Level {
    fn delta(self) -> Option<chrono::TimeDelta> {
        self.0
            .map(|d| chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX))
    }
}

/// `off`, or a duration of more than zero; empty means `default`.
fn level_or(default: Duration) -> impl Fn(&str) -> Result<Level, String> + Clone + Send + Sync {
    move |s: &str| match s.trim() {
        "" => Ok(Level(Some(default))),
        "off" => Ok(Level(None)),
        s => positive_duration(s).map(|d| Level(Some(d))),
    }
}

/// A duration of more than zero; empty means `default`.
fn interval_or(
    default: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync {
    move |s: &str| match s.trim() {
        "" => Ok(default),
        s => positive_duration(s),
    }
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(format!("{e} (write it like 90s, 15m, 24h or 30d)")),
    }
}

#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Address for `GET /metrics` (Prometheus text format), e.g. `127.0.0.1:9464`. Unset: no
    /// metrics are served (`demo` serves them on 127.0.0.1:9464).
    #[arg(long, env = "RELEASEDESK_METRICS_BIND", value_parser = parse_bind)]
    pub metrics_bind: Option<SocketAddr>,
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
    /// Address to listen on (API, console, health checks): an IP address and a port.
    #[arg(long, env = "RELEASEDESK_BIND", default_value = "127.0.0.1:8080", value_parser = parse_bind)]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub mail: MailArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// Serve API and console only; run the outbox worker elsewhere (`releasedesk worker`).
    /// The variable accepts 1/0, true/false, yes/no.
    #[arg(long, env = "RELEASEDESK_NO_WORKER", value_parser = BoolishValueParser::new())]
    pub no_worker: bool,
    #[command(flatten)]
    pub edges: EdgeArgs,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, before the
    /// server stops accepting connections (`5s`, `500ms`; `0s` stops at once).
    #[arg(long, env = "RELEASEDESK_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_shutdown_grace)]
    pub shutdown_grace: Duration,
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

/// The default of `RELEASEDESK_SHUTDOWN_GRACE`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A duration written like `5s`, `500ms` or `1m`; empty means the default.
fn parse_shutdown_grace(value: &str) -> Result<Duration, String> {
    if value.trim().is_empty() {
        return Ok(DEFAULT_SHUTDOWN_GRACE);
    }
    humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e} (write a duration like 5s, 500ms or 1m)"))
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
    /// Where `/metrics` is served; `None`: nowhere, and no metrics are recorded.
    pub metrics_bind: Option<SocketAddr>,
    /// When pending requests are overdue and when they expire.
    pub service_levels: ServiceLevels,
    /// How often the worker sweeps the service levels.
    pub sweep_interval: Duration,
    /// How long shutdown keeps serving with `/readyz` at 503 before it stops accepting.
    pub shutdown_grace: Duration,
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
            metrics_bind: args.metrics.metrics_bind,
            service_levels: ServiceLevels {
                remind_after: args.mail.service_levels.remind_after.delta(),
                expire_after: args.mail.service_levels.expire_after.delta(),
            },
            sweep_interval: args.mail.service_levels.sweep_interval,
            shutdown_grace: args.shutdown_grace,
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
            metrics_bind: None,
            service_levels: ServiceLevels::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            // Tests shut servers down all the time, with no load balancer to tell.
            shutdown_grace: Duration::ZERO,
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

/// An IP address and a port. Host names are refused rather than looked up: `localhost` may
/// resolve to `::1` on one machine and `127.0.0.1` on another.
pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = "write an IP address and a port, such as 127.0.0.1:8080 (this machine only) or \
                0.0.0.0:8080 (every interface)";
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!("'{s}' has no port; {hint}"));
    }
    match s.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.is_empty() => Err(format!(
            "'{s}' names a host, not an IP address; {hint} (host names are not looked up)"
        )),
        _ => Err(format!("'{s}' is not an IP address and port; {hint}")),
    }
}

/// lettre's SMTP URL syntax, checked here so that a mistake names the part to change. The URL
/// may carry a password: messages never repeat it.
pub fn parse_smtp_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!("not a URL ({e}); write it like smtp://mail.example.com:25 or smtps://user:pass@mail.example.com")
    })?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    match url.scheme() {
        "smtp" | "smtps" => {}
        other => {
            return Err(format!(
                "the scheme must be smtp:// (plain, or STARTTLS with ?tls=required) or smtps:// (TLS), not {other}://"
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host; write it like smtp://mail.example.com:25".into());
    }
    let implicit_tls = url.scheme() == "smtps";
    match (implicit_tls, tls.as_deref()) {
        (false, None | Some("required" | "opportunistic")) | (true, None) => Ok(s.to_owned()),
        (true, Some(_)) => Err(
            "smtps:// always uses TLS and takes no tls parameter; remove ?tls=… (or use smtp://…?tls=required for STARTTLS)"
                .into(),
        ),
        (false, Some(other)) => Err(format!(
            "the tls parameter accepts required (STARTTLS, refuse a server without it) or opportunistic (STARTTLS when offered), not '{other}'; leave it out for plain SMTP, or use smtps:// for TLS from the first byte"
        )),
    }
}

/// An `http://` or `https://` URL with a host: links in emails are built on it.
pub fn parse_public_url(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| {
        format!("'{s}' is not a URL ({e}); write it like https://releasedesk.example.com")
    })?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(s.to_owned()),
        "http" | "https" => Err(format!(
            "'{s}' has no host; write it like https://releasedesk.example.com"
        )),
        other => Err(format!(
            "'{s}' must start with http:// or https://, not {other}://"
        )),
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

    #[test]
    fn bind_accepts_ip_and_port_and_explains_the_rest() {
        assert_eq!(
            parse_bind("0.0.0.0:8080").unwrap(),
            SocketAddr::from(([0, 0, 0, 0], 8080))
        );
        assert!(parse_bind("[::1]:8080").is_ok());
        assert!(
            parse_bind("localhost:8080")
                .unwrap_err()
                .contains("names a host")
        );
        assert!(parse_bind("127.0.0.1").unwrap_err().contains("has no port"));
        assert!(parse_bind("8080").unwrap_err().contains("127.0.0.1:8080"));
    }

    #[test]
    fn smtp_urls_in_lettre_syntax_are_accepted() {
        for ok in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example:587?tls=required",
            "smtp://mail.example:587?tls=opportunistic",
            "smtps://user:pw@mail.example",
        ] {
            assert_eq!(parse_smtp_url(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn a_bad_tls_parameter_lists_the_accepted_values_without_the_password() {
        let err = parse_smtp_url("smtp://me:s3cret@mail.example?tls=bogus").unwrap_err();
        assert!(
            err.contains("required") && err.contains("opportunistic"),
            "{err}"
        );
        assert!(err.contains("'bogus'"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let err = parse_smtp_url("imap://me:s3cret@mail.example").unwrap_err();
        assert!(err.contains("smtp://") && !err.contains("s3cret"), "{err}");
        assert!(parse_smtp_url("smtps://mail.example?tls=required").is_err());
        assert!(parse_smtp_url("not a url").is_err());
    }

    #[test]
    fn public_url_must_be_http_with_a_host() {
        assert!(parse_public_url("https://releasedesk.example.com").is_ok());
        assert!(parse_public_url("releasedesk.example.com").is_err());
        assert!(parse_public_url("ftp://releasedesk.example.com").is_err());
    }
}

#[cfg(test)]
mod service_level_tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        levels: ServiceLevelArgs,
    }

    fn parse(args: &[&str]) -> Result<ServiceLevelArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("releasedesk").chain(args.iter().copied()))
            .map(|cli| cli.levels)
    }

    #[test]
    fn service_levels_default_to_a_day_a_month_and_a_minute() {
        let levels = parse(&[]).unwrap();
        assert_eq!(
            levels.remind_after,
            Level(Some(Duration::from_secs(86_400)))
        );
        assert_eq!(
            levels.expire_after,
            Level(Some(Duration::from_secs(30 * 86_400)))
        );
        assert_eq!(levels.sweep_interval, Duration::from_secs(60));
    }

    #[test]
    fn service_levels_parse_durations_off_and_empty_means_default() {
        let levels = parse(&[
            "--remind-after=90s",
            "--expire-after=off",
            "--sweep-interval=15m",
        ])
        .unwrap();
        assert_eq!(levels.remind_after, Level(Some(Duration::from_secs(90))));
        assert_eq!(levels.expire_after, Level(None));
        assert_eq!(levels.sweep_interval, Duration::from_secs(900));
        let empty = parse(&["--remind-after=", "--expire-after=", "--sweep-interval="]).unwrap();
        assert_eq!(empty.remind_after, Level(Some(DEFAULT_REMIND_AFTER)));
        assert_eq!(empty.expire_after, Level(Some(DEFAULT_EXPIRE_AFTER)));
        assert_eq!(empty.sweep_interval, DEFAULT_SWEEP_INTERVAL);
        for bad in [
            "--remind-after=0s",
            "--expire-after=soon",
            "--sweep-interval=off",
            "--sweep-interval=0s",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn shutdown_grace_is_a_duration_and_empty_means_the_default() {
        assert_eq!(parse_shutdown_grace("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse_shutdown_grace("750ms"),
            Ok(Duration::from_millis(750))
        );
        assert_eq!(parse_shutdown_grace("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_shutdown_grace(""), Ok(DEFAULT_SHUTDOWN_GRACE));
        assert!(parse_shutdown_grace("5").is_err());
        assert!(parse_shutdown_grace("soon").is_err());
    }
}
