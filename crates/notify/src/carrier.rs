//! The telephony carrier, behind a small trait so a real one can be plugged in.

use async_trait::async_trait;
use releasedesk_domain::{EnvironmentId, OutboxId, PhoneNumberId, RequestId};
pub use releasedesk_store::CarrierReceipt;

/// One number to release, as the release job hands it to the carrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRelease {
    /// The outbox row of the job: the same on every retry, so a carrier API that takes an
    /// idempotency key can use it.
    pub job_id: OutboxId,
    pub request_id: RequestId,
    pub environment_id: EnvironmentId,
    pub phone_number_id: PhoneNumberId,
    /// E.164.
    pub phone_number: String,
}

/// Why the carrier did not release the number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Worth retrying (timeouts, 5xx from the carrier's API, rate limits).
    #[error("carrier unavailable: {0}")]
    Transient(String),
    /// Retrying will not help (the carrier refuses); the job goes `dead` for staff to look at.
    #[error("carrier refused the release: {0}")]
    Permanent(String),
}

impl CarrierError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

/// Releases numbers at the telephony carrier.
///
/// Called **at least once** per approved request: a worker that dies (or loses its lease)
/// after the carrier answered but before the database recorded it makes the job run again. An
/// implementation must therefore treat "already released by us" as success.
#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    async fn release(&self, number: &NumberRelease) -> Result<CarrierReceipt, CarrierError>;
}

/// The default carrier: calls nobody and answers with a receipt that says so. The store's
/// release transaction writes that receipt to `carrier_releases`, which is the record.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecordingCarrier;

impl RecordingCarrier {
    /// The `carrier` name on its receipts.
    pub const NAME: &'static str = "recorded";
}

#[async_trait]
impl Carrier for RecordingCarrier {
    async fn release(&self, _number: &NumberRelease) -> Result<CarrierReceipt, CarrierError> {
        Ok(CarrierReceipt {
            carrier: Self::NAME.to_owned(),
            reference: None,
        })
    }
}
