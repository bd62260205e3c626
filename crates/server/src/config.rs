//! Configuration: every setting is an environment variable and a flag (DESIGN §5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::BoolishValueParser;
use releasedesk_domain::WebhookPolicy;

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
