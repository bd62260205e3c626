//! API tokens: issued once (only their SHA-256 and a display prefix are stored), revoked by
//! prefix, and looked up by hash on every API request — except one.
//!
//! **The cached identity of the create.** `POST …/request-release` is the hot path, and on
//! PostgreSQL its token lookup was one of its round trips. [`Store::authenticate_for_write`]
//! answers it from a small in-process cache (token hash → [`AuthContext`], bounded, entries
//! kept at most [`CACHE_TTL`]) and marks the context `from_cache`. A cached identity is only
//! good for a write that checks the token again itself, in its own statement or transaction:
//! the one-statement create always does (`EXISTS` a live token of a present environment, see
//! [`crate::one_statement`]), and the transaction path does when the context came from the
//! cache ([`Store::token_still_valid`]). So a token revoked by another process (`releasedesk token
//! revoke`) is refused by the very next create, 401 as for an unknown token, with nothing
//! written. Every other endpoint keeps the full lookup. Unknown tokens are never cached.
//!
//! On SQLite the lookup runs on the read pool, beside the single writer, while a check inside
//! the write would run on the writer, whose time is the service's limit: there the create keeps
//! the full lookup (measured: see `docs/architecture.md`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use releasedesk_domain::{ApiToken, EnvironmentId, TokenHash};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::entities::api_token;
use crate::{Actor, Backend, Store, StoreError, now};

/// How long a cached identity is used before it is looked up again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Tokens whose identity is kept (a few hundred bytes each).
const CACHE_CAPACITY: usize = 10_000;

/// The cached identities, by token hash. See the module docs.
pub(crate) struct TokenCache(quick_cache::sync::Cache<String, (AuthContext, Instant)>);

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self(quick_cache::sync::Cache::new(CACHE_CAPACITY))
    }
}

/// Who is calling the API: the environment of a valid, unrevoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub environment_id: EnvironmentId,
    pub token_id: Uuid,
    pub token_prefix: String,
    /// Taken from the cache: the write must check the token again (see the module docs).
    pub(crate) from_cache: bool,
}

/// A token just issued: the only time its secret exists outside the caller's hands.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub id: Uuid,
    pub token: ApiToken,
    pub info: TokenInfo,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: Uuid,
    pub environment_id: EnvironmentId,
    pub prefix: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_token::Model> for TokenInfo {
    fn from(m: api_token::Model) -> Self {
        Self {
            id: m.id,
            environment_id: m.environment_id.into(),
            prefix: m.prefix,
            label: m.label,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
        }
    }
}

impl Store {
    pub async fn issue_token(
        &self,
        environment_id: EnvironmentId,
        label: Option<&str>,
    ) -> Result<IssuedToken, StoreError> {
        self.get_environment(environment_id).await?;
        let token = ApiToken::generate();
        let model = api_token::Model {
            id: Uuid::now_v7(),
            environment_id: environment_id.as_uuid(),
            token_hash: token.hash().as_str().to_owned(),
            prefix: token.display_prefix().to_owned(),
            label: label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()),
            created_at: now(),
            revoked_at: None,
        };
        let row = &model;
        self.transact(|tx| async move {
            api_token::Entity::insert(api_token::ActiveModel::from(row.clone()))
                .exec_without_returning(&tx)
                .await?;
            Ok(())
        })
        .await?;
        Ok(IssuedToken {
            id: model.id,
            token,
            info: model.into(),
        })
    }

    /// Revokes every live token with this display prefix; returns how many.
    pub async fn revoke_token(&self, prefix: &str) -> Result<u64, StoreError> {
        let at = now();
        self.transact(|tx| async move {
            let res = api_token::Entity::update_many()
                .col_expr(api_token::Column::RevokedAt, Some(at).into())
                .filter(api_token::Column::Prefix.eq(prefix))
                .filter(api_token::Column::RevokedAt.is_null())
                .exec(&tx)
                .await?;
            Ok(res.rows_affected)
        })
        .await
    }

    /// One indexed lookup by the token's hash.
    pub async fn authenticate(&self, hash: &TokenHash) -> Result<Option<AuthContext>, StoreError> {
        let row = api_token::Entity::find()
            .select_only()
            .column(api_token::Column::Id)
            .column(api_token::Column::EnvironmentId)
            .column(api_token::Column::Prefix)
            .filter(api_token::Column::TokenHash.eq(hash.as_str()))
            .filter(api_token::Column::RevokedAt.is_null())
            .into_tuple::<(Uuid, Uuid, String)>()
            .one(self.reader())
            .await?;
        Ok(row.map(|(token_id, env, token_prefix)| AuthContext {
            environment_id: env.into(),
            token_id,
            token_prefix,
            from_cache: false,
        }))
    }

    /// The caller of a write that checks the token again itself (the create): on PostgreSQL
    /// from the cache when it holds the token, else [`Store::authenticate`]. See the module
    /// docs.
    pub async fn authenticate_for_write(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<AuthContext>, StoreError> {
        if self.backend() != Backend::Postgres {
            return self.authenticate(hash).await;
        }
        let cache = &self.token_cache().0;
        if let Some((ctx, at)) = cache.get(hash.as_str())
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(AuthContext {
                from_cache: true,
                ..ctx
            }));
        }
        let found = self.authenticate(hash).await?;
        match &found {
            Some(ctx) => cache.insert(hash.as_str().to_owned(), (ctx.clone(), Instant::now())),
            None => {
                cache.remove(hash.as_str());
            }
        }
        Ok(found)
    }
}

impl Store {
    /// Inside a write: is the caller's token still live, and its environment still there?
    /// `Unauthenticated` if not.
    pub(crate) async fn token_still_valid(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        caller: &AuthContext,
    ) -> Result<(), StoreError> {
        let live = db
            .query_one_raw(self.stmt(
                "SELECT 1 FROM api_tokens t JOIN environments e ON e.id = t.environment_id \
                 WHERE t.id = $1 AND t.environment_id = $2 AND t.revoked_at IS NULL",
                [
                    caller.token_id.into(),
                    caller.environment_id.as_uuid().into(),
                ],
            ))
            .await?
            .is_some();
        if live {
            Ok(())
        } else {
            Err(StoreError::Unauthenticated)
        }
    }
}

impl AuthContext {
    /// The customer acting through this token, as the audit log names them.
    pub fn actor(&self) -> Actor {
        Actor::Customer {
            token_prefix: self.token_prefix.clone(),
        }
    }
}
