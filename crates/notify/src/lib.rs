//! releasedesk notifications and the release job (docs/architecture.md, "The worker").
//!
//! - [`email`]: the typed emails, rendered from `templates/email/<name>/{subject.txt,body.txt,body.html}`.
//! - [`DeliveryError`]: how an SMTP or file delivery failed (transient or permanent).
//! - [`Carrier`]: the telephony carrier behind a trait; [`RecordingCarrier`] is the default.
//! - [`webhook`]: signed webhook deliveries (Standard Webhooks), over an HTTP client that
//!   connects only to checked addresses.
//! - [`Worker`]: drains the transactional outbox the store writes, and sweeps the service
//!   levels (overdue reminders, expiry) every [`NotifyConfig::sweep_interval`].
//!
//! Everything this crate does starts from an outbox row: it never decides anything about a
//! request, it only carries out what a committed transaction asked for.

use std::path::PathBuf;
use std::time::Duration;

use releasedesk_domain::WebhookPolicy;

mod carrier;
pub mod email;
mod transport;
pub mod webhook;
mod worker;

pub use carrier::{Carrier, CarrierError, CarrierReceipt, NumberRelease, RecordingCarrier};
pub use email::{EmailContext, EmailKind, RenderedEmail};
pub use transport::{DeliveryError, eml_file_name};
pub use worker::{Worker, retry_delay};

/// How often the worker sweeps the service levels unless told otherwise.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Where and how emails go, and how the worker paces itself.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// lettre's SMTP URL syntax: `smtp://host:port` (plain), `smtp://host?tls=required`
    /// (STARTTLS), `smtps://host` (TLS), credentials as `user:pass@`. `None` writes `.eml`
    /// files into `mail_dir`.
    pub smtp_url: Option<String>,
    /// Where `.eml` files go when there is no SMTP URL (created when needed).
    pub mail_dir: PathBuf,
    /// The `From` mailbox, e.g. `releasedesk <no-reply@localhost>`.
    pub mail_from: String,
    /// Base of the links in emails, e.g. `http://127.0.0.1:8080`; its host also ends every
    /// `Message-ID`.
    pub public_url: String,
    /// How often the worker looks for due rows when idle.
    pub poll_interval: Duration,
    /// How long a claimed row stays leased to this worker without a renewal. The worker renews
    /// it every third of this while it works on the row; a worker that dies delays its row by
    /// at most this much.
    pub lease: Duration,
    /// How often the worker sweeps the service levels (overdue reminders, expiry).
    pub sweep_interval: Duration,
    /// Which webhook URLs deliveries may go to (checked again at every attempt).
    pub webhooks: WebhookPolicy,
    /// How long one webhook attempt may take ([`webhook::WEBHOOK_TIMEOUT`]; shorter in tests).
    pub webhook_timeout: Duration,
}

impl NotifyConfig {
    /// The worker's defaults for everything but the addresses: poll every second, 15 s leases,
    /// sweep every minute.
    pub fn new(
        smtp_url: Option<String>,
        mail_dir: PathBuf,
        mail_from: String,
        public_url: String,
    ) -> Self {
        Self {
            smtp_url,
            mail_dir,
            mail_from,
            public_url,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(15),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            webhooks: WebhookPolicy::default(),
            webhook_timeout: webhook::WEBHOOK_TIMEOUT,
        }
    }
}
