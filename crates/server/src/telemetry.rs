//! Logs: `tracing` to stderr, filtered by `RUST_LOG`, pretty or JSON (`LOG_FORMAT`). Logs go
//! to stderr so that admin commands' stdout stays machine-readable. Colour only when stderr is
//! a terminal (and `NO_COLOR` is unset): a log file or a collector gets plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The default filter of `serve`, `demo` and `worker`: what the service does, without the
/// migration framework's line per migration (the service logs one line for all of them).
pub const SERVICE_FILTER: &str = "info,sea_orm_migration=warn";
/// The default filter of admin commands: their result is the one line they print.
pub const ADMIN_FILTER: &str = "warn";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the subscriber: `RUST_LOG` when set (and not empty), else `default_filter`.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests start several servers in one process) is not an error.
    let _ = match format {
        LogFormat::Pretty => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
