//! The release job's transaction: what happens once the carrier has let the number go.

use releasedesk_domain::{OutboxId, PhoneNumberStatus, RequestId, RequestStatus};
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::audit::Event;
use crate::entities::{agent_phone_number, carrier_release, phone_number, release_request};
use crate::outbox::{EmailKind, OutboxKind, OutboxPayload, enqueue, mark_sent_in};
use crate::review::notify_email;
use crate::{Actor, AuditAction, ReleaseRequest, Store, StoreError, now};

/// What the carrier said when it released the number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarrierReceipt {
    /// The carrier's name ("recorded" for the default carrier).
    pub carrier: String,
    /// The carrier's reference for the release, if it gives one.
    pub reference: Option<String>,
}

/// How a release job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// This call released the number.
    Released(ReleaseRequest),
    /// The request was already released (a retry after a lost lease): nothing more to do.
    AlreadyReleased,
    /// The worker's lease on the job was lost; another worker owns it now.
    LeaseLost,
}

impl Store {
    /// One transaction: the number becomes `released`, its remaining agent assignments go,
    /// the request becomes `released` with `released_at`, the carrier's receipt and the audit
    /// event are recorded, the "released" email is enqueued and the job's outbox row is marked
    /// done (guarded by the worker's lease).
    pub async fn complete_release(
        &self,
        job: OutboxId,
        lease_owner: &str,
        request_id: RequestId,
        receipt: &CarrierReceipt,
    ) -> Result<ReleaseOutcome, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            if !mark_sent_in(&tx, job, lease_owner).await? {
                return Ok(ReleaseOutcome::LeaseLost);
            }
            let current: ReleaseRequest = release_request::Entity::find_by_id(request_id.as_uuid())
                .one(&tx)
                .await?
                .ok_or(StoreError::RequestNotFound)?
                .try_into()?;
            let next = match current.status.release() {
                Ok(next) => next,
                Err(e) if e.from == RequestStatus::Released => {
                    return Ok(ReleaseOutcome::AlreadyReleased);
                }
                Err(e) => return Err(StoreError::NotPending(e.from)),
            };
            let res = release_request::Entity::update_many()
                .col_expr(release_request::Column::Status, next.as_str().into())
                .col_expr(release_request::Column::ReleasedAt, Some(at).into())
                .filter(release_request::Column::Id.eq(request_id.as_uuid()))
                .filter(release_request::Column::Status.eq(RequestStatus::Approved.as_str()))
                .exec(&tx)
                .await?;
            if res.rows_affected != 1 {
                return Err(StoreError::NotPending(
                    crate::requests::current_status(&tx, request_id).await?,
                ));
            }
            phone_number::Entity::update_many()
                .col_expr(
                    phone_number::Column::Status,
                    PhoneNumberStatus::Released.as_str().into(),
                )
                .col_expr(phone_number::Column::ReleasedAt, Some(at).into())
                .col_expr(phone_number::Column::UpdatedAt, at.into())
                .filter(phone_number::Column::Id.eq(current.phone_number_id.as_uuid()))
                .exec(&tx)
                .await?;
            let removed = agent_phone_number::Entity::delete_many()
                .filter(
                    agent_phone_number::Column::PhoneNumberId.eq(current.phone_number_id.as_uuid()),
                )
                .exec(&tx)
                .await?
                .rows_affected;
            carrier_release::Entity::insert(carrier_release::ActiveModel {
                id: Set(Uuid::now_v7()),
                phone_number_id: Set(current.phone_number_id.as_uuid()),
                phone_number: Set(current.phone_number.clone()),
                carrier: Set(receipt.carrier.clone()),
                reference: Set(receipt.reference.clone()),
                released_at: Set(at),
            })
            .exec_without_returning(&tx)
            .await?;
            Event {
                actor: &Actor::System,
                action: AuditAction::RequestReleased,
                environment_id: Some(current.environment_id),
                request_id: Some(request_id),
                phone_number_id: Some(current.phone_number_id),
                detail: Some(serde_json::json!({
                    "carrier": receipt.carrier,
                    "reference": receipt.reference,
                    "assignments_removed": removed,
                })),
            }
            .record(&tx)
            .await?;
            let recipient = notify_email(&tx, current.environment_id).await?;
            enqueue(
                &tx,
                OutboxKind::Email(EmailKind::RequestReleased),
                current.environment_id,
                request_id,
                recipient.as_ref(),
                &OutboxPayload::default(),
            )
            .await?;
            Ok(ReleaseOutcome::Released(ReleaseRequest {
                status: next,
                released_at: Some(at),
                ..current
            }))
        })
        .await
    }
}
