//! releasedesk notifications and the release job (DESIGN §4).
//!
//! - [`email`]: the typed emails, rendered from `templates/email/<name>/{subject.txt,body.txt,body.html}`.
//! - [`DeliveryError`]: how an SMTP or file delivery failed (transient or permanent).
//! - [`Carrier`]: the telephony carrier behind a trait; [`RecordingCarrier`] is the default.
//! - [`Worker`]: drains the transactional outbox the store writes.
//!
//! Everything this crate does starts from an outbox row: it never decides anything about a
//! request, it only carries out what a committed transaction asked for.

use std::path::PathBuf;
use std::time::Duration;

mod carrier;
pub mod email;
mod transport;
mod worker;

pub use carrier::{Carrier, CarrierError, CarrierReceipt, NumberRelease, RecordingCarrier};
pub use email::{EmailContext, EmailKind, RenderedEmail};
pub use transport::DeliveryError;
pub use worker::{Worker, retry_delay};

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
}

impl NotifyConfig {
    /// The worker's defaults for everything but the addresses: poll every second, 15 s leases.
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
        }
    }
}
