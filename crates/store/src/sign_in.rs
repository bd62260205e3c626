//! The sign-in throttle: failed sign-ins slow guessing down without letting an attacker lock a
//! real user out of their own address.
//!
//! An attempt **reserves** its failure before the password is checked: in one transaction it
//! locks the rows of its keys (always in the same order, so concurrent attempts cannot deadlock),
//! refuses if any of them is locked, and otherwise counts one failure on each, starting the lock
//! when a count reaches its limit. A burst of attempts sent at once is therefore counted one by
//! one, whatever the timing, on any number of instances sharing the database: once the limit is
//! reached every further attempt is refused before any password is hashed. An attempt whose
//! password turns out right gives its reservation back (see [`Store::start_staff_session`]).
//!
//! The keys of an attempt:
//! - **the account at the address** (limit 5): one guesser at one account;
//! - **the address** (limit 20), whatever accounts it names: one address spraying many accounts;
//! - **the account from addresses it has not signed in from** (limit 50): a guesser spread over
//!   many addresses. An address the account signed in from within `known_address_for` skips
//!   this key, so a distributed guesser delays the account's sign-in from new places but never
//!   locks the user out of an address they already use.
//!
//! Only the account-and-address key is cleared by a successful sign-in: one valid login must buy
//! neither the address fresh guesses at other accounts nor the distributed guesser fresh guesses
//! at this one.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use releasedesk_domain::StaffId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use crate::audit::Event;
use crate::entities::{sign_in_throttle, staff_known_address};
use crate::{Actor, AuditAction, Backend, StaffAccount, Store, StoreError, now};

/// How failed sign-ins are counted and locked (see the module docs for the keys).
///
/// A key gets its number of free failures; the failure that reaches the limit locks it for
/// `first_lock`, each further one doubles the lock up to `max_lock`. A key left alone for
/// `forget_after` after its last failure or the end of its lock starts again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInThrottle {
    /// Failures of one account from one address.
    pub account_at_address: i32,
    /// Failures from one address, whatever accounts they named.
    pub address: i32,
    /// Failures of one account from addresses it has not signed in from.
    pub account: i32,
    pub first_lock: TimeDelta,
    pub max_lock: TimeDelta,
    pub forget_after: TimeDelta,
    /// How long an address stays known to an account after a sign-in from it.
    pub known_address_for: TimeDelta,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self {
            account_at_address: 5,
            address: 20,
            account: 50,
            first_lock: TimeDelta::seconds(30),
            max_lock: TimeDelta::minutes(15),
            forget_after: TimeDelta::minutes(15),
            known_address_for: TimeDelta::days(90),
        }
    }
}

impl SignInThrottle {
    /// The lock after `failures` failures on a key with `limit` free failures, if any.
    pub fn lock_for(&self, limit: i32, failures: i32) -> Option<TimeDelta> {
        let over = failures.checked_sub(limit)?;
        if over < 0 {
            return None;
        }
        // 2^over, saturating long before it could overflow: the cap is reached after a few steps.
        let factor = 1i32.checked_shl(over.min(20) as u32).unwrap_or(i32::MAX);
        Some(
            self.first_lock
                .checked_mul(factor)
                .unwrap_or(self.max_lock)
                .min(self.max_lock),
        )
    }

    fn limit(&self, kind: KeyKind) -> i32 {
        match kind {
            KeyKind::AccountAtAddress => self.account_at_address,
            KeyKind::Address => self.address,
            KeyKind::Account => self.account,
        }
    }
}

/// Who is trying to sign in, as the throttle keys it.
#[derive(Debug, Clone, Copy)]
pub struct SignInAttempt<'a> {
    /// The account name as typed, already digested by the caller: the table keeps no typed
    /// text (people type passwords into the email field).
    pub account: &'a str,
    /// The client's address; `None` when it is not known (all such attempts share one key).
    pub address: Option<IpAddr>,
    /// The staff account the name belongs to, if there is one (for its known addresses).
    pub staff: Option<StaffId>,
}

/// What the throttle says to an attempt.
#[derive(Debug)]
pub enum Reservation {
    /// Go on and check the password; the failure is already counted.
    Granted(SignInTicket),
    /// Refused without checking the password, until then.
    Refused { until: DateTime<Utc> },
}

/// A granted attempt's reservation: hand it to [`Store::start_staff_session`] when the password
/// was right, or to [`Store::record_sign_in_failure`] when it was not.
#[derive(Debug)]
#[must_use]
pub struct SignInTicket {
    keys: Vec<Reserved>,
    /// The key form of the client's address (an IPv6 address stands for its /64).
    address: String,
    known_address_for: TimeDelta,
    /// The lock this attempt started, which holds if its password was wrong.
    pub locks_until: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Reserved {
    kind: KeyKind,
    key: String,
    /// The lock the reservation started, if it reached the limit.
    started_lock: Option<DateTime<Utc>>,
    /// The (finished) lock the row had before.
    previous_lock: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    AccountAtAddress,
    Address,
    Account,
}

/// The throttle's name for an address: IPv4 as is; IPv6 by its /64, the block one subscriber
/// usually holds (so rotating through one's own block does not buy fresh guesses).
fn address_key(address: Option<IpAddr>) -> String {
    match address.map(|a| a.to_canonical()) {
        None => "unknown".into(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// The end of the latest lock among `rows` still running at `at`.
fn running_lock<'a>(
    rows: impl Iterator<Item = &'a sign_in_throttle::Model>,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    rows.filter_map(|row| row.locked_until)
        .filter(|&until| until > at)
        .max()
}

/// Rows forgotten per pass, so one pass stays short however much an attack left behind.
const FORGET_BATCH: u32 = 100;

impl Store {
    /// Reserves one failed sign-in for `attempt` on each of its keys, or refuses it while any
    /// key is locked (see the module docs). After a granted reservation, rows that have been
    /// quiet long enough are forgotten.
    pub async fn reserve_sign_in(
        &self,
        attempt: &SignInAttempt<'_>,
        policy: &SignInThrottle,
    ) -> Result<Reservation, StoreError> {
        let at = now();
        let address = address_key(attempt.address);
        let known = match attempt.staff {
            Some(staff) => {
                staff_known_address::Entity::find_by_id((staff.as_uuid(), address.clone()))
                    .one(self.reader())
                    .await?
                    .is_some_and(|k| at - k.last_signed_in_at <= policy.known_address_for)
            }
            None => false,
        };
        let mut wanted = vec![
            (
                KeyKind::AccountAtAddress,
                format!("account-at-address:{}|{address}", attempt.account),
            ),
            (KeyKind::Address, format!("address:{address}")),
        ];
        if !known {
            wanted.push((KeyKind::Account, format!("account:{}", attempt.account)));
        }
        // One locking order for every transaction, so concurrent attempts cannot deadlock.
        wanted.sort_by(|a, b| a.1.cmp(&b.1));

        // A lock already running refuses without a write: a flood against a locked key costs
        // one read each. (A read a moment old can only refuse what a moment earlier would have
        // been refused anyway; counting is decided in the transaction below.)
        let seen = sign_in_throttle::Entity::find()
            .filter(sign_in_throttle::Column::Key.is_in(wanted.iter().map(|(_, k)| k.clone())))
            .all(self.reader())
            .await?;
        if let Some(until) = running_lock(seen.iter(), at) {
            return Ok(Reservation::Refused { until });
        }

        let (wanted, address) = (&wanted, &address);
        let reservation = self
            .transact(|tx| async move {
                let mut rows = Vec::with_capacity(wanted.len());
                for (kind, key) in wanted {
                    rows.push((*kind, self.lock_throttle_row(&tx, key, at).await?));
                }
                if let Some(until) = running_lock(rows.iter().map(|(_, row)| row), at) {
                    return Ok(Reservation::Refused { until });
                }
                let mut keys = Vec::with_capacity(rows.len());
                for (kind, row) in rows {
                    let counted = if at >= row.forget_at { 0 } else { row.failures };
                    let failures = counted.saturating_add(1);
                    let lock = policy
                        .lock_for(policy.limit(kind), failures)
                        .map(|d| at + d);
                    sign_in_throttle::Entity::update(sign_in_throttle::ActiveModel {
                        key: Set(row.key.clone()),
                        failures: Set(failures),
                        locked_until: Set(lock),
                        forget_at: Set(lock.unwrap_or(at) + policy.forget_after),
                    })
                    .exec(&tx)
                    .await?;
                    keys.push(Reserved {
                        kind,
                        key: row.key,
                        started_lock: lock,
                        previous_lock: row.locked_until,
                    });
                }
                let locks_until = keys.iter().filter_map(|k| k.started_lock).max();
                Ok(Reservation::Granted(SignInTicket {
                    keys,
                    address: address.clone(),
                    known_address_for: policy.known_address_for,
                    locks_until,
                }))
            })
            .await?;
        if matches!(reservation, Reservation::Granted(_))
            && let Err(e) = self.forget_quiet_throttle_rows(at).await
        {
            tracing::warn!(error = %e, "forgetting quiet sign-in throttle rows failed");
        }
        Ok(reservation)
    }

    /// Records a granted attempt whose password was wrong (its failure is already counted) in
    /// the audit log. `account` is the account the email named, if any: an unknown email is not
    /// written to the log (people type passwords into the email field).
    pub async fn record_sign_in_failure(
        &self,
        ticket: SignInTicket,
        account: Option<&StaffAccount>,
        remote_addr: Option<&str>,
    ) -> Result<(), StoreError> {
        let ticket = &ticket;
        self.transact(|tx| async move {
            let actor = account.map_or(Actor::System, StaffAccount::actor);
            Event {
                actor: &actor,
                action: AuditAction::StaffSignInFailed,
                environment_id: None,
                request_id: None,
                phone_number_id: None,
                detail: Some(serde_json::json!({
                    "remote_addr": remote_addr,
                    "known_account": account.is_some(),
                    "locked_until": ticket.locks_until.map(|l| l.to_rfc3339()),
                })),
            }
            .record(&tx)
            .await
        })
        .await
    }

    /// Gives back a successful attempt's reservation, inside the transaction that opens its
    /// session: the account-at-address key is cleared, the others lose the one failure this
    /// attempt counted (and the lock it started, if it did), and the address becomes known to
    /// the account.
    pub(crate) async fn release_sign_in(
        &self,
        tx: &impl ConnectionTrait,
        ticket: &SignInTicket,
        staff: StaffId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for reserved in &ticket.keys {
            match reserved.kind {
                KeyKind::AccountAtAddress => {
                    sign_in_throttle::Entity::delete_by_id(reserved.key.clone())
                        .exec(tx)
                        .await?;
                }
                KeyKind::Address | KeyKind::Account => {
                    let row = self.lock_throttle_row(tx, &reserved.key, at).await?;
                    let ours = reserved.started_lock.is_some()
                        && row.locked_until == reserved.started_lock;
                    sign_in_throttle::Entity::update(sign_in_throttle::ActiveModel {
                        key: Set(row.key),
                        failures: Set(row.failures.saturating_sub(1).max(0)),
                        locked_until: Set(if ours {
                            reserved.previous_lock
                        } else {
                            row.locked_until
                        }),
                        forget_at: Set(row.forget_at),
                    })
                    .exec(tx)
                    .await?;
                }
            }
        }
        staff_known_address::Entity::insert(staff_known_address::ActiveModel {
            staff_id: Set(staff.as_uuid()),
            address: Set(ticket.address.clone()),
            last_signed_in_at: Set(at),
        })
        .on_conflict(
            OnConflict::columns([
                staff_known_address::Column::StaffId,
                staff_known_address::Column::Address,
            ])
            .update_column(staff_known_address::Column::LastSignedInAt)
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
        staff_known_address::Entity::delete_many()
            .filter(staff_known_address::Column::StaffId.eq(staff.as_uuid()))
            .filter(staff_known_address::Column::LastSignedInAt.lt(at - ticket.known_address_for))
            .exec(tx)
            .await?;
        Ok(())
    }

    /// The throttle row of `key`, created empty if missing, locked until the transaction ends
    /// (on PostgreSQL the upsert takes the row lock, waiting for a concurrent holder and then
    /// reading its committed row; SQLite's IMMEDIATE transaction already serialises writers).
    async fn lock_throttle_row(
        &self,
        tx: &impl ConnectionTrait,
        key: &str,
        at: DateTime<Utc>,
    ) -> Result<sign_in_throttle::Model, StoreError> {
        let stmt = self.stmt(
            "INSERT INTO sign_in_throttle (\"key\", failures, locked_until, forget_at) \
             VALUES ($1, 0, NULL, $2) \
             ON CONFLICT (\"key\") DO UPDATE SET failures = sign_in_throttle.failures \
             RETURNING \"key\", failures, locked_until, forget_at",
            [key.into(), at.into()],
        );
        sign_in_throttle::Entity::find()
            .from_raw_sql(stmt)
            .one(tx)
            .await?
            .ok_or_else(|| {
                StoreError::Database(DbErr::RecordNotFound(
                    "an upsert of a sign-in throttle row returned nothing".into(),
                ))
            })
    }

    /// Deletes rows quiet past their `forget_at` (a bounded batch). It runs outside any
    /// transaction and skips rows another attempt holds, so it never waits on one.
    async fn forget_quiet_throttle_rows(&self, at: DateTime<Utc>) -> Result<(), StoreError> {
        let skip_locked = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "DELETE FROM sign_in_throttle WHERE \"key\" IN (SELECT \"key\" FROM sign_in_throttle \
             WHERE forget_at < $1 ORDER BY forget_at LIMIT {FORGET_BATCH}{skip_locked})"
        );
        let stmt = &self.stmt(&sql, [at.into()]);
        self.transact(|tx| async move {
            tx.execute_raw(stmt.clone()).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_starts_at_the_limit_grows_and_is_capped() {
        let p = SignInThrottle::default();
        assert_eq!(p.lock_for(5, 4), None);
        assert_eq!(p.lock_for(5, 5), Some(TimeDelta::seconds(30)));
        assert_eq!(p.lock_for(5, 6), Some(TimeDelta::seconds(60)));
        assert_eq!(p.lock_for(5, 9), Some(TimeDelta::minutes(8)));
        assert_eq!(p.lock_for(5, 10), Some(TimeDelta::minutes(15)));
        assert_eq!(p.lock_for(5, i32::MAX), Some(TimeDelta::minutes(15)));
        assert_eq!(p.lock_for(50, 49), None);
    }

    #[test]
    fn an_ipv6_address_is_keyed_by_its_64_block() {
        let key = |s: &str| address_key(Some(s.parse().unwrap()));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff::1"), key("2001:db8:1:2::9"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(address_key(None), "unknown");
    }
}
