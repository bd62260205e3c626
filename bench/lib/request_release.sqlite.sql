-- The SQL of one POST /api/v1/phone-numbers/{id}/request-release on SQLite, statement for
-- statement as the service sends it today (the token lookup on its own connection outside the
-- transaction, then one BEGIN IMMEDIATE … COMMIT), run through SQLite's C library by
-- bench/lib/sqlite_limit.py, whose docstring describes this file's format. The PostgreSQL twin
-- is bench/lib/request_release.pgbench: when the service's transaction changes, change both.
--
-- Differences from the service, all small: named parameters (:name) where the service sends
-- positional ones (SQLite compiles both into the same program); every client has one
-- connection for both the token lookup and the transaction (the service reads on a pool of
-- four and writes on one connection); the audit label is concatenated by SQLite, not in Rust.
-- Values the service binds as parameters are bound as parameters here too (a literal could
-- let SQLite's planner pick a partial index the service's statement cannot use).
--
-- Per transaction the runner binds :number, :env, :th, :now and a UUIDv7 for each :uuid_*.
-- \set one 1
-- \set pending pending
-- \set approved approved
-- \set active active
-- \set enabled 1
-- \set reason Benchmark: this number is no longer needed by the team.
-- \set customer customer
-- \set created request.created

-- Store::authenticate (crates/store/src/tokens.rs), on a reader.
SELECT "api_tokens"."id", "api_tokens"."environment_id", "api_tokens"."prefix" FROM "api_tokens" WHERE "api_tokens"."token_hash" = :th AND "api_tokens"."revoked_at" IS NULL LIMIT :one;
-- \gset tok_

-- Store::transact (crates/store/src/connect.rs): the write transaction.
BEGIN IMMEDIATE;

-- Store::lock_number_for_create (numbers.rs): the number's lock, scoped to the token's
-- environment, with what guards::for_new_request needs read in the same statement (the
-- number's open request, whether an active agent holds it).
UPDATE phone_numbers SET updated_at = :now WHERE id = :number AND (:env IS NULL OR environment_id = :env) RETURNING environment_id, e164, status, (SELECT r.status FROM release_requests r WHERE r.phone_number_id = :number AND r.status IN ('pending', 'approved') LIMIT 1), EXISTS (SELECT 1 FROM agents a WHERE a.current_status = 'active' AND a.id IN (SELECT ap.agent_id FROM agent_phone_numbers ap WHERE ap.phone_number_id = :number));
-- \gset num_

-- insert_request (transitions.rs).
INSERT INTO "release_requests" ("id", "environment_id", "phone_number_id", "phone_number", "reason", "status", "requested_at", "resolved_at", "released_at", "review_note", "reviewed_by") VALUES (:uuid_request, :env, :number, :num_e164, :reason, :pending, :now, NULL, NULL, NULL, NULL);

-- Event::record (audit.rs).
INSERT INTO "audit_events" ("id", "occurred_at", "actor_kind", "actor_id", "actor_label", "action", "environment_id", "request_id", "phone_number_id", "detail") VALUES (:uuid_audit, :now, :customer, :tok_prefix, 'token ' || :tok_prefix || '…', :created, :env, :uuid_request, :number, NULL);

-- enqueue_notifications (notifications.rs): with no support inbox set (as bench/run starts the
-- service) a new request enqueues no email; enqueue_webhooks (webhooks.rs) reads the
-- environment's live endpoints, of which the benchmark has none.
SELECT "webhook_endpoints"."id", "webhook_endpoints"."environment_id", "webhook_endpoints"."url", "webhook_endpoints"."description", "webhook_endpoints"."events", "webhook_endpoints"."enabled", "webhook_endpoints"."secret", "webhook_endpoints"."previous_secret", "webhook_endpoints"."previous_secret_expires_at", "webhook_endpoints"."created_at", "webhook_endpoints"."disabled_at", "webhook_endpoints"."disabled_reason", "webhook_endpoints"."deleted_at" FROM "webhook_endpoints" WHERE "webhook_endpoints"."environment_id" = :env AND "webhook_endpoints"."deleted_at" IS NULL AND "webhook_endpoints"."enabled" = :enabled ORDER BY "webhook_endpoints"."id" ASC;

COMMIT;
