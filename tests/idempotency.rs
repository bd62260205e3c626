//! `Idempotency-Key` on API POSTs, black-box over real HTTP on both databases: replay, reuse,
//! refusals, keys per environment, malformed keys, keys in flight, a holder that died, server
//! errors, a burst over two servers on one database, and the purge.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestApp, send};
use releasedesk_domain::{IdempotencyKey, Reason, RequestFingerprint};
use releasedesk_server::ServeConfig;
use releasedesk_store::entities::idempotency_key;
use releasedesk_store::{
    KeyClaim, ReleaseRequest, Store, StoreError, StoreOptions, StoredResponse,
};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Statement};
use serde_json::{Value, json};

const BODY: &str = r#"{"reason": "We migrated outbound calling to a new toll-free number and no longer need this DID."}"#;

backend_tests!(
    the_same_key_replays_the_stored_response_and_creates_nothing_new,
    a_different_body_with_the_same_key_is_422_reused,
    a_different_path_with_the_same_key_is_422_reused,
    a_refusal_is_stored_and_replayed,
    cancel_with_a_key_is_replayed_not_refused,
    keys_are_per_environment,
    malformed_keys_are_refused_and_nothing_is_done,
    a_key_in_flight_is_409_in_use_at_once,
    a_holder_that_died_is_taken_over_after_its_lock_expires_and_acts_once,
    a_server_error_stores_nothing_and_frees_the_key,
    an_oversized_streamed_body_with_a_key_is_413_and_claims_nothing,
    twenty_concurrent_posts_over_two_servers_act_once,
    keys_past_their_retention_are_purged_by_the_worker,
    the_openapi_document_shows_the_header_on_every_post,
);

/// One answer, as the client saw it.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    replayed: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    key: Option<&str>,
    body: &str,
) -> Answer {
    let mut req = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    answer(req).await
}

async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.expect("request is answered");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (status, replayed, content_type) = (
        res.status(),
        header("idempotent-replayed"),
        header("content-type"),
    );
    Answer {
        status,
        replayed,
        content_type,
        body: res.bytes().await.unwrap().to_vec(),
    }
}

fn release_path(number: impl std::fmt::Display) -> String {
    format!("/phone-numbers/{number}/request-release")
}

impl TestApp {
    async fn post_keyed(&self, path: &str, key: &str, body: &str) -> Answer {
        post(&self.client, &self.url(path), &self.token, Some(key), body).await
    }

    async fn count(&self, sql: &str) -> i64 {
        let raw = self.raw_db().await;
        let row = raw
            .query_one_raw(Statement::from_string(raw.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        let n = row.try_get_by_index::<i64>(0).unwrap();
        let _ = raw.close().await;
        n
    }

    async fn requests(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM release_requests").await
    }

    async fn keys(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM idempotency_keys").await
    }

    /// Changes every stored key behind the service's back.
    async fn update_keys(&self, sql: &str) {
        let raw = self.raw_db().await;
        raw.execute_unprepared(sql).await.unwrap();
        let _ = raw.close().await;
    }
}

fn assert_replay_of(replay: &Answer, first: &Answer) {
    assert_eq!(replay.status, first.status);
    assert_eq!(replay.body, first.body, "the stored body, byte for byte");
    assert_eq!(replay.content_type, first.content_type);
    assert_eq!(replay.replayed.as_deref(), Some("true"));
}

async fn the_same_key_replays_the_stored_response_and_creates_nothing_new(app: TestApp) {
    let path = release_path(app.numbers.free);
    let first = app.post_keyed(&path, "order-1", BODY).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.json());
    assert_eq!(first.replayed, None, "the first answer is not a replay");
    assert_eq!(first.json()["data"]["status"], "pending");
    let audit = app.count("SELECT COUNT(*) FROM audit_events").await;
    let outbox = app.count("SELECT COUNT(*) FROM outbox").await;

    for _ in 0..2 {
        let again = app.post_keyed(&path, "order-1", BODY).await;
        assert_replay_of(&again, &first);
    }
    assert_eq!(app.requests().await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_events").await, audit);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, outbox);
    // Without the key it is a new request, and the first one is there.
    let (status, body) = app
        .post_json(&path, serde_json::from_str(BODY).unwrap())
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "RELEASE_ALREADY_PENDING");
    app.shutdown().await;
}

async fn a_different_body_with_the_same_key_is_422_reused(app: TestApp) {
    let path = release_path(app.numbers.free);
    let first = app.post_keyed(&path, "k", BODY).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other_reason = r#"{"reason": "Another reason entirely, long enough to be valid."}"#;
    // The same JSON written with other whitespace is another body too: bytes are compared.
    let respaced = BODY.replace(": ", ":");
    for body in [other_reason, respaced.as_str(), ""] {
        let reused = app.post_keyed(&path, "k", body).await;
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.replayed, None);
        assert_eq!(
            reused.json(),
            json!({
                "success": false,
                "message": "This Idempotency-Key was already used with another method, path or body; use a new key for a new request",
                "code": "IDEMPOTENCY_KEY_REUSED"
            })
        );
    }
    assert_eq!(app.requests().await, 1);
    // The key still replays its own request.
    assert_replay_of(&app.post_keyed(&path, "k", BODY).await, &first);
    app.shutdown().await;
}

async fn a_different_path_with_the_same_key_is_422_reused(app: TestApp) {
    let first = app
        .post_keyed(&release_path(app.numbers.free), "k", BODY)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let reused = app
        .post_keyed(&release_path(app.numbers.free2), "k", BODY)
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "IDEMPOTENCY_KEY_REUSED");
    // The same path with a query string is another target.
    let with_query = app
        .post_keyed(
            &format!("{}?x=1", release_path(app.numbers.free)),
            "k",
            BODY,
        )
        .await;
    assert_eq!(with_query.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        app.requests().await,
        1,
        "nothing was done for the second number"
    );
    // Keys only concern POSTs: a GET with one is an ordinary GET.
    let get = answer(
        app.client
            .get(app.url("/phone-numbers/release-requests"))
            .bearer_auth(&app.token)
            .header("idempotency-key", "k"),
    )
    .await;
    assert_eq!(get.status, StatusCode::OK);
    app.shutdown().await;
}

async fn a_refusal_is_stored_and_replayed(app: TestApp) {
    let path = release_path(app.numbers.free);
    let id = app.request_release(app.numbers.free).await;
    let refused = app.post_keyed(&path, "again", BODY).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.code(), "RELEASE_ALREADY_PENDING");
    assert_eq!(refused.replayed, None);

    // Once the request is cancelled, a new one would be accepted — but the key answers as it
    // did the first time.
    let (status, _) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_replay_of(&app.post_keyed(&path, "again", BODY).await, &refused);
    assert_eq!(app.requests().await, 1);

    // A validation refusal is a stored answer too.
    let invalid = app
        .post_keyed(&path, "short", r#"{"reason": "short"}"#)
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(invalid.code(), "VALIDATION_ERROR");
    assert_replay_of(
        &app.post_keyed(&path, "short", r#"{"reason": "short"}"#)
            .await,
        &invalid,
    );

    // A new key is a new request.
    let created = app.post_keyed(&path, "new", BODY).await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(app.requests().await, 2);
    app.shutdown().await;
}

async fn cancel_with_a_key_is_replayed_not_refused(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    let path = format!("/phone-numbers/release-requests/{id}/cancel");
    let first = app.post_keyed(&path, "cancel-1", "").await;
    assert_eq!(first.status, StatusCode::OK, "{:?}", first.json());
    assert_eq!(first.json()["data"]["status"], "cancelled");
    // A retry of the cancellation gets its 200, not "no longer pending".
    assert_replay_of(&app.post_keyed(&path, "cancel-1", "").await, &first);
    let (status, body) = app.post_json(&path, json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "RELEASE_REQUEST_NOT_PENDING");
    app.shutdown().await;
}

async fn keys_are_per_environment(app: TestApp) {
    let ours = app
        .post_keyed(&release_path(app.numbers.free), "shared-key", BODY)
        .await;
    assert_eq!(ours.status, StatusCode::CREATED);
    let theirs = post(
        &app.client,
        &app.url(&release_path(app.other_number)),
        &app.other_token,
        Some("shared-key"),
        BODY,
    )
    .await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{:?}", theirs.json());
    assert_eq!(theirs.replayed, None);
    assert_eq!(theirs.json()["data"]["phone_number"], "+15550000009");
    assert_eq!(app.requests().await, 2);
    // And another environment's replay never shows ours.
    let replay = post(
        &app.client,
        &app.url(&release_path(app.other_number)),
        &app.other_token,
        Some("shared-key"),
        BODY,
    )
    .await;
    assert_replay_of(&replay, &theirs);
    app.shutdown().await;
}

async fn malformed_keys_are_refused_and_nothing_is_done(app: TestApp) {
    let url = app.url(&release_path(app.numbers.free));
    let too_long = "k".repeat(256);
    let bad: Vec<reqwest::header::HeaderValue> = vec![
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_str(&too_long).unwrap(),
        reqwest::header::HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
        reqwest::header::HeaderValue::from_static("tab\there"),
    ];
    for value in bad {
        let refused = answer(
            app.client
                .post(&url)
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .header("idempotency-key", value.clone())
                .body(BODY),
        )
        .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{value:?}"
        );
        assert_eq!(
            refused.json(),
            json!({
                "success": false,
                "message": "The Idempotency-Key header is invalid: send it once, with 1 to 255 printable ASCII characters",
                "code": "VALIDATION_ERROR",
                "errors": { "Idempotency-Key": ["must be 1 to 255 printable ASCII characters (space to tilde)"] }
            }),
            "{value:?}"
        );
    }
    // Twice is ambiguous.
    let twice = answer(
        app.client
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .header("idempotency-key", "a")
            .header("idempotency-key", "b")
            .body(BODY),
    )
    .await;
    assert_eq!(twice.code(), "VALIDATION_ERROR");
    // The token is checked first.
    let no_token = answer(
        app.client
            .post(&url)
            .header("content-type", "application/json")
            .header("idempotency-key", "")
            .body(BODY),
    )
    .await;
    assert_eq!(no_token.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.requests().await, 0);
    assert_eq!(app.keys().await, 0);

    // The longest key, with every printable character class, is fine.
    let longest = format!("{}~ \"{}", "k".repeat(200), "9".repeat(52));
    assert_eq!(longest.len(), 255);
    let ok = app
        .post_keyed(&release_path(app.numbers.free), &longest, BODY)
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    app.shutdown().await;
}

/// What the layer computes for a request with [`BODY`] to `path`.
fn fingerprint_of(path: &str, body: &str) -> RequestFingerprint {
    RequestFingerprint::of("POST", &format!("/api/v1{path}"), body.as_bytes())
}

async fn claim(app: &TestApp, key: &str, path: &str) -> releasedesk_store::IdempotencyClaim {
    let key = IdempotencyKey::parse(key.as_bytes()).unwrap();
    match app
        .store
        .claim_idempotency_key(app.env_id, &key, &fingerprint_of(path, BODY))
        .await
        .unwrap()
    {
        KeyClaim::Claimed(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

async fn a_key_in_flight_is_409_in_use_at_once(app: TestApp) {
    let path = release_path(app.numbers.free);
    // Another request (here: another instance) holds the key and is still working.
    let _held = claim(&app, "busy", &path).await;
    let busy = app.post_keyed(&path, "busy", BODY).await;
    assert_eq!(busy.status, StatusCode::CONFLICT);
    assert_eq!(
        busy.json(),
        json!({
            "success": false,
            "message": "A request with this Idempotency-Key is still being carried out; retry shortly to get its response",
            "code": "IDEMPOTENCY_KEY_IN_USE"
        })
    );
    // (Had it waited for the holder's lock to run out, it would have taken the key over and
    // created the request.)
    // A different request with the key is a reuse even while it is in flight.
    let other = app
        .post_keyed(&release_path(app.numbers.free2), "busy", BODY)
        .await;
    assert_eq!(other.code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.requests().await, 0);
    app.shutdown().await;
}

fn render_created(r: &ReleaseRequest) -> StoredResponse {
    StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        body: format!("{{\"id\":\"{}\"}}", r.id).into_bytes(),
    }
}

async fn a_holder_that_died_is_taken_over_after_its_lock_expires_and_acts_once(app: TestApp) {
    let path = release_path(app.numbers.free);
    // An instance claimed the key and stopped (crashed, or stalled) before completing.
    let dead = claim(&app, "retry-me", &path).await;
    assert_eq!(
        app.post_keyed(&path, "retry-me", BODY).await.code(),
        "IDEMPOTENCY_KEY_IN_USE"
    );
    // Its lock runs out.
    app.update_keys("UPDATE idempotency_keys SET locked_until = created_at")
        .await;
    let retried = app.post_keyed(&path, "retry-me", BODY).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.json());
    assert_eq!(retried.replayed, None);
    assert_replay_of(&app.post_keyed(&path, "retry-me", BODY).await, &retried);
    assert_eq!(app.requests().await, 1);

    // The first holder was only slow, and now tries to finish: its effect is refused and rolled
    // back, because the key is no longer its own.
    let render: &releasedesk_store::Render<ReleaseRequest> = &render_created;
    let late = app
        .store
        .request_release_idempotent(
            &app.auth,
            app.numbers.free2,
            Reason::parse("A slow first attempt finishing too late.").unwrap(),
            Some(dead.completion(render)),
        )
        .await;
    assert!(
        matches!(late, Err(StoreError::IdempotencyKeyTaken)),
        "{late:?}"
    );
    assert_eq!(dead.completed_response(), None);
    assert_eq!(app.requests().await, 1, "the late effect was rolled back");
    assert_replay_of(&app.post_keyed(&path, "retry-me", BODY).await, &retried);
    app.shutdown().await;
}

async fn a_server_error_stores_nothing_and_frees_the_key(app: TestApp) {
    let path = release_path(app.numbers.free);
    // Break the audit table behind the service's back: the request fails as a 500.
    app.update_keys("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .await;
    let failed = app.post_keyed(&path, "after-500", BODY).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        app.keys().await,
        0,
        "a 5xx stores nothing and frees the key"
    );
    app.update_keys("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .await;
    // The retry runs for real, once.
    let retried = app.post_keyed(&path, "after-500", BODY).await;
    assert_eq!(retried.status, StatusCode::CREATED);
    assert_eq!(retried.replayed, None);
    assert_replay_of(&app.post_keyed(&path, "after-500", BODY).await, &retried);
    assert_eq!(app.requests().await, 1);
    app.shutdown().await;
}

async fn an_oversized_streamed_body_with_a_key_is_413_and_claims_nothing(app: TestApp) {
    // Streamed, so no Content-Length announces the size: the body itself is too long.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..2).map(|_| Ok(vec![b' '; 9 * 1024])).collect();
    let res = answer(
        app.client
            .post(app.url(&release_path(app.numbers.free)))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .header("idempotency-key", "big")
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks))),
    )
    .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.code(), "PAYLOAD_TOO_LARGE");
    assert_eq!(app.keys().await, 0);
    app.shutdown().await;
}

async fn twenty_concurrent_posts_over_two_servers_act_once(app: TestApp) {
    // A second instance on the same database, with a small pool of its own.
    let mail_dir = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::for_tests(app.db.url.clone(), PathBuf::from(mail_dir.path()));
    config.run_worker = false;
    config.max_connections = Some(4);
    let second = releasedesk_server::start(config).await.unwrap();
    let urls = [
        app.url(&release_path(app.numbers.free)),
        format!(
            "{}/api/v1{}",
            second.base_url(),
            release_path(app.numbers.free)
        ),
    ];

    let burst = (0..20).map(|i| {
        let (client, url, token) = (app.client.clone(), urls[i % 2].clone(), app.token.clone());
        tokio::spawn(async move { post(&client, &url, &token, Some("burst"), BODY).await })
    });
    let answers: Vec<Answer> = futures::future::join_all(burst)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let replays = answers.iter().filter(|a| a.replayed.is_some()).count();
    let in_use = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .count();
    eprintln!("burst of 20: 1 carried out, {replays} replayed, {in_use} in use");
    assert_eq!(app.requests().await, 1, "exactly one request was created");
    let originals: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::CREATED && a.replayed.is_none())
        .collect();
    assert_eq!(
        originals.len(),
        1,
        "one request carried it out: {answers:?}"
    );
    let original = originals[0];
    for a in &answers {
        match a.status {
            StatusCode::CREATED if a.replayed.is_some() => assert_replay_of(a, original),
            StatusCode::CREATED => {}
            StatusCode::CONFLICT => assert_eq!(a.code(), "IDEMPOTENCY_KEY_IN_USE"),
            other => panic!("unexpected answer {other}: {:?}", a.json()),
        }
    }
    // Afterwards both instances replay it.
    for url in &urls {
        assert_replay_of(
            &post(&app.client, url, &app.token, Some("burst"), BODY).await,
            original,
        );
    }
    second.shutdown().await;
    app.shutdown().await;
}

async fn keys_past_their_retention_are_purged_by_the_worker(app: TestApp) {
    let path = release_path(app.numbers.free);
    for key in ["old-1", "old-2", "old-3", "fresh"] {
        let a = app.post_keyed(&path, key, BODY).await;
        assert!(a.status == StatusCode::CREATED || a.status == StatusCode::CONFLICT);
    }
    // Three keys were stored a day and an hour ago.
    let back_date = |keys: &'static [&'static str]| {
        let db = app.db.url.clone();
        async move {
            let raw = sea_orm::Database::connect(db.as_str()).await.unwrap();
            let at = chrono::Utc::now() - chrono::TimeDelta::hours(25);
            idempotency_key::Entity::update_many()
                .col_expr(idempotency_key::Column::CreatedAt, at.into())
                .col_expr(idempotency_key::Column::CompletedAt, Some(at).into())
                .col_expr(
                    idempotency_key::Column::ExpiresAt,
                    (at + releasedesk_store::IDEMPOTENCY_RETENTION).into(),
                )
                .filter(idempotency_key::Column::IdempotencyKey.is_in(keys.iter().copied()))
                .exec(&raw)
                .await
                .unwrap();
            let _ = raw.close().await;
        }
    };
    back_date(&["old-1", "old-2", "old-3"]).await;

    // Two workers purging at once: each row goes once, and nothing fails.
    let other = Store::connect(&app.db.url, StoreOptions::default())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        app.store.purge_idempotency_keys(),
        other.purge_idempotency_keys()
    );
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    other.close().await;
    let left: Vec<String> = idempotency_key::Entity::find()
        .all(&app.raw_db().await)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.idempotency_key)
        .collect();
    assert_eq!(
        left,
        vec!["fresh".to_owned()],
        "a key inside its day is kept"
    );
    // A purged key is a new key: the request runs again (and is refused, not replayed).
    let again = app.post_keyed(&path, "old-1", BODY).await;
    assert_eq!(again.code(), "RELEASE_ALREADY_PENDING");
    assert_eq!(again.replayed, None);

    // The worker's own loop purges too.
    back_date(&["fresh"]).await;
    let config = ServeConfig::for_tests(app.db.url.clone(), PathBuf::from(app.mail_dir.path()));
    let worker = releasedesk_server::app::build_worker(&app.store, &config, &app.base).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let gone = async {
        loop {
            let n = app
                .count("SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'fresh'")
                .await;
            if n == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .expect("the worker purges expired keys when it starts");
    stop.cancel();
    running.await.unwrap();
    assert_eq!(
        app.count("SELECT COUNT(*) FROM idempotency_keys WHERE idempotency_key = 'old-1'")
            .await,
        1,
        "the key used again after the purge is kept"
    );
    app.shutdown().await;
}

async fn the_openapi_document_shows_the_header_on_every_post(app: TestApp) {
    let (status, doc) = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let mut posts = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let has_header = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
            });
            if method != "post" {
                assert!(!has_header, "{method} {path}");
                continue;
            }
            posts += 1;
            assert!(has_header, "{path}");
            let param = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "Idempotency-Key")
                .unwrap();
            assert_eq!(param["required"], false);
            assert_eq!(param["schema"]["maxLength"], 255);
            let responses = &op["responses"];
            for (code, text) in [
                ("409", "IDEMPOTENCY_KEY_IN_USE"),
                ("422", "IDEMPOTENCY_KEY_REUSED"),
            ] {
                let description = responses[code]["description"].as_str().unwrap_or_default();
                assert!(description.contains(text), "{path} {code}: {description}");
                assert_eq!(
                    responses[code]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{path} {code}"
                );
            }
            // The body is read to fingerprint it, so a POST can always be too large.
            assert_eq!(
                responses["413"]["$ref"], "#/components/responses/PayloadTooLarge",
                "{path}"
            );
            let success = responses
                .as_object()
                .unwrap()
                .iter()
                .find(|(code, _)| code.starts_with('2'))
                .unwrap()
                .1;
            assert!(
                success["headers"]["Idempotent-Replayed"].is_object(),
                "{path}"
            );
        }
    }
    assert!(posts >= 2, "request-release and cancel at least");
    app.shutdown().await;
}
