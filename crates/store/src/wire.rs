//! The public JSON of a release request, defined once.
//!
//! The API answers with it and webhooks send it ("the release request object as the API shows
//! it"); both serialise [`ReleaseRequestObject`], so the two can never drift apart. Field order
//! follows the public API page; optional fields are omitted when unset (never `null`); times
//! are RFC 3339 UTC with `Z`, to the second.

use chrono::{DateTime, SecondsFormat, Utc};
use releasedesk_domain::{PhoneNumberId, RequestId, RequestStatus};
use serde::Serialize;
use utoipa::ToSchema;

use crate::ReleaseRequest;

/// A time as the public JSON writes it: `2024-01-15T12:00:00Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `#[serde(serialize_with = "utc_seconds::serialize")]` for a `DateTime<Utc>` field, and
/// [`utc_seconds::option`] for an optional one (with `skip_serializing_if = "Option::is_none"`).
pub mod utc_seconds {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }
    }
}

/// A release request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ReleaseRequest)]
pub struct ReleaseRequestObject {
    pub id: RequestId,
    pub phone_number_id: PhoneNumberId,
    /// The number, in E.164.
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+15551234567")]
    pub phone_number: String,
    /// Why the customer no longer needs the number.
    #[schema(
        min_length = 10,
        max_length = 500,
        example = "We migrated outbound calling to a new toll-free number and no longer need this DID."
    )]
    pub reason: String,
    pub status: RequestStatus,
    #[serde(serialize_with = "utc_seconds::serialize")]
    #[schema(example = "2024-01-15T12:00:00Z")]
    pub requested_at: DateTime<Utc>,
    /// When it left `pending`.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// When the number was released.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "utc_seconds::option::serialize"
    )]
    #[schema(nullable = false)]
    pub released_at: Option<DateTime<Utc>>,
    /// The staff note on a rejection or approval, meant for the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, min_length = 1, max_length = 500)]
    pub review_note: Option<String>,
}

impl From<&ReleaseRequest> for ReleaseRequestObject {
    fn from(r: &ReleaseRequest) -> Self {
        Self {
            id: r.id,
            phone_number_id: r.phone_number_id,
            phone_number: r.phone_number.clone(),
            reason: r.reason.clone(),
            status: r.status,
            requested_at: r.requested_at,
            resolved_at: r.resolved_at,
            released_at: r.released_at,
            review_note: r.review_note.clone(),
        }
    }
}

impl From<ReleaseRequest> for ReleaseRequestObject {
    fn from(r: ReleaseRequest) -> Self {
        Self {
            id: r.id,
            phone_number_id: r.phone_number_id,
            phone_number: r.phone_number,
            reason: r.reason,
            status: r.status,
            requested_at: r.requested_at,
            resolved_at: r.resolved_at,
            released_at: r.released_at,
            review_note: r.review_note,
        }
    }
}

impl ReleaseRequest {
    /// Its public JSON shape (what the API returns and webhooks send).
    pub fn to_object(&self) -> ReleaseRequestObject {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use releasedesk_domain::{EnvironmentId, StaffId};

    fn request() -> ReleaseRequest {
        ReleaseRequest {
            id: RequestId::parse("0193a0b2-7c4e-7d2a-9f1e-2b3c4d5e6f70").unwrap(),
            environment_id: EnvironmentId::new(),
            phone_number_id: PhoneNumberId::parse("0193a0b2-0000-7000-8000-000000000001")
                .unwrap(),
            phone_number: "+15551234567".into(),
            reason: "We migrated outbound calling to a new toll-free number and no longer need this DID.".into(),
            status: RequestStatus::Pending,
            requested_at: Utc.with_ymd_and_hms(2024, 1, 15, 12, 0, 0).unwrap()
                + chrono::TimeDelta::microseconds(123_456),
            resolved_at: None,
            released_at: None,
            review_note: None,
            reviewed_by: Some(StaffId::new()),
        }
    }

    #[test]
    fn a_pending_request_serialises_exactly_as_the_public_page_shows() {
        let json = serde_json::to_string(&request().to_object()).unwrap();
        assert_eq!(
            json,
            r#"{"id":"0193a0b2-7c4e-7d2a-9f1e-2b3c4d5e6f70","phone_number_id":"0193a0b2-0000-7000-8000-000000000001","phone_number":"+15551234567","reason":"We migrated outbound calling to a new toll-free number and no longer need this DID.","status":"pending","requested_at":"2024-01-15T12:00:00Z"}"#
        );
    }

    #[test]
    fn optional_fields_appear_when_set_in_order_and_to_the_second() {
        let mut r = request();
        r.status = RequestStatus::Released;
        r.resolved_at = Some(Utc.with_ymd_and_hms(2024, 1, 16, 9, 30, 0).unwrap());
        r.released_at = Some(
            Utc.with_ymd_and_hms(2024, 1, 16, 9, 31, 5).unwrap()
                + chrono::TimeDelta::milliseconds(999),
        );
        r.review_note = Some("Approved, thanks.".into());
        let json = serde_json::to_string(&ReleaseRequestObject::from(r)).unwrap();
        assert!(
            json.ends_with(r#""status":"released","requested_at":"2024-01-15T12:00:00Z","resolved_at":"2024-01-16T09:30:00Z","released_at":"2024-01-16T09:31:05Z","review_note":"Approved, thanks."}"#),
            "{json}"
        );
        assert!(!json.contains("environment"), "internal fields stay inside");
        assert!(!json.contains("reviewed_by"));
    }
}
