//! The hot path of `POST …/request-release`: on PostgreSQL a create without an idempotency key is
//! one statement, and the caller's token may come from a cache because the write checks it
//! again. These tests hold the shortcuts to the long way's behaviour:
//!
//! - the one statement writes the same rows as the transaction (the rules table, not a copy of
//!   it, decides the outbox rows: a disagreement fails here);
//! - a token revoked by another process is refused by the next create, 401, nothing written;
//! - creates racing agent assignments and cancellations end as the locked path allows.

mod common;

use std::collections::BTreeMap;

use common::{Backend, TestApp, send};
use releasedesk_domain::{PhoneNumberId, WebhookEvent, WebhookPolicy, WebhookUrl};
use releasedesk_store::{NewWebhookEndpoint, Store, StoreOptions};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

const REASON: &str = "We no longer need this number for our agents.";

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if releasedesk_testkit::test_database_url().is_some() {
                        super::$name(super::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

on_both_backends!(
    a_token_revoked_by_another_process_is_refused_by_the_next_create,
    creates_racing_assignments_never_leave_an_open_request_on_a_held_number,
    creates_racing_cancellations_keep_one_open_request_at_most,
);

async fn rows(app: &TestApp, sql: &str) -> Vec<BTreeMap<String, Value>> {
    let db = app.raw_db().await;
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Sqlite {
        sql.replace('$', "?")
    } else {
        sql.to_owned()
    };
    let found = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let mut m = BTreeMap::new();
            for (i, col) in r.column_names().iter().enumerate() {
                let v: Option<String> = r.try_get_by_index(i).unwrap();
                m.insert(col.clone(), v.map_or(Value::Null, Value::String));
            }
            m
        })
        .collect();
    db.close().await.unwrap();
    found
}

/// `SELECT COUNT(*) FROM …` with `$n` parameters, on either backend.
async fn count_where(app: &TestApp, sql: &str, values: Vec<sea_orm::Value>) -> usize {
    let db = app.raw_db().await;
    let backend = db.get_database_backend();
    let sql = if backend == DbBackend::Sqlite {
        sql.replace('$', "?")
    } else {
        sql.to_owned()
    };
    let n: i64 = db
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    db.close().await.unwrap();
    usize::try_from(n).unwrap()
}

async fn count(app: &TestApp, sql: &str) -> usize {
    count_where(app, sql, Vec::new()).await
}

async fn create(app: &TestApp, number: impl std::fmt::Display, token: &str) -> (StatusCode, Value) {
    send(app.release_request(number, token)).await
}

async fn a_token_revoked_by_another_process_is_refused_by_the_next_create(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let issued = app.store.issue_token(app.env_id, None).await.unwrap();
    let token = issued.token.expose().to_owned();
    // The token works, and (on PostgreSQL) the server now has its identity cached.
    let (status, body) = create(&app, app.numbers.free, &token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Another process revokes it: a store of its own on the same database.
    let other = Store::connect(&app.db.url, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(other.revoke_token(&issued.info.prefix).await.unwrap(), 1);
    other.close().await;
    let before = count(&app, "SELECT COUNT(*) FROM release_requests").await;
    let audits = count(&app, "SELECT COUNT(*) FROM audit_events").await;
    let outbox = count(&app, "SELECT COUNT(*) FROM outbox").await;
    for number in [app.numbers.free2, app.numbers.free] {
        let (status, body) = create(&app, number, &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(
            body,
            json!({ "success": false, "message": "Missing, invalid or revoked API token", "code": "UNAUTHORIZED" })
        );
    }
    // With an idempotency key too.
    let (status, _) = send(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free2
            )))
            .bearer_auth(&token)
            .header("idempotency-key", "revoked-1")
            .json(&json!({ "reason": REASON })),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM release_requests").await,
        before
    );
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM audit_events").await,
        audits
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM outbox").await, outbox);
    // The other token of the environment still creates.
    let (status, body) = create(&app, app.numbers.free2, &app.token).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.shutdown().await;
}

/// A create and an assignment of the same number, sent together, many times: the locked path
/// lets exactly one of them win each time (or the create first and the assignment refused, or
/// the assignment first and the create refused), never both.
async fn creates_racing_assignments_never_leave_an_open_request_on_a_held_number(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut outcomes: BTreeMap<(u16, u16), usize> = BTreeMap::new();
    for round in 0..25 {
        let number = app.add_number(&format!("+1555077{round:04}")).await;
        let assign = app
            .client
            .put(app.url(&format!("/agents/{}/calling", app.front_desk)))
            .bearer_auth(&app.token)
            .json(&json!({ "direction": "inbound", "phone_number_ids": [number.to_string()] }));
        let (c, a) = tokio::join!(create(&app, number, &app.token), send(assign));
        let key = (c.0.as_u16(), a.0.as_u16());
        match key {
            (201, 409) => assert_eq!(a.1["code"], "PHONE_NUMBER_RELEASE_PENDING"),
            (422, 200) => assert_eq!(c.1["code"], "PHONE_NUMBER_IN_USE"),
            other => panic!("round {round}: {other:?}: {} / {}", c.1, a.1),
        }
        *outcomes.entry(key).or_default() += 1;
        // Free the agent for the next round.
        let (status, _) = app
            .put_json(
                &format!("/agents/{}/calling", app.front_desk),
                json!({ "direction": "inbound", "phone_number_ids": [] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    eprintln!("create vs assignment outcomes: {outcomes:?}");
    app.shutdown().await;
}

/// A cancellation of the number's pending request and a new create, sent together: the create
/// lands only after the cancellation (201), or finds the request still pending (409); one open
/// request at most, always.
async fn creates_racing_cancellations_keep_one_open_request_at_most(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let number = app.numbers.free;
    let mut open = app.request_release(number).await;
    let mut outcomes: BTreeMap<u16, usize> = BTreeMap::new();
    for round in 0..25 {
        let cancel = app
            .client
            .post(app.url(&format!("/phone-numbers/release-requests/{open}/cancel")))
            .bearer_auth(&app.token);
        let (c, k) = tokio::join!(create(&app, number, &app.token), send(cancel));
        assert_eq!(k.0, StatusCode::OK, "round {round}: {}", k.1);
        match c.0.as_u16() {
            201 => open = c.1["data"]["id"].as_str().unwrap().to_owned(),
            409 => {
                assert_eq!(c.1["code"], "RELEASE_ALREADY_PENDING");
                open = app.request_release(number).await;
            }
            other => panic!("round {round}: {other}: {}", c.1),
        }
        *outcomes.entry(c.0.as_u16()).or_default() += 1;
        let open_rows = count_where(
            &app,
            "SELECT COUNT(*) FROM release_requests \
             WHERE phone_number_id = $1 AND status IN ('pending', 'approved')",
            vec![number.as_uuid().into()],
        )
        .await;
        assert_eq!(open_rows, 1, "round {round}");
    }
    eprintln!("create vs cancellation outcomes: {outcomes:?}");
    app.shutdown().await;
}

/// PostgreSQL only (SQLite has one path): a create without a key (one call of
/// `releasedesk_create_request`) and one with a key (the transaction) write the same request, audit event and outbox rows — the
/// support email and one webhook delivery per enabled, live endpoint subscribed to
/// `release_request.created`, with the same body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_statement_create_writes_what_the_transaction_writes() {
    let Some(app) = TestApp::spawn_with(Backend::Postgres, |c| {
        c.run_worker = false;
        c.support_email = Some("support@desk.example".into());
    })
    .await
    else {
        return;
    };
    let url = |path: &str| {
        WebhookUrl::parse(
            &format!("https://hooks.example.com/{path}"),
            WebhookPolicy::default(),
        )
        .unwrap()
    };
    let endpoint = |path: &str, events: Vec<WebhookEvent>| NewWebhookEndpoint {
        url: url(path),
        description: None,
        events,
    };
    let store = &app.store;
    let auth = &app.auth;
    store
        .create_webhook_endpoint(auth, endpoint("all", vec![]))
        .await
        .unwrap();
    store
        .create_webhook_endpoint(
            auth,
            endpoint(
                "created",
                vec![WebhookEvent::RequestCreated, WebhookEvent::RequestApproved],
            ),
        )
        .await
        .unwrap();
    store
        .create_webhook_endpoint(
            auth,
            endpoint("approved", vec![WebhookEvent::RequestApproved]),
        )
        .await
        .unwrap();
    let disabled = store
        .create_webhook_endpoint(auth, endpoint("disabled", vec![]))
        .await
        .unwrap();
    let deleted = store
        .create_webhook_endpoint(auth, endpoint("deleted", vec![]))
        .await
        .unwrap();
    store
        .delete_webhook_endpoint(auth, deleted.endpoint.id)
        .await
        .unwrap();
    let db = app.raw_db().await;
    db.execute_unprepared(&format!(
        "UPDATE webhook_endpoints SET enabled = false WHERE id = '{}'",
        disabled.endpoint.id
    ))
    .await
    .unwrap();
    db.close().await.unwrap();

    // Which path ran shows in the number's row: the function only locks it (the row keeps
    // its version), the transaction path's lock is a touch (a new version).
    let version = |number: PhoneNumberId| {
        let app = &app;
        async move {
            let rows = rows(
                app,
                &format!("SELECT xmin::text AS v FROM phone_numbers WHERE id = '{number}'"),
            )
            .await;
            rows[0]["v"].clone()
        }
    };
    let (before_fast, before_slow) = (
        version(app.numbers.free).await,
        version(app.numbers.free2).await,
    );
    // The function: no key.
    let (status, fast) = create(&app, app.numbers.free, &app.token).await;
    assert_eq!(status, StatusCode::CREATED, "{fast}");
    // The transaction: a key.
    let slow = send(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free2
            )))
            .bearer_auth(&app.token)
            .header("idempotency-key", "transaction-path")
            .json(&json!({ "reason": REASON })),
    )
    .await;
    assert_eq!(slow.0, StatusCode::CREATED, "{}", slow.1);
    let slow = slow.1;

    let written = |request: &Value| {
        let id = request["data"]["id"].as_str().unwrap().to_owned();
        let number = request["data"]["phone_number"].as_str().unwrap().to_owned();
        let app = &app;
        async move {
            let normalize = |mut rows: Vec<BTreeMap<String, Value>>| {
                for row in &mut rows {
                    if let Some(Value::String(body)) = row.get("body").cloned() {
                        let mut body: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(body["data"]["id"], json!(id));
                        assert_eq!(body["data"]["phone_number"], json!(number));
                        for field in ["id", "phone_number_id", "phone_number", "requested_at"] {
                            body["data"][field] = json!("…");
                        }
                        body["timestamp"] = json!("…");
                        row.insert("body".into(), body);
                    }
                }
                rows
            };
            let outbox = normalize(
                rows(
                    app,
                    &format!(
                        "SELECT kind, recipient, payload, state, CAST(attempts AS TEXT) AS attempts, \
                         CAST(max_attempts AS TEXT) AS max_attempts, \
                         CAST(webhook_endpoint_id AS TEXT) AS endpoint, event_type, body, \
                         CAST(next_attempt_at <= now() AS TEXT) AS due \
                         FROM outbox WHERE request_id = '{id}' ORDER BY kind, recipient"
                    ),
                )
                .await,
            );
            let audit = rows(
                app,
                &format!(
                    "SELECT actor_kind, actor_id, actor_label, action, detail, \
                     CAST(environment_id AS TEXT) AS env, CAST(phone_number_id AS TEXT) AS number \
                     FROM audit_events WHERE request_id = '{id}'"
                ),
            )
            .await;
            let request = rows(
                app,
                &format!(
                    "SELECT status, reason, phone_number, CAST(environment_id AS TEXT) AS env \
                     FROM release_requests WHERE id = '{id}'"
                ),
            )
            .await;
            (outbox, audit, request)
        }
    };
    let (fast_outbox, fast_audit, fast_request) = written(&fast).await;
    let (slow_outbox, slow_audit, slow_request) = written(&slow).await;
    // Two deliveries (all, created) and the support email.
    assert_eq!(fast_outbox.len(), 3, "{fast_outbox:#?}");
    assert_eq!(fast_outbox, slow_outbox);
    assert_eq!(fast_audit.len(), 1);
    let strip_number = |mut rows: Vec<BTreeMap<String, Value>>| {
        for r in &mut rows {
            r.remove("number");
            r.remove("phone_number");
        }
        rows
    };
    assert_eq!(strip_number(fast_audit), strip_number(slow_audit));
    assert_eq!(strip_number(fast_request), strip_number(slow_request));
    assert_eq!(
        version(app.numbers.free).await,
        before_fast,
        "the create without a key called the function"
    );
    assert_ne!(
        version(app.numbers.free2).await,
        before_slow,
        "the create with a key took the transaction path"
    );
    app.shutdown().await;
}

/// PostgreSQL only: the create's checks come after the number's lock. A writer holding the lock
/// assigns the number to an active agent and commits while the create waits: the create must
/// see the assignment (422), as the locked path would, not a number that was free when its call
/// started. (It failed with the earlier single statement of CTEs until that statement compared
/// row versions: its checks all read the snapshot taken before the lock was granted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_waited_for_the_lock_checks_what_the_holder_committed() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let number = app.numbers.free;
    let holder = app.raw_db().await;
    let tx = sea_orm::TransactionTrait::begin(&holder).await.unwrap();
    // What every writer of a number does first: the touch that locks its row.
    tx.execute_unprepared(&format!(
        "UPDATE phone_numbers SET updated_at = now() WHERE id = '{number}'"
    ))
    .await
    .unwrap();
    tx.execute_unprepared(&format!(
        "INSERT INTO agent_phone_numbers (agent_id, phone_number_id, created_at) \
         VALUES ('{}', '{number}', now())",
        app.front_desk
    ))
    .await
    .unwrap();
    let create = tokio::spawn(send(app.release_request(number, &app.token)));
    // Let the create reach the lock and wait there.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !create.is_finished(),
        "the create waits for the number's lock"
    );
    tx.commit().await.unwrap();
    let (status, body) = create.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "PHONE_NUMBER_IN_USE");
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM release_requests").await,
        0,
        "nothing was created"
    );
    holder.close().await.unwrap();
    app.shutdown().await;
}
