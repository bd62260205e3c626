//! PostgreSQL only: `releasedesk_create_request`, a new release request in one round trip.
//!
//! A PL/pgSQL function that does what the store's transaction does for a create, in the same
//! order, as one call the service sends in autocommit:
//!
//! 1. the caller's token is live and its environment exists (refused: `out_authorized` false);
//! 2. the number's row is locked (`SELECT … FOR UPDATE`, the row lock every writer of a number
//!    takes first; not found in the environment: `out_e164` NULL);
//! 3. **after** the lock, the checks: the number's open request, the active agents holding it,
//!    the webhook endpoints subscribed to the event. A function's statements each take a new
//!    snapshot (READ COMMITTED, volatile function), so these see everything a writer that held
//!    the lock before committed — the same guarantee as separate statements in a transaction;
//! 4. only if every check passed (the number `active`, no open request, no active holder, at most
//!    `p_max_endpoints` subscribers): the request, its audit event, the email (when `p_email_kind`
//!    is not NULL) and one webhook delivery per subscribed endpoint (`out_inserted` true).
//!
//! It returns what it read, and the service applies its guards to that, so every refusal keeps
//! its error; the statuses written here are the domain's (`pending` and `approved` are the open
//! ones, as in the partial unique index of `m20261127_000003`). A change to the function is a
//! new migration with `CREATE OR REPLACE FUNCTION`.
//!
//! On SQLite this migration does nothing: there the create is a transaction on the single
//! writer (see the store's `transitions`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &str = r#"
CREATE OR REPLACE FUNCTION releasedesk_create_request(
    p_number uuid, p_env uuid, p_token uuid, p_request uuid, p_reason text, p_status text,
    p_at timestamptz, p_audit uuid, p_actor_kind text, p_actor_id text, p_actor_label text,
    p_action text, p_email_kind text, p_email_to text, p_email_id uuid, p_payload text,
    p_email_max integer, p_event text, p_body_prefix text, p_body_suffix text,
    p_hook_ids text, p_hook_max integer, p_pending text, p_webhook text,
    p_max_endpoints integer,
    OUT out_authorized boolean, OUT out_e164 text, OUT out_status text,
    OUT out_open_status text, OUT out_holders text, OUT out_subscribers bigint,
    OUT out_inserted boolean)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    out_inserted := false;
    out_subscribers := 0;
    out_authorized := EXISTS (
        SELECT 1 FROM api_tokens t JOIN environments e ON e.id = t.environment_id
        WHERE t.id = p_token AND t.environment_id = p_env AND t.revoked_at IS NULL);
    IF NOT out_authorized THEN
        RETURN;
    END IF;
    SELECT n.e164, n.status INTO out_e164, out_status
        FROM phone_numbers n WHERE n.id = p_number AND n.environment_id = p_env FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT r.status INTO out_open_status FROM release_requests r
        WHERE r.phone_number_id = p_number AND r.status IN ('pending', 'approved') LIMIT 1;
    SELECT json_agg(json_build_object('id', a.id, 'name', a.name) ORDER BY a.name)::text
        INTO out_holders
        FROM agents a
        WHERE a.current_status = 'active'
          AND a.id IN (SELECT ap.agent_id FROM agent_phone_numbers ap
                       WHERE ap.phone_number_id = p_number);
    SELECT count(*) INTO out_subscribers FROM webhook_endpoints w
        WHERE w.environment_id = p_env AND w.deleted_at IS NULL AND w.enabled
          AND w.events::jsonb ? p_event;
    IF out_status <> 'active' OR out_open_status IS NOT NULL OR out_holders IS NOT NULL
       OR out_subscribers > p_max_endpoints THEN
        RETURN;
    END IF;
    INSERT INTO release_requests (id, environment_id, phone_number_id, phone_number, reason,
                                  status, requested_at)
        VALUES (p_request, p_env, p_number, out_e164, p_reason, p_status, p_at);
    INSERT INTO audit_events (id, occurred_at, actor_kind, actor_id, actor_label, action,
                              environment_id, request_id, phone_number_id)
        VALUES (p_audit, p_at, p_actor_kind, p_actor_id, p_actor_label, p_action, p_env,
                p_request, p_number);
    IF p_email_kind IS NOT NULL THEN
        INSERT INTO outbox (id, kind, environment_id, request_id, recipient, payload, state,
                            attempts, max_attempts, next_attempt_at, created_at)
            VALUES (p_email_id, p_email_kind, p_env, p_request, p_email_to, p_payload,
                    p_pending, 0, p_email_max, p_at, p_at);
    END IF;
    IF out_subscribers > 0 THEN
        INSERT INTO outbox (id, kind, environment_id, request_id, recipient, payload, state,
                            attempts, max_attempts, next_attempt_at, created_at,
                            webhook_endpoint_id, event_type, body)
            SELECT (string_to_array(p_hook_ids, ','))[s.n]::uuid, p_webhook, p_env, p_request,
                   s.url, '{}', p_pending, 0, p_hook_max, p_at, p_at, s.id, p_event,
                   p_body_prefix || to_json(out_e164)::text || p_body_suffix
            FROM (SELECT w.id, w.url, row_number() OVER (ORDER BY w.id) AS n
                  FROM webhook_endpoints w
                  WHERE w.environment_id = p_env AND w.deleted_at IS NULL AND w.enabled
                    AND w.events::jsonb ? p_event) s;
    END IF;
    out_inserted := true;
END
$fn$
"#;

/// The function's parameter types, in order: the service casts each argument to its type
/// (`releasedesk_store`'s `one_statement`), and `down` names the function by them.
pub const CREATE_REQUEST_PARAM_TYPES: [&str; 25] = [
    "uuid",
    "uuid",
    "uuid",
    "uuid",
    "text",
    "text",
    "timestamptz",
    "uuid",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "uuid",
    "text",
    "integer",
    "text",
    "text",
    "text",
    "text",
    "integer",
    "text",
    "text",
    "integer",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(CREATE).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let drop = format!(
            "DROP FUNCTION IF EXISTS releasedesk_create_request({})",
            CREATE_REQUEST_PARAM_TYPES.join(", ")
        );
        manager.get_connection().execute_unprepared(&drop).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_parameter_types_are_the_functions() {
        let params = CREATE
            .split_once("releasedesk_create_request(")
            .unwrap()
            .1
            .split_once("OUT ")
            .unwrap()
            .0;
        let declared: Vec<&str> = params
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(declared, CREATE_REQUEST_PARAM_TYPES);
    }
}
