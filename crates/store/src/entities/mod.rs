//! sea-orm entities: one per table. Only this crate sees them; the other crates get views.

pub mod agent;
pub mod agent_phone_number;
pub mod api_token;
pub mod audit_event;
pub mod carrier_release;
pub mod environment;
pub mod idempotency_key;
pub mod outbox;
pub mod phone_number;
pub mod release_request;
pub mod request_approval;
pub mod request_reminder;
pub mod sign_in_throttle;
pub mod staff_known_address;
pub mod staff_session;
pub mod staff_user;
pub mod webhook_endpoint;
