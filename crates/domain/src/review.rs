//! The review policy: who may do what in the console, how many reviewers must approve a
//! release, and when a request nobody decided is overdue or expires.
//!
//! All of it is pure: the console asks [`StaffRole::allows`] before every action, the store asks
//! [`decide_approval`] inside the approval's transaction (after the number's lock, so the
//! approvals it is given are all there are), and both ask [`ServiceLevels`] with a clock passed in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::UnknownValue;
use crate::status::string_enum;

string_enum!(
    /// A staff account's role. Each includes everything the one before it may do.
    StaffRole {
        Viewer => "viewer",
        Reviewer => "reviewer",
        Admin => "admin",
    }
);

/// Something a staff member does in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See the queue, requests, the audit log and the outbox.
    Read,
    /// Approve or reject a release request.
    Decide,
    /// Put a dead outbox row back in the queue.
    RetryOutbox,
    /// List, add, re-role, disable and enable staff accounts.
    ManageStaff,
}

impl Permission {
    pub const ALL: &'static [Permission] = &[
        Permission::Read,
        Permission::Decide,
        Permission::RetryOutbox,
        Permission::ManageStaff,
    ];

    /// What the permission lets one do, for "your role does not allow …" messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read the console",
            Permission::Decide => "approve or reject release requests",
            Permission::RetryOutbox => "retry outbox rows",
            Permission::ManageStaff => "manage staff accounts",
        }
    }
}

impl StaffRole {
    /// The role of a new account when none is given.
    pub const DEFAULT: StaffRole = StaffRole::Reviewer;

    /// Who may do what: the whole table, in one place.
    pub const fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        use StaffRole as R;
        match (self, permission) {
            (R::Viewer | R::Reviewer | R::Admin, P::Read) => true,
            (R::Reviewer | R::Admin, P::Decide | P::RetryOutbox) => true,
            (R::Viewer, P::Decide | P::RetryOutbox) => false,
            (R::Admin, P::ManageStaff) => true,
            (R::Viewer | R::Reviewer, P::ManageStaff) => false,
        }
    }
}

/// How many different reviewers must approve a release: 1 (the default) or 2 ("four eyes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct RequiredApprovals(u8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("required approvals must be 1 or 2 (got {0})")]
pub struct RequiredApprovalsError(pub i64);

impl RequiredApprovals {
    pub const ONE: RequiredApprovals = RequiredApprovals(1);
    pub const TWO: RequiredApprovals = RequiredApprovals(2);

    pub fn new(n: i64) -> Result<Self, RequiredApprovalsError> {
        match n {
            1 => Ok(Self::ONE),
            2 => Ok(Self::TWO),
            other => Err(RequiredApprovalsError(other)),
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }
}

impl Default for RequiredApprovals {
    fn default() -> Self {
        Self::ONE
    }
}

impl TryFrom<i64> for RequiredApprovals {
    type Error = RequiredApprovalsError;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<RequiredApprovals> for i64 {
    fn from(r: RequiredApprovals) -> i64 {
        i64::from(r.0)
    }
}

impl fmt::Display for RequiredApprovals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RequiredApprovals {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<i64>()
            .ok()
            .and_then(|n| Self::new(n).ok())
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

/// What one more approval does to a pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The approval is recorded and the request stays `pending`: `given` of `required`
    /// different reviewers have approved so far.
    Recorded {
        given: u8,
        required: RequiredApprovals,
    },
    /// Enough different reviewers have approved: the request becomes `approved`.
    /// `new_approval` is false only when this reviewer's earlier approval already meets a
    /// policy lowered since (it completes the request without a second record of it).
    Approved { new_approval: bool },
}

/// An approval the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error(
        "you already approved this request; the next approval must come from a different reviewer"
    )]
    SameReviewer,
}

/// Decides what `reviewer`'s approval does, given the reviewers who approved before (in any
/// order) and the environment's policy as it is now. Four eyes means four: the reviewer who gave
/// an approval can never give the one that completes it.
pub fn decide_approval<R: PartialEq>(
    required: RequiredApprovals,
    given: &[R],
    reviewer: &R,
) -> Result<ApprovalOutcome, ApprovalError> {
    let required_n = usize::from(required.get());
    let already = given.contains(reviewer);
    if given.len() >= required_n {
        // Only after the policy was lowered: the approvals already given suffice.
        return Ok(ApprovalOutcome::Approved {
            new_approval: !already,
        });
    }
    if already {
        return Err(ApprovalError::SameReviewer);
    }
    let after = given.len() + 1;
    if after >= required_n {
        Ok(ApprovalOutcome::Approved { new_approval: true })
    } else {
        Ok(ApprovalOutcome::Recorded {
            given: u8::try_from(after).unwrap_or(u8::MAX),
            required,
        })
    }
}

/// How long a pending request may wait: past `remind_after` it is *overdue* (marked in the
/// queue, the support inbox reminded once); past `expire_after` it *expires*. `None` turns
/// either off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceLevels {
    pub remind_after: Option<TimeDelta>,
    pub expire_after: Option<TimeDelta>,
}

impl Default for ServiceLevels {
    /// A day to remind, thirty days to expire.
    fn default() -> Self {
        Self {
            remind_after: Some(TimeDelta::hours(24)),
            expire_after: Some(TimeDelta::days(30)),
        }
    }
}

impl ServiceLevels {
    /// Service levels that never remind nor expire.
    pub const OFF: ServiceLevels = ServiceLevels {
        remind_after: None,
        expire_after: None,
    };

    /// Requests made before this instant are overdue at `now`.
    pub fn remind_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.remind_after.and_then(|d| now.checked_sub_signed(d))
    }

    /// Requests made before this instant have expired at `now`.
    pub fn expire_cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.expire_after.and_then(|d| now.checked_sub_signed(d))
    }

    /// Has a request made at `requested_at` waited longer than `remind_after` at `now`?
    pub fn is_overdue(&self, requested_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.remind_cutoff(now).is_some_and(|c| requested_at < c)
    }

    /// When a request made at `requested_at` expires, if it stays pending.
    pub fn expires_at(&self, requested_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.expire_after
            .and_then(|d| requested_at.checked_add_signed(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission as P;
    use StaffRole as R;

    #[test]
    fn the_full_permission_table() {
        let allowed = [
            (R::Viewer, P::Read),
            (R::Reviewer, P::Read),
            (R::Reviewer, P::Decide),
            (R::Reviewer, P::RetryOutbox),
            (R::Admin, P::Read),
            (R::Admin, P::Decide),
            (R::Admin, P::RetryOutbox),
            (R::Admin, P::ManageStaff),
        ];
        for &role in R::ALL {
            for &p in P::ALL {
                assert_eq!(
                    role.allows(p),
                    allowed.contains(&(role, p)),
                    "{role} may {p:?}?"
                );
            }
        }
    }

    #[test]
    fn each_role_may_do_everything_the_one_below_may() {
        for pair in R::ALL.windows(2) {
            for &p in P::ALL {
                assert!(!pair[0].allows(p) || pair[1].allows(p), "{pair:?} {p:?}");
            }
        }
    }

    #[test]
    fn roles_round_trip_and_default_to_reviewer() {
        for &r in R::ALL {
            assert_eq!(r.as_str().parse::<R>(), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert!("Admin".parse::<R>().is_err());
        assert_eq!(R::DEFAULT, R::Reviewer);
    }

    #[test]
    fn required_approvals_are_one_or_two() {
        assert_eq!(RequiredApprovals::new(1), Ok(RequiredApprovals::ONE));
        assert_eq!(RequiredApprovals::new(2), Ok(RequiredApprovals::TWO));
        for bad in [0, 3, -1, i64::MAX] {
            assert_eq!(
                RequiredApprovals::new(bad),
                Err(RequiredApprovalsError(bad))
            );
        }
        assert_eq!("2".parse::<RequiredApprovals>(), Ok(RequiredApprovals::TWO));
        assert!("two".parse::<RequiredApprovals>().is_err());
        assert_eq!(RequiredApprovals::default(), RequiredApprovals::ONE);
    }

    const ADA: &str = "ada";
    const BOB: &str = "bob";

    #[test]
    fn one_approval_approves_when_one_is_required() {
        assert_eq!(
            decide_approval(RequiredApprovals::ONE, &[], &ADA),
            Ok(ApprovalOutcome::Approved { new_approval: true })
        );
    }

    #[test]
    fn with_four_eyes_the_first_approval_is_recorded_and_the_second_approves() {
        assert_eq!(
            decide_approval(RequiredApprovals::TWO, &[], &ADA),
            Ok(ApprovalOutcome::Recorded {
                given: 1,
                required: RequiredApprovals::TWO
            })
        );
        assert_eq!(
            decide_approval(RequiredApprovals::TWO, &[ADA], &BOB),
            Ok(ApprovalOutcome::Approved { new_approval: true })
        );
    }

    #[test]
    fn the_same_reviewer_cannot_give_the_second_approval() {
        assert_eq!(
            decide_approval(RequiredApprovals::TWO, &[ADA], &ADA),
            Err(ApprovalError::SameReviewer)
        );
    }

    #[test]
    fn a_policy_raised_after_an_approval_asks_for_another_reviewer() {
        // Approved once under "one", then the environment asks for two.
        assert_eq!(
            decide_approval(RequiredApprovals::TWO, &[ADA], &BOB),
            Ok(ApprovalOutcome::Approved { new_approval: true })
        );
        assert_eq!(
            decide_approval(RequiredApprovals::TWO, &[ADA], &ADA),
            Err(ApprovalError::SameReviewer)
        );
    }

    #[test]
    fn a_policy_lowered_after_an_approval_lets_any_reviewer_complete_it() {
        assert_eq!(
            decide_approval(RequiredApprovals::ONE, &[ADA], &ADA),
            Ok(ApprovalOutcome::Approved {
                new_approval: false
            })
        );
        assert_eq!(
            decide_approval(RequiredApprovals::ONE, &[ADA], &BOB),
            Ok(ApprovalOutcome::Approved { new_approval: true })
        );
    }

    #[test]
    fn approvals_never_complete_without_enough_different_reviewers() {
        // Whatever the history, an outcome of Approved means at least `required` different
        // reviewers, counting this one only when its approval is new.
        let reviewers = ["a", "b", "c"];
        for required in [RequiredApprovals::ONE, RequiredApprovals::TWO] {
            for n in 0..=2usize {
                let given = &reviewers[..n];
                for reviewer in &reviewers {
                    match decide_approval(required, given, reviewer) {
                        Ok(ApprovalOutcome::Approved { new_approval }) => {
                            let distinct = n + usize::from(new_approval);
                            assert!(distinct >= usize::from(required.get()));
                            assert_eq!(new_approval, !given.contains(reviewer));
                        }
                        Ok(ApprovalOutcome::Recorded { given: after, .. }) => {
                            assert_eq!(usize::from(after), n + 1);
                            assert!(usize::from(after) < usize::from(required.get()));
                        }
                        Err(ApprovalError::SameReviewer) => assert!(given.contains(reviewer)),
                    }
                }
            }
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn overdue_after_remind_after_and_expiring_after_expire_after() {
        let levels = ServiceLevels::default();
        let requested = at("2026-01-01T00:00:00Z");
        assert!(!levels.is_overdue(requested, at("2026-01-02T00:00:00Z")));
        assert!(levels.is_overdue(requested, at("2026-01-02T00:00:01Z")));
        assert_eq!(
            levels.expires_at(requested),
            Some(at("2026-01-31T00:00:00Z"))
        );
        assert_eq!(
            levels.expire_cutoff(at("2026-01-31T00:00:00Z")),
            Some(requested)
        );
    }

    #[test]
    fn service_levels_can_be_turned_off() {
        let off = ServiceLevels::OFF;
        let requested = at("2000-01-01T00:00:00Z");
        assert!(!off.is_overdue(requested, at("2026-01-01T00:00:00Z")));
        assert_eq!(off.expires_at(requested), None);
        assert_eq!(off.remind_cutoff(requested), None);
    }
}
