//! Idempotency keys: a `POST` sent again with the same `Idempotency-Key` is answered with the
//! first attempt's response instead of acting twice — across every instance sharing the
//! database.
//!
//! One row per (environment, key), in three steps:
//!
//! 1. **claim** ([`Store::claim_idempotency_key`]), in a short transaction of its own: an
//!    `INSERT` under the unique index on (environment, key). The row is *in flight*: it carries
//!    a random lock token (who holds the key) and a lock expiry. Of several requests claiming one
//!    key at once the index lets exactly one in; the others read the row and are told to replay
//!    its stored response, that the key is in use, or that it was used for another request.
//! 2. **complete**, in the **same transaction as the effect** ([`Completion`], used by the use
//!    cases through [`Store::transact_completing`]): the response is written guarded by the lock
//!    token. If the claim is no longer this request's, the write matches no row and the whole
//!    transaction — the effect too — rolls back. So the effect never exists without its stored
//!    response, nor the reverse. A refusal (no effect) is stored on its own afterwards
//!    ([`Store::record_idempotent_response`]); a server error stores nothing and frees the key
//!    ([`Store::release_idempotency_key`]).
//! 3. **purge** ([`Store::purge_idempotency_keys`], called by the outbox worker): rows whose
//!    retention has passed go.
//!
//! A request that dies mid-way leaves an in-flight row whose lock expires after
//! [`IDEMPOTENCY_LOCK`]; the next request with the key then **takes it over** with a
//! compare-and-set on the old lock token, so one request at most holds a key at any time, and
//! the dead one's transaction (if it was only slow) can no longer complete. Exactly-once rests
//! on the tokens and the database's row locks, not on clocks: clocks only decide *when* a
//! takeover is allowed.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeDelta, Utc};
use releasedesk_domain::{EnvironmentId, IdempotencyKey, RequestFingerprint};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::connect::Tx;
use crate::entities::idempotency_key::{self, Column as C};
use crate::{Store, StoreError, now};

/// How long a claim holds its key before another request may take it over: the longest a
/// request that died mid-way blocks its key.
pub const IDEMPOTENCY_LOCK: TimeDelta = TimeDelta::seconds(60);
/// How long a key is kept after its response was stored (or, if it never was, after it was
/// claimed) before the purge may remove it.
pub const IDEMPOTENCY_RETENTION: TimeDelta = TimeDelta::hours(24);
/// Rows removed per purge statement, so that one purge never holds many locks for long.
const PURGE_BATCH: i64 = 1000;
/// Purge statements per call at most; the rest waits for the next call.
const PURGE_MAX_BATCHES: usize = 100;

/// A response as stored with its key and replayed byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug)]
pub enum KeyClaim {
    /// The key is this request's: carry it out, then complete or release the claim.
    Claimed(IdempotencyClaim),
    /// The key's first request is done: answer with its response.
    Replay(StoredResponse),
    /// The key's first request is still being carried out.
    InFlight,
    /// The key was used with another method, path or body.
    Reused,
}

/// A request's hold on its key, from the claim until its response is stored or the key is
/// released. Cheap to clone: the clones share whether it has been completed.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    id: Uuid,
    lock_token: Uuid,
    completed: Arc<OnceLock<StoredResponse>>,
}

impl IdempotencyClaim {
    /// The response stored for this claim, once a transaction that stored it has committed.
    pub fn completed_response(&self) -> Option<&StoredResponse> {
        self.completed.get()
    }

    /// Hands the claim to a use case whose successful result renders as `render`: the use case
    /// stores `render(&result)` in its own transaction.
    pub fn completion<'a, T>(&'a self, render: &'a Render<T>) -> Completion<'a, T> {
        Completion {
            claim: self,
            render,
        }
    }
}

/// How a use case's successful result becomes the response the client gets.
pub type Render<T> = dyn Fn(&T) -> StoredResponse + Send + Sync;

/// A claim and the way to render the response of the use case it is handed to. The use case
/// stores the rendered response in its transaction ([`Store::transact_completing`]).
pub struct Completion<'a, T> {
    claim: &'a IdempotencyClaim,
    render: &'a Render<T>,
}

impl<T> Clone for Completion<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Completion<'_, T> {}

impl Store {
    /// Claims `key` in `environment_id` for a request with `fingerprint`, in a short
    /// transaction of its own. See the module documentation.
    pub async fn claim_idempotency_key(
        &self,
        environment_id: EnvironmentId,
        key: &IdempotencyKey,
        fingerprint: &RequestFingerprint,
    ) -> Result<KeyClaim, StoreError> {
        let fingerprint = fingerprint.to_hex();
        let (key, fingerprint) = (key.as_str(), fingerprint.as_str());
        self.transact(|tx| async move {
            // The row can vanish between the insert that found it and the read (its first
            // request failed and freed it, or it was purged): then the insert is tried again.
            for _ in 0..3 {
                let at = now();
                let (id, lock_token) = (Uuid::now_v7(), Uuid::new_v4());
                let inserted = tx
                    .execute_raw(self.stmt(
                        "INSERT INTO idempotency_keys (id, environment_id, idempotency_key, \
                         fingerprint, lock_token, locked_until, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (environment_id, idempotency_key) DO NOTHING",
                        [
                            id.into(),
                            environment_id.as_uuid().into(),
                            key.into(),
                            fingerprint.into(),
                            lock_token.into(),
                            (at + IDEMPOTENCY_LOCK).into(),
                            at.into(),
                            (at + IDEMPOTENCY_RETENTION).into(),
                        ],
                    ))
                    .await?
                    .rows_affected();
                if inserted == 1 {
                    return Ok(KeyClaim::Claimed(IdempotencyClaim::new(id, lock_token)));
                }
                let Some(row) = find(&tx, environment_id, key).await? else {
                    continue;
                };
                if row.fingerprint != fingerprint {
                    return Ok(KeyClaim::Reused);
                }
                if let Some(stored) = stored_response(&row) {
                    return Ok(KeyClaim::Replay(stored));
                }
                // Without a stored response, a row is in flight: it has a holder and a lock.
                let (Some(holder), Some(locked_until)) = (row.lock_token, row.locked_until) else {
                    return Err(StoreError::Database(sea_orm::DbErr::Custom(
                        "an idempotency key has neither a response nor a holder".into(),
                    )));
                };
                if locked_until > at {
                    return Ok(KeyClaim::InFlight);
                }
                // Its request died (or is very slow): take the key over, guarded by the token
                // we saw, so that of several requests taking it over at once one wins — and the
                // old holder's completion, guarded by its own token, can no longer match.
                let takeover = idempotency_key::Entity::update_many()
                    .col_expr(C::LockToken, Some(lock_token).into())
                    .col_expr(C::LockedUntil, Some(at + IDEMPOTENCY_LOCK).into())
                    .col_expr(C::ExpiresAt, (at + IDEMPOTENCY_RETENTION).into())
                    .filter(C::Id.eq(row.id))
                    .filter(C::LockToken.eq(holder))
                    .filter(C::ResponseStatus.is_null())
                    .exec(&tx)
                    .await?;
                if takeover.rows_affected == 1 {
                    tracing::info!(
                        environment_id = %environment_id,
                        "idempotency key taken over from a request whose lock expired"
                    );
                    return Ok(KeyClaim::Claimed(IdempotencyClaim::new(row.id, lock_token)));
                }
                // Someone else completed it or took it over first: look again.
            }
            Err(StoreError::Database(sea_orm::DbErr::Custom(
                "an idempotency key kept changing hands while being claimed".into(),
            )))
        })
        .await
    }

    /// Stores the response of a claimed request that had no effect (a refusal), on its own.
    /// `false` when the claim was no longer this request's (nothing is stored then).
    pub async fn record_idempotent_response(
        &self,
        claim: &IdempotencyClaim,
        response: &StoredResponse,
    ) -> Result<bool, StoreError> {
        match self
            .transact(|tx| async move { complete_in(&tx, claim, response).await })
            .await
        {
            Ok(()) => {
                let _ = claim.completed.set(response.clone());
                Ok(true)
            }
            Err(StoreError::IdempotencyKeyTaken) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees a claimed key without storing anything (the request failed on the server's side:
    /// a retry with the key should run again). `false` when the claim was no longer this
    /// request's or its response was stored.
    pub async fn release_idempotency_key(
        &self,
        claim: &IdempotencyClaim,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .transact(|tx| async move {
                Ok(idempotency_key::Entity::delete_many()
                    .filter(C::Id.eq(claim.id))
                    .filter(C::LockToken.eq(claim.lock_token))
                    .filter(C::ResponseStatus.is_null())
                    .exec(&tx)
                    .await?
                    .rows_affected)
            })
            .await?;
        Ok(deleted == 1)
    }

    /// Removes the keys whose retention has passed (never one whose lock still holds). Several
    /// workers purging at once is harmless: a row is deleted once, the others find it gone.
    /// Returns how many rows went.
    pub async fn purge_idempotency_keys(&self) -> Result<u64, StoreError> {
        let mut purged = 0;
        for _ in 0..PURGE_MAX_BATCHES {
            let at = now();
            let stmt = self.stmt(
                "DELETE FROM idempotency_keys WHERE id IN (SELECT id FROM idempotency_keys \
                 WHERE expires_at < $1 AND (locked_until IS NULL OR locked_until < $1) LIMIT $2)",
                [at.into(), PURGE_BATCH.into()],
            );
            let stmt = &stmt;
            let n = self
                .transact(
                    |tx| async move { Ok(tx.execute_raw(stmt.clone()).await?.rows_affected()) },
                )
                .await?;
            purged += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(purged)
    }

    /// [`Store::transact`], and when a `completion` is given, the response rendered from the
    /// body's result is stored with the claimed key **in the same transaction**. If the claim
    /// is no longer the request's, nothing commits and the result is
    /// [`StoreError::IdempotencyKeyTaken`]. A use case that accepts a [`Completion`] runs its
    /// transaction through this instead of `transact`; nothing else changes.
    pub(crate) async fn transact_completing<T, F, Fut>(
        &self,
        completion: Option<Completion<'_, T>>,
        body: F,
    ) -> Result<T, StoreError>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let body = &body;
        let (value, stored) = self
            .transact(|tx| async move {
                let value = body(tx.clone()).await?;
                let stored = match completion {
                    Some(c) => {
                        let response = (c.render)(&value);
                        complete_in(&tx, c.claim, &response).await?;
                        Some(response)
                    }
                    None => None,
                };
                Ok((value, stored))
            })
            .await?;
        if let (Some(c), Some(response)) = (completion, stored) {
            // Only now, after the commit: the claim says "completed" only if it is.
            let _ = c.claim.completed.set(response);
        }
        Ok(value)
    }
}

impl IdempotencyClaim {
    fn new(id: Uuid, lock_token: Uuid) -> Self {
        Self {
            id,
            lock_token,
            completed: Arc::default(),
        }
    }
}

async fn find(
    db: &impl ConnectionTrait,
    environment_id: EnvironmentId,
    key: &str,
) -> Result<Option<idempotency_key::Model>, StoreError> {
    Ok(idempotency_key::Entity::find()
        .filter(C::EnvironmentId.eq(environment_id.as_uuid()))
        .filter(C::IdempotencyKey.eq(key))
        .one(db)
        .await?)
}

fn stored_response(row: &idempotency_key::Model) -> Option<StoredResponse> {
    let status = u16::try_from(row.response_status?).ok()?;
    Some(StoredResponse {
        status,
        content_type: row.response_content_type.clone(),
        body: row.response_body.clone().unwrap_or_default(),
    })
}

/// Stores `response` with the claimed key inside `db`'s transaction, guarded by the claim's
/// lock token: [`StoreError::IdempotencyKeyTaken`] when the key is no longer this claim's.
async fn complete_in(
    db: &impl ConnectionTrait,
    claim: &IdempotencyClaim,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    let at = now();
    let row = idempotency_key::ActiveModel {
        response_status: Set(Some(i32::from(response.status))),
        response_content_type: Set(response.content_type.clone()),
        response_body: Set(Some(response.body.clone())),
        lock_token: Set(None),
        locked_until: Set(None::<DateTime<Utc>>),
        completed_at: Set(Some(at)),
        expires_at: Set(at + IDEMPOTENCY_RETENTION),
        ..Default::default()
    };
    let res = idempotency_key::Entity::update_many()
        .set(row)
        .filter(C::Id.eq(claim.id))
        .filter(C::LockToken.eq(claim.lock_token))
        .filter(C::ResponseStatus.is_null())
        .exec(db)
        .await?;
    if res.rows_affected != 1 {
        return Err(StoreError::IdempotencyKeyTaken);
    }
    Ok(())
}
