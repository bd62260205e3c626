//! Reviewers' approvals of release requests: one row per reviewer and request.
//!
//! The transition engine writes them (an approval is always recorded, whether it approves the
//! request or waits for another reviewer's); the unique index on (request, reviewer) is the
//! database's last word on "the same reviewer cannot approve twice", even when two of one
//! reviewer's clicks race past the policy check.

use chrono::{DateTime, Utc};
use releasedesk_domain::{ApprovalNote, RequestId, StaffId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::entities::{request_approval, staff_user};
use crate::{Store, StoreError};

/// One reviewer's approval of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub staff_id: StaffId,
    pub staff_email: String,
    /// The reviewer's name when they approved (their email when the account was unknown).
    pub staff_name: String,
    pub note: Option<String>,
    pub approved_at: DateTime<Utc>,
}

impl From<request_approval::Model> for Approval {
    fn from(m: request_approval::Model) -> Self {
        Self {
            staff_id: m.staff_id.into(),
            staff_email: m.staff_email,
            staff_name: m.staff_name,
            note: m.note,
            approved_at: m.approved_at,
        }
    }
}

/// What the engine records for an approval.
pub(crate) struct NewApproval<'a> {
    pub request_id: RequestId,
    pub staff_id: StaffId,
    pub staff_email: &'a str,
    pub note: Option<&'a ApprovalNote>,
    pub at: DateTime<Utc>,
}

/// A request's approvals, oldest first.
pub(crate) async fn approvals_of(
    db: &impl ConnectionTrait,
    request: RequestId,
) -> Result<Vec<Approval>, StoreError> {
    Ok(request_approval::Entity::find()
        .filter(request_approval::Column::RequestId.eq(request.as_uuid()))
        .order_by_asc(request_approval::Column::ApprovedAt)
        .order_by_asc(request_approval::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Records an approval inside the caller's transaction. A second approval by the same
/// reviewer is [`StoreError::SameReviewer`].
pub(crate) async fn insert(
    db: &impl ConnectionTrait,
    approval: NewApproval<'_>,
) -> Result<(), StoreError> {
    let name = staff_user::Entity::find_by_id(approval.staff_id.as_uuid())
        .select_only()
        .column(staff_user::Column::Name)
        .into_tuple::<String>()
        .one(db)
        .await?
        .unwrap_or_else(|| approval.staff_email.to_owned());
    request_approval::Entity::insert(request_approval::ActiveModel {
        id: Set(Uuid::now_v7()),
        request_id: Set(approval.request_id.as_uuid()),
        staff_id: Set(approval.staff_id.as_uuid()),
        staff_email: Set(approval.staff_email.to_owned()),
        staff_name: Set(name),
        note: Set(approval.note.map(|n| n.as_str().to_owned())),
        approved_at: Set(approval.at),
    })
    .exec_without_returning(db)
    .await
    .map_err(|e| {
        if StoreError::is_unique_violation(&e) {
            StoreError::SameReviewer
        } else {
            e.into()
        }
    })?;
    Ok(())
}

impl Store {
    /// A request's approvals, oldest first (the console's request page).
    pub async fn approvals(&self, request: RequestId) -> Result<Vec<Approval>, StoreError> {
        approvals_of(self.reader(), request).await
    }
}
