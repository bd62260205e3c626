//! The `releasedesk` binary's library: configuration, telemetry, the command line and the
//! wiring of API, console and outbox worker into one server.

pub mod app;
pub mod cli;
pub mod config;
mod demo;
pub mod http;
pub mod request_id;
pub mod telemetry;

pub use app::{RunningServer, start};
pub use config::{MailArgs, ServeConfig};
pub use http::HttpLimits;
