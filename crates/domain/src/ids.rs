//! Typed identifiers. All are UUIDs; the type keeps a request id from being passed where a
//! phone-number id is expected. Parsing never panics: a malformed id is simply "not found" to
//! the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct IdError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses the hyphenated or simple textual form; anything else is an error.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                // `Uuid::parse_str` also accepts braced and URN forms; ids in URLs are the
                // plain forms only.
                if s.len() != 36 && s.len() != 32 {
                    return Err(IdError);
                }
                Uuid::parse_str(s).map(Self).map_err(|_| IdError)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// The id of an environment (tenant). Every API token belongs to exactly one.
    EnvironmentId
);
id_type!(
    /// The id of a phone number owned by an environment.
    PhoneNumberId
);
id_type!(
    /// The id of a release request.
    RequestId
);
id_type!(
    /// The id of a voice agent of an environment.
    AgentId
);
id_type!(
    /// The id of a support staff account.
    StaffId
);
id_type!(
    /// The id of a row of the transactional outbox (an email, a webhook delivery or a release
    /// job).
    OutboxId
);
id_type!(
    /// A customer's webhook endpoint.
    WebhookEndpointId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = RequestId::new();
        assert_eq!(RequestId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn malformed_ids_are_errors() {
        for bad in [
            "",
            "phone-uuid-1",
            "1234",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
        ] {
            assert_eq!(PhoneNumberId::parse(bad), Err(IdError), "{bad}");
        }
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = RequestId::new();
        let b = RequestId::new();
        assert!(a < b);
    }
}
