-- The minimal durable write on SQLite: a release request's row and its audit row, one
-- transaction, one commit (synchronous=FULL), nothing else: the physical floor of what any
-- design of POST request-release must write. Run through SQLite's C library by
-- bench/lib/sqlite_limit.py (format in its docstring); the PostgreSQL twin is
-- bench/lib/minimal_write.pgbench. The rows carry the same columns and the same kind of values
-- as the service's (UUIDv7 BLOB ids, RFC 3339 text times); the number's E.164 text is the bench
-- number's (bench/lib/seed_sqlite.py: +12 and k in ten digits), computed from :k instead of read
-- from the number's row.
-- \set pending pending
-- \set reason Benchmark: this number is no longer needed by the team.
-- \set customer customer
-- \set created request.created
-- \set prefix rd_bench
BEGIN IMMEDIATE;
INSERT INTO "release_requests" ("id", "environment_id", "phone_number_id", "phone_number", "reason", "status", "requested_at", "resolved_at", "released_at", "review_note", "reviewed_by") VALUES (:uuid_request, :env, :number, '+12' || printf('%010d', :k), :reason, :pending, :now, NULL, NULL, NULL, NULL);
INSERT INTO "audit_events" ("id", "occurred_at", "actor_kind", "actor_id", "actor_label", "action", "environment_id", "request_id", "phone_number_id", "detail") VALUES (:uuid_audit, :now, :customer, :prefix, 'token ' || :prefix || '…', :created, :env, :uuid_request, :number, NULL);
COMMIT;
