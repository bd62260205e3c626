//! Configuration: every setting is an environment variable and a flag (DESIGN §5).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use releasedesk_domain::ServiceLevels;

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
    /// When pending requests are overdue and when they expire.
    pub service_levels: ServiceLevels,
    /// How often the worker sweeps the service levels.
    pub sweep_interval: Duration,
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
            service_levels: ServiceLevels {
                remind_after: args.mail.service_levels.remind_after.delta(),
                expire_after: args.mail.service_levels.expire_after.delta(),
            },
            sweep_interval: args.mail.service_levels.sweep_interval,
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
            service_levels: ServiceLevels::default(),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
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
}
