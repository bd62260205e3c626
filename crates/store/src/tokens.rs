//! API tokens: issued once (only their SHA-256 and a display prefix are stored), revoked by
//! prefix, and looked up by hash on every API request.

use chrono::{DateTime, Utc};
use releasedesk_domain::{ApiToken, EnvironmentId, TokenHash};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use crate::entities::api_token;
use crate::{Actor, Store, StoreError, now};

/// Who is calling the API: the environment of a valid, unrevoked token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub environment_id: EnvironmentId,
    pub token_id: Uuid,
    pub token_prefix: String,
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
        }))
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
