//! Configuration: every setting is an environment variable and a flag (DESIGN §5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

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
    /// How long a claimed outbox row stays leased without a renewal (the worker renews it every
    /// third of this while it works on it): a crashed worker's row is taken over after this.
    #[arg(long, env = "RELEASEDESK_WORKER_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
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

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on.
    #[arg(long, env = "RELEASEDESK_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub mail: MailArgs,
    /// Serve API and console only; run the outbox worker elsewhere (`releasedesk worker`).
    #[arg(long, env = "RELEASEDESK_NO_WORKER")]
    pub no_worker: bool,
    /// On SIGTERM, how long `/readyz` answers 503 while requests are still served, before the
    /// server stops accepting connections (`5s`, `500ms`; `0s` stops at once).
    #[arg(long, env = "RELEASEDESK_SHUTDOWN_GRACE", default_value = "5s", value_parser = parse_shutdown_grace)]
    pub shutdown_grace: Duration,
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

#[cfg(test)]
mod tests {
    use super::*;

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
