//! The release-request workflow (DESIGN §1) and the other small enumerations.
//!
//! ```text
//! pending --cancel--> cancelled   (terminal)
//! pending --reject--> rejected    (terminal)
//! pending --approve-> approved --release--> released (terminal)
//! ```
//!
//! `approved` never goes back. Each transition is a method returning the next status or a
//! [`TransitionError`]; the store turns the same rule into a guarded `UPDATE … WHERE status = …`
//! so that races are settled by the database.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(UnknownValue(other.to_owned())),
                }
            }
        }
    };
}

string_enum!(
    /// Where a release request is in the workflow.
    RequestStatus {
        Pending => "pending",
        Approved => "approved",
        Released => "released",
        Cancelled => "cancelled",
        Rejected => "rejected",
    }
);

string_enum!(
    /// Something that can happen to a release request.
    RequestAction {
        Cancel => "cancel",
        Approve => "approve",
        Reject => "reject",
        Release => "release",
    }
);

string_enum!(
    /// What happened to a release request: it was created, or it entered a new status. The
    /// audit log, the emails and the webhooks are all keyed by it, so a new status is a new
    /// event here and nowhere else.
    RequestEvent {
        Created => "created",
        Cancelled => "cancelled",
        Approved => "approved",
        Rejected => "rejected",
        Released => "released",
    }
);

impl RequestEvent {
    /// The event of a request entering `status`. Only creation enters `pending`.
    pub const fn entering(status: RequestStatus) -> RequestEvent {
        match status {
            RequestStatus::Pending => RequestEvent::Created,
            RequestStatus::Cancelled => RequestEvent::Cancelled,
            RequestStatus::Approved => RequestEvent::Approved,
            RequestStatus::Rejected => RequestEvent::Rejected,
            RequestStatus::Released => RequestEvent::Released,
        }
    }
}

string_enum!(
    /// A phone number is `active` until the release job has released it.
    PhoneNumberStatus {
        Active => "active",
        Released => "released",
    }
);

string_enum!(
    /// An agent's own status; only `active` agents hold ("use") their numbers.
    AgentStatus {
        Active => "active",
        Draft => "draft",
        Paused => "paused",
    }
);

string_enum!(
    /// Which way an agent's calls go.
    Direction {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

/// A transition the workflow does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a release request that is {from}")]
pub struct TransitionError {
    pub from: RequestStatus,
    pub action: RequestAction,
}

impl RequestStatus {
    /// Every request starts here.
    pub const INITIAL: RequestStatus = RequestStatus::Pending;

    /// `pending` and `approved` requests are *open*: at most one per number.
    pub const fn is_open(self) -> bool {
        matches!(self, RequestStatus::Pending | RequestStatus::Approved)
    }

    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            RequestStatus::Released | RequestStatus::Cancelled | RequestStatus::Rejected
        )
    }

    /// The whole transition table in one place.
    pub fn apply(self, action: RequestAction) -> Result<RequestStatus, TransitionError> {
        use RequestAction as A;
        use RequestStatus as S;
        match (self, action) {
            (S::Pending, A::Cancel) => Ok(S::Cancelled),
            (S::Pending, A::Reject) => Ok(S::Rejected),
            (S::Pending, A::Approve) => Ok(S::Approved),
            (S::Approved, A::Release) => Ok(S::Released),
            (from, action) => Err(TransitionError { from, action }),
        }
    }

    /// The status a request must be in for `action` to apply (the guard of the store's UPDATE).
    pub const fn required_for(action: RequestAction) -> RequestStatus {
        match action {
            RequestAction::Cancel | RequestAction::Reject | RequestAction::Approve => {
                RequestStatus::Pending
            }
            RequestAction::Release => RequestStatus::Approved,
        }
    }

    pub fn cancel(self) -> Result<RequestStatus, TransitionError> {
        self.apply(RequestAction::Cancel)
    }
    pub fn reject(self) -> Result<RequestStatus, TransitionError> {
        self.apply(RequestAction::Reject)
    }
    pub fn approve(self) -> Result<RequestStatus, TransitionError> {
        self.apply(RequestAction::Approve)
    }
    pub fn release(self) -> Result<RequestStatus, TransitionError> {
        self.apply(RequestAction::Release)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RequestAction as A;
    use RequestStatus as S;
    use proptest::prelude::*;

    #[test]
    fn the_full_transition_table() {
        let allowed = [
            (S::Pending, A::Cancel, S::Cancelled),
            (S::Pending, A::Reject, S::Rejected),
            (S::Pending, A::Approve, S::Approved),
            (S::Approved, A::Release, S::Released),
        ];
        for &from in S::ALL {
            for &action in A::ALL {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to)
                    .ok_or(TransitionError { from, action });
                assert_eq!(from.apply(action), expected, "{from} --{action}-->");
            }
        }
    }

    #[test]
    fn approved_can_never_be_cancelled_or_go_back() {
        assert!(S::Approved.cancel().is_err());
        assert!(S::Approved.reject().is_err());
        assert!(S::Approved.approve().is_err());
        assert_eq!(S::Approved.release(), Ok(S::Released));
    }

    #[test]
    fn transition_errors_name_the_status() {
        let err = S::Cancelled.cancel().unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot cancel a release request that is cancelled"
        );
    }

    #[test]
    fn statuses_round_trip_through_serde_as_snake_case() {
        for &s in S::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<S>(&json).unwrap(), s);
            assert_eq!(s.as_str().parse::<S>(), Ok(s));
        }
        assert!("Pending".parse::<S>().is_err());
    }

    #[test]
    fn required_for_matches_the_table() {
        for &action in A::ALL {
            let from = S::required_for(action);
            assert!(from.apply(action).is_ok());
            for &other in S::ALL.iter().filter(|s| **s != from) {
                assert!(other.apply(action).is_err());
            }
        }
    }

    #[test]
    fn every_status_is_entered_by_exactly_one_event() {
        let mut events: Vec<RequestEvent> =
            S::ALL.iter().map(|&s| RequestEvent::entering(s)).collect();
        assert_eq!(RequestEvent::entering(S::INITIAL), RequestEvent::Created);
        events.sort_by_key(|e| e.as_str());
        events.dedup();
        assert_eq!(events.len(), RequestEvent::ALL.len());
        for &s in S::ALL {
            if s != S::INITIAL {
                assert_eq!(RequestEvent::entering(s).as_str(), s.as_str());
            }
        }
    }

    fn any_status() -> impl Strategy<Value = S> {
        proptest::sample::select(S::ALL)
    }
    fn any_action() -> impl Strategy<Value = A> {
        proptest::sample::select(A::ALL)
    }

    proptest! {
        /// Whatever sequence of actions is attempted, the workflow's invariants hold.
        #[test]
        fn any_sequence_of_actions_respects_the_workflow(
            actions in proptest::collection::vec(any_action(), 0..20)
        ) {
            let mut status = S::Pending;
            let mut was_approved = false;
            for action in actions {
                let before = status;
                match status.apply(action) {
                    Ok(next) => {
                        prop_assert!(!before.is_terminal(), "left terminal {before}");
                        status = next;
                    }
                    Err(e) => {
                        prop_assert_eq!(e, TransitionError { from: before, action });
                    }
                }
                if status == S::Approved { was_approved = true; }
                // Once approved, the only statuses ever seen are approved and released.
                if was_approved {
                    prop_assert!(matches!(status, S::Approved | S::Released));
                }
            }
        }

        #[test]
        fn terminal_statuses_accept_nothing(from in any_status(), action in any_action()) {
            if from.is_terminal() {
                prop_assert!(from.apply(action).is_err());
            }
            prop_assert_eq!(from.is_open(), !from.is_terminal());
        }
    }
}
