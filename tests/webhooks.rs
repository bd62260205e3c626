//! Signed webhooks, black-box: the API, the outbox worker, and a real HTTP receiver on a
//! loopback port. Every signature the receiver gets is verified by code that is not the
//! service's: the Standard Webhooks reference library for Python (`tests/verify_webhooks.py`),
//! or, outside CI when it is not installed, an independent HMAC written here from the
//! specification (checked against its published test vector below).
//!
//! The worker is driven from the test (`Worker::run_once`); backoff is made observable by
//! reading `next_attempt_at` and then moving it, never by sleeping.

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use common::{Backend, TestApp, send};
use hmac::{Hmac, KeyInit, Mac};
use releasedesk_domain::{
    ApprovalNote, OutboxId, RejectionNote, RequestId, StaffId, WebhookPolicy,
};
use releasedesk_notify::Worker;
use releasedesk_server::ServeConfig;
use releasedesk_store::entities::{outbox, webhook_endpoint};
use releasedesk_store::{Actor, OutboxKind, OutboxState};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use sha2::Sha256;

/// Runs each test on SQLite and on PostgreSQL; the test spawns its own server, because the
/// webhook settings differ from test to test.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

on_both_backends!(
    every_request_event_reaches_each_subscribed_endpoint_once,
    a_test_event_is_signed_and_verifies_with_the_reference_library,
    a_test_event_goes_to_its_endpoint_only,
    a_receiver_answering_500_then_200_gets_the_same_webhook_id_twice,
    gone_410_disables_the_endpoint_and_stops_its_pending_deliveries,
    private_addresses_are_refused_at_creation_without_the_allow_setting,
    private_addresses_are_refused_again_at_each_delivery,
    after_a_rotation_either_secret_verifies_for_24_hours,
    redirects_are_not_followed,
    a_receiver_that_does_not_answer_times_out_and_is_retried,
    deleting_an_endpoint_stops_its_pending_deliveries,
    a_delivery_that_keeps_failing_goes_dead_and_is_retryable_from_the_outbox,
    endpoints_are_scoped_validated_and_limited_to_ten,
    deliveries_are_listed_newest_first_and_paginated,
    openapi_documents_the_webhook_endpoints,
    a_retried_post_with_the_same_idempotency_key_acts_once,
);

/// Local development and tests: `http://` to loopback receivers.
const LAX: WebhookPolicy = WebhookPolicy {
    allow_http: true,
    allow_private: true,
};
/// `http://` allowed, private addresses not: what a delivery meets after "DNS changed".
const PUBLIC_ONLY: WebhookPolicy = WebhookPolicy {
    allow_http: true,
    allow_private: false,
};
const TIMEOUT: Duration = Duration::from_secs(10);

const TEST_EVENT: &str = "webhook.test";
const ALL_EVENTS: [&str; 6] = [
    "release_request.created",
    "release_request.cancelled",
    "release_request.approved",
    "release_request.rejected",
    "release_request.released",
    "release_request.expired",
];

// ---- the service ---------------------------------------------------------------------------

async fn spawn(backend: Backend, policy: WebhookPolicy) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        c.run_worker = false;
        c.webhooks = policy;
    })
    .await
}

/// A worker on the app's database with its own webhook settings (as another process, or the
/// same one restarted with other settings, would run it).
fn worker(app: &TestApp, policy: WebhookPolicy, timeout: Duration) -> Worker {
    let mut config = ServeConfig::for_tests(app.db.url.clone(), app.mail_dir.path().into());
    config.webhooks = policy;
    config.webhook_timeout = timeout;
    releasedesk_server::app::build_worker(&app.store, &config, &app.base).unwrap()
}

async fn create_endpoint(app: &TestApp, body: Value) -> Value {
    let (status, res) = app.post_json("/webhook-endpoints", body).await;
    assert_eq!(status, StatusCode::CREATED, "{res}");
    res["data"].clone()
}

async fn endpoint_at(app: &TestApp, url: &str) -> (String, String) {
    let data = create_endpoint(app, json!({ "url": url })).await;
    (
        data["id"].as_str().unwrap().to_owned(),
        data["secret"].as_str().unwrap().to_owned(),
    )
}

async fn send_test(app: &TestApp, endpoint: &str) -> Value {
    let (status, res) = send(
        app.client
            .post(app.url(&format!("/webhook-endpoints/{endpoint}/test")))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    res["data"].clone()
}

async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    let (status, res) = app
        .get(&format!("/webhook-endpoints/{endpoint}/deliveries"))
        .await;
    assert_eq!(status, StatusCode::OK, "{res}");
    res["data"].as_array().unwrap().clone()
}

async fn delivery(app: &TestApp, endpoint: &str) -> Value {
    let all = deliveries(app, endpoint).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

/// The outbox row behind a delivery id (`msg_…`).
fn outbox_id(delivery_id: &str) -> OutboxId {
    let hex = delivery_id.strip_prefix("msg_").expect("msg_ id");
    OutboxId::from_uuid(uuid::Uuid::parse_str(hex).unwrap())
}

/// Makes every pending row due now: what the backoff's wait would do, without the wait.
async fn make_due(app: &TestApp) {
    let db = app.raw_db().await;
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::NextAttemptAt,
            (Utc::now() - chrono::TimeDelta::seconds(1)).into(),
        )
        .filter(outbox::Column::State.eq(OutboxState::Pending.as_str()))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
}

fn parse_time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

// ---- the receiver --------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    RedirectTo(String),
    /// Never answers (within the test's time).
    Stall,
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    /// Replies in order; once used up, 200.
    script: Arc<Mutex<VecDeque<Reply>>>,
}

/// A real HTTP server on a loopback port that records every request.
struct Receiver {
    port: u16,
    state: ReceiverState,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: impl IntoIterator<Item = Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = ReceiverState::default();
        state.script.lock().unwrap().extend(script);
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8(body.to_vec()).expect("UTF-8 body"),
    });
    let reply = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => axum::http::StatusCode::from_u16(code)
            .unwrap()
            .into_response(),
        Reply::RedirectTo(to) => {
            (axum::http::StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
        }
        Reply::Stall => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            axum::http::StatusCode::OK.into_response()
        }
    }
}

// ---- verifying signatures, independently of the service -----------------------------------

/// The Python with the reference library, or `None` (outside CI only) when it is missing.
fn reference_python() -> Option<&'static str> {
    static PYTHON: OnceLock<Option<String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let python =
                std::env::var("RELEASEDESK_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
            let found = Command::new(&python)
                .args(["-c", "import standardwebhooks"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if found {
                return Some(python);
            }
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "the Standard Webhooks reference library is not installed for {python}: \
                     `{python} -m pip install standardwebhooks==1.1.0` (.ci/run does)"
                );
            }
            eprintln!(
                "note: the Standard Webhooks library is not installed for {python} \
                 (pip install standardwebhooks==1.1.0); verifying signatures with the test's \
                 own HMAC instead"
            );
            None
        })
        .as_deref()
}

/// Verifies each delivery with `secret`: its parsed body, or why it does not verify.
fn verify(secret: &str, received: &[Received]) -> Vec<Result<Value, String>> {
    let Some(python) = reference_python() else {
        return received
            .iter()
            .map(|r| independent_verify(secret, r))
            .collect();
    };
    let input = json!({
        "secret": secret,
        "deliveries": received
            .iter()
            .map(|r| json!({ "headers": r.headers, "body": r.body }))
            .collect::<Vec<_>>(),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_webhooks.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify_webhooks.py failed");
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| {
            if r["ok"] == json!(true) {
                Ok(r["payload"].clone())
            } else {
                Err(r["error"].as_str().unwrap_or("").to_owned())
            }
        })
        .collect()
}

/// Every delivery verifies with `secret`: their payloads.
fn verified(secret: &str, received: &[Received]) -> Vec<Value> {
    verify(secret, received)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("signature does not verify: {e}")))
        .collect()
}

/// The specification's signature, written from its text: `v1,` + base64(HMAC-SHA256 over
/// `{id}.{timestamp}.{body}`, keyed with the base64-decoded secret after `whsec_`).
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &str) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn independent_verify(secret: &str, r: &Received) -> Result<Value, String> {
    let (Some(id), Some(ts), Some(sigs)) = (
        r.headers.get("webhook-id"),
        r.headers.get("webhook-timestamp"),
        r.headers.get("webhook-signature"),
    ) else {
        return Err("Missing required headers".into());
    };
    let sent: i64 = ts.parse().map_err(|_| "Invalid Signature Headers")?;
    if (Utc::now().timestamp() - sent).abs() > 300 {
        return Err("Message timestamp too old or too new".into());
    }
    let expected = expected_signature(secret, id, ts, &r.body);
    if sigs.split(' ').any(|s| s == expected) {
        serde_json::from_str(&r.body).map_err(|e| e.to_string())
    } else {
        Err("No matching signature found".into())
    }
}

#[test]
fn independent_verifier_matches_the_specification_test_vector() {
    assert_eq!(
        expected_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            r#"{"test": 2432232314}"#,
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

// ---- the rules -----------------------------------------------------------------------------

/// Runs the worker until nothing is due (the release job enqueues the `released` event).
async fn drain(worker: &Worker) {
    for _ in 0..20 {
        if worker.run_once().await.unwrap() == 0 {
            return;
        }
    }
    panic!("the outbox did not drain");
}

async fn every_request_event_reaches_each_subscribed_endpoint_once(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let (_, secret_all) = endpoint_at(&app, &receiver.url("/all")).await;
    let approvals = create_endpoint(
        &app,
        json!({ "url": receiver.url("/approvals"), "events": ["release_request.approved"] }),
    )
    .await;
    let cancellations = create_endpoint(
        &app,
        json!({ "url": receiver.url("/cancellations"), "events": ["release_request.cancelled"] }),
    )
    .await;
    let (status, _) = send(
        app.client
            .post(app.url("/webhook-endpoints"))
            .bearer_auth(&app.other_token)
            .json(&json!({ "url": receiver.url("/other-environment") })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let staff = Actor::Staff {
        id: StaffId::new(),
        email: "reviewer@example.com".into(),
    };

    // created → cancelled
    let cancelled = app.request_release(app.numbers.free).await;
    let (status, _) = send(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/release-requests/{cancelled}/cancel"
            )))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // created → rejected
    let rejected = app.request_release(app.numbers.free2).await;
    app.store
        .reject(
            &staff,
            RequestId::parse(&rejected).unwrap(),
            RejectionNote::parse("This number still routes your main IVR.").unwrap(),
        )
        .await
        .unwrap();
    // created → approved → released (by the worker's release job)
    let number = app.add_number("+15550000005").await;
    let released = app.request_release(number).await;
    app.store
        .approve(
            &staff,
            RequestId::parse(&released).unwrap(),
            "+15550000005",
            Some(ApprovalNote::parse("Released at the end of the month.").unwrap()),
        )
        .await
        .unwrap();
    // created → expired (nobody decided within the expiry, swept by the service levels)
    let ignored = app.add_number("+15550000006").await;
    let expired = app.request_release(ignored).await;
    let report = app
        .store
        .sweep_service_levels(releasedesk_store::now() + chrono::TimeDelta::days(31))
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    drain(&worker(&app, LAX, TIMEOUT)).await;

    let got = receiver.received();
    let at =
        |path: &str| -> Vec<Received> { got.iter().filter(|r| r.path == path).cloned().collect() };
    assert!(at("/other-environment").is_empty(), "{got:?}");
    // The endpoint subscribed to everything got every event of its environment, verified.
    let all: Vec<(String, String, Value)> = verified(&secret_all, &at("/all"))
        .into_iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap().to_owned(),
                p["data"]["id"].as_str().unwrap().to_owned(),
                p["data"].clone(),
            )
        })
        .collect();
    let mut seen: Vec<(&str, &str)> = all
        .iter()
        .map(|(t, id, _)| (t.as_str(), id.as_str()))
        .collect();
    seen.sort();
    let mut expected = vec![
        ("release_request.created", cancelled.as_str()),
        ("release_request.cancelled", cancelled.as_str()),
        ("release_request.created", rejected.as_str()),
        ("release_request.rejected", rejected.as_str()),
        ("release_request.created", released.as_str()),
        ("release_request.approved", released.as_str()),
        ("release_request.released", released.as_str()),
        ("release_request.created", expired.as_str()),
        ("release_request.expired", expired.as_str()),
    ];
    expected.sort();
    assert_eq!(seen, expected, "each event exactly once");
    let ids: std::collections::BTreeSet<String> = at("/all")
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 9, "one delivery (one webhook-id) per event");

    // Each payload is the request as it was right after its change.
    for (event, id, data) in &all {
        let status = event.strip_prefix("release_request.").unwrap();
        let status = if status == "created" {
            "pending"
        } else {
            status
        };
        assert_eq!(data["status"], status, "{event}: {data}");
        assert_eq!(
            data.get("resolved_at").is_some(),
            status != "pending",
            "{data}"
        );
        assert_eq!(
            data.get("released_at").is_some(),
            status == "released",
            "{data}"
        );
        let (_, now) = app
            .get(&format!("/phone-numbers/release-requests/{id}"))
            .await;
        if now["data"]["status"] == status {
            assert_eq!(data, &now["data"], "the API's object after the change");
        }
    }
    assert_eq!(
        all.iter()
            .find(|(t, ..)| t == "release_request.rejected")
            .unwrap()
            .2["review_note"],
        "This number still routes your main IVR."
    );

    // The endpoints subscribed to one event type got exactly that, once.
    let only = |path: &str, secret: &Value| -> Vec<(String, String)> {
        verified(secret.as_str().unwrap(), &at(path))
            .into_iter()
            .map(|p| {
                (
                    p["type"].as_str().unwrap().to_owned(),
                    p["data"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        only("/approvals", &approvals["secret"]),
        [("release_request.approved".to_owned(), released.clone())]
    );
    assert_eq!(
        only("/cancellations", &cancellations["secret"]),
        [("release_request.cancelled".to_owned(), cancelled.clone())]
    );
    // A request's deliveries are among its notifications (the console's request page).
    let hooks = app
        .store
        .outbox_for_request(RequestId::parse(&released).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.kind == OutboxKind::Webhook)
        .count();
    assert_eq!(
        hooks, 4,
        "created, approved (twice: two endpoints) and released"
    );
    app.shutdown().await;
}

async fn a_test_event_is_signed_and_verifies_with_the_reference_library(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let created = create_endpoint(
        &app,
        json!({ "url": receiver.url("/hooks/releasedesk"), "description": " Billing " }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
    assert_eq!(created["events"], json!(ALL_EVENTS));
    assert_eq!(created["description"], "Billing");
    assert_eq!(created["enabled"], true);

    let queued = send_test(&app, id).await;
    assert_eq!(queued["state"], "pending");
    assert_eq!(queued["event_type"], TEST_EVENT);
    assert_eq!(worker(&app, LAX, TIMEOUT).run_once().await.unwrap(), 1);

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.path, "/hooks/releasedesk");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("webhook-id"), queued["id"].as_str().unwrap());
    let sent_at: i64 = r.header("webhook-timestamp").parse().unwrap();
    assert!((Utc::now().timestamp() - sent_at).abs() < 60);
    assert!(r.header("webhook-signature").starts_with("v1,"));
    assert!(!r.header("webhook-signature").contains(' '));

    let payload = &verified(secret, &got)[0];
    assert_eq!(payload["type"], TEST_EVENT);
    assert_eq!(payload["data"]["webhook_endpoint_id"], id);
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
    // A wrong secret does not verify: the check is real.
    let other = format!("whsec_{}", STANDARD.encode([7u8; 32]));
    assert!(verify(&other, &got)[0].is_err());

    let d = delivery(&app, id).await;
    assert_eq!(
        (&d["state"], &d["attempts"], &d["last_status_code"]),
        (&json!("delivered"), &json!(1), &json!(200))
    );
    assert!(d.get("last_error").is_none() && d.get("next_attempt_at").is_none());
    app.shutdown().await;
}

async fn a_test_event_goes_to_its_endpoint_only(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let (a, secret_a) = endpoint_at(&app, &receiver.url("/a")).await;
    endpoint_at(&app, &receiver.url("/b")).await;
    let (status, _) = send(
        app.client
            .post(app.url("/webhook-endpoints"))
            .bearer_auth(&app.other_token)
            .json(&json!({ "url": receiver.url("/other") })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    send_test(&app, &a).await;
    worker(&app, LAX, TIMEOUT).run_once().await.unwrap();
    let got = receiver.received();
    assert_eq!(
        got.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/a"]
    );
    verified(&secret_a, &got);
    app.shutdown().await;
}

async fn a_receiver_answering_500_then_200_gets_the_same_webhook_id_twice(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([Reply::Status(500)]).await;
    let (id, secret) = endpoint_at(&app, &receiver.url("/flaky")).await;
    send_test(&app, &id).await;
    let worker = worker(&app, LAX, TIMEOUT);

    assert_eq!(worker.run_once().await.unwrap(), 1);
    let failed_at = Utc::now();
    let d = delivery(&app, &id).await;
    assert_eq!(
        (&d["state"], &d["attempts"], &d["last_status_code"]),
        (&json!("pending"), &json!(1), &json!(500))
    );
    assert_eq!(d["last_error"], "answered 500 Internal Server Error");
    // The first retry waits about 5 s (with jitter): not due yet, so nothing is attempted.
    let wait = parse_time(&d["next_attempt_at"]) - failed_at;
    assert!(
        wait > chrono::TimeDelta::seconds(2) && wait < chrono::TimeDelta::seconds(7),
        "{wait}"
    );
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(receiver.received().len(), 1);

    make_due(&app).await;
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].header("webhook-id"), d["id"].as_str().unwrap());
    assert_eq!(got[0].body, got[1].body, "a retry sends the same body");
    verified(&secret, &got);
    let d = delivery(&app, &id).await;
    assert_eq!(
        (&d["state"], &d["attempts"], &d["last_status_code"]),
        (&json!("delivered"), &json!(2), &json!(200))
    );
    assert!(d.get("last_error").is_none());
    app.shutdown().await;
}

async fn gone_410_disables_the_endpoint_and_stops_its_pending_deliveries(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([Reply::Status(410)]).await;
    let (id, _) = endpoint_at(&app, &receiver.url("/gone")).await;
    let first = send_test(&app, &id).await;
    let second = send_test(&app, &id).await;
    worker(&app, LAX, TIMEOUT).run_once().await.unwrap();

    assert_eq!(receiver.received().len(), 1, "nothing after the 410");
    let (status, endpoint) = app.get(&format!("/webhook-endpoints/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let endpoint = &endpoint["data"];
    assert_eq!(endpoint["enabled"], false);
    assert!(endpoint["disabled_at"].is_string());
    let reason = endpoint["disabled_reason"].as_str().unwrap();
    assert!(reason.contains("410 Gone"), "{reason}");

    let all = deliveries(&app, &id).await;
    let by_id = |d: &Value| {
        all.iter()
            .find(|x| x["id"] == d["id"])
            .cloned()
            .expect("listed")
    };
    let (gone, stopped) = (by_id(&first), by_id(&second));
    assert_eq!(
        (&gone["state"], &gone["last_status_code"]),
        (&json!("dead"), &json!(410))
    );
    assert_eq!(stopped["state"], "dead");
    assert!(
        stopped["last_error"].as_str().unwrap().contains("410 Gone"),
        "{stopped}"
    );
    // A disabled endpoint receives nothing, tests included.
    let (status, body) = send(
        app.client
            .post(app.url(&format!("/webhook-endpoints/{id}/test")))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("WEBHOOK_ENDPOINT_DISABLED"))
    );
    let audit = app
        .store
        .list_audit(&releasedesk_store::AuditFilter {
            action: Some(releasedesk_store::AuditAction::WebhookEndpointDisabled),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor_kind, "system");
    app.shutdown().await;
}

async fn private_addresses_are_refused_at_creation_without_the_allow_setting(backend: Backend) {
    let Some(app) = spawn(backend, WebhookPolicy::default()).await else {
        return;
    };
    for (url, says) in [
        (
            "http://hooks.example.com/in",
            "must be an https:// URL (this server does not accept http://)",
        ),
        (
            "https://127.0.0.1:9/hook",
            "must point to a public address: 127.0.0.1 is a loopback address",
        ),
        (
            "https://localhost:9/hook",
            "must point to a public address: localhost resolves to ",
        ),
        (
            "https://10.1.2.3/hook",
            "must point to a public address: 10.1.2.3 is a private address",
        ),
        (
            "https://192.168.0.10/hook",
            "must point to a public address: 192.168.0.10 is a private address",
        ),
        (
            "https://169.254.169.254/latest/meta-data",
            "must point to a public address: 169.254.169.254 is a link-local address",
        ),
        (
            "https://[::1]/hook",
            "must point to a public address: ::1 is a loopback address",
        ),
        (
            "https://[::ffff:127.0.0.1]/hook",
            "must point to a public address: ::ffff:127.0.0.1 is an IPv4-mapped",
        ),
        (
            "https://224.0.0.1/hook",
            "must point to a public address: 224.0.0.1 is a multicast address",
        ),
        (
            "https://0.0.0.0/hook",
            "must point to a public address: 0.0.0.0 is an unspecified address",
        ),
    ] {
        let (status, body) = app
            .post_json("/webhook-endpoints", json!({ "url": url }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        let message = body["errors"]["url"][0].as_str().unwrap();
        assert!(message.starts_with(says), "{url}: {message}");
    }
    let (_, body) = app
        .post_json(
            "/webhook-endpoints",
            json!({ "url": "https://localhost:9/hook" }),
        )
        .await;
    assert!(
        body["errors"]["url"][0]
            .as_str()
            .unwrap()
            .contains("a loopback address"),
        "{body}"
    );
    // A public address is accepted (written as an address: no DNS needed here).
    create_endpoint(&app, json!({ "url": "https://93.184.215.14/hook" })).await;
    let (_, list) = app.get("/webhook-endpoints").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    app.shutdown().await;
}

async fn private_addresses_are_refused_again_at_each_delivery(backend: Backend) {
    // Created while private addresses were allowed; delivered by a worker that no longer
    // allows them: as if the host's DNS had changed to a private address since.
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let (literal, secret_literal) = endpoint_at(&app, &receiver.url("/literal")).await;
    let by_name = format!("http://localhost:{}/by-name", receiver.port);
    let (named, secret_named) = endpoint_at(&app, &by_name).await;
    send_test(&app, &literal).await;
    send_test(&app, &named).await;

    assert_eq!(
        worker(&app, PUBLIC_ONLY, TIMEOUT).run_once().await.unwrap(),
        2
    );
    assert!(receiver.received().is_empty(), "no connection was made");
    let d = delivery(&app, &literal).await;
    assert_eq!(d["state"], "pending");
    assert_eq!(
        d["last_error"],
        "refused: 127.0.0.1 is a loopback address; webhooks go to public addresses only"
    );
    assert!(d.get("last_status_code").is_none());
    let d = delivery(&app, &named).await;
    let error = d["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused: localhost resolves to ") && error.contains("a loopback address"),
        "{error}"
    );

    // The same deliveries go through where private addresses are allowed: the refusal above
    // was the rule, not a network problem.
    make_due(&app).await;
    assert_eq!(worker(&app, LAX, TIMEOUT).run_once().await.unwrap(), 2);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        let secret = if r.path == "/literal" {
            &secret_literal
        } else {
            &secret_named
        };
        verified(secret, std::slice::from_ref(r));
    }
    app.shutdown().await;
}

async fn after_a_rotation_either_secret_verifies_for_24_hours(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let (id, old) = endpoint_at(&app, &receiver.url("/rotating")).await;
    let (status, rotated) = send(
        app.client
            .post(app.url(&format!("/webhook-endpoints/{id}/rotate-secret")))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new = rotated["data"]["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    let overlap = parse_time(&rotated["data"]["previous_secret_expires_at"]) - Utc::now();
    assert!(
        overlap > chrono::TimeDelta::hours(23) && overlap <= chrono::TimeDelta::hours(24),
        "{overlap}"
    );
    let (_, shown) = app.get(&format!("/webhook-endpoints/{id}")).await;
    assert!(shown["data"].get("secret").is_none(), "{shown}");

    send_test(&app, &id).await;
    let w = worker(&app, LAX, TIMEOUT);
    w.run_once().await.unwrap();
    let during = receiver.received();
    assert_eq!(during[0].header("webhook-signature").split(' ').count(), 2);
    verified(&old, &during);
    verified(&new, &during);
    let stranger = format!("whsec_{}", STANDARD.encode([9u8; 32]));
    assert!(verify(&stranger, &during)[0].is_err());

    // 24 hours later the old secret no longer signs.
    let db = app.raw_db().await;
    webhook_endpoint::Entity::update_many()
        .col_expr(
            webhook_endpoint::Column::PreviousSecretExpiresAt,
            Some(Utc::now() - chrono::TimeDelta::seconds(1)).into(),
        )
        .exec(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
    send_test(&app, &id).await;
    w.run_once().await.unwrap();
    let after = receiver.received()[1..].to_vec();
    assert_eq!(after[0].header("webhook-signature").split(' ').count(), 1);
    verified(&new, &after);
    assert!(verify(&old, &after)[0].is_err());
    app.shutdown().await;
}

async fn redirects_are_not_followed(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let elsewhere = Receiver::start([]).await;
    let redirecting = Receiver::start([Reply::RedirectTo(elsewhere.url("/moved"))]).await;
    let (id, _) = endpoint_at(&app, &redirecting.url("/old")).await;
    send_test(&app, &id).await;
    worker(&app, LAX, TIMEOUT).run_once().await.unwrap();

    assert_eq!(redirecting.received().len(), 1);
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let d = delivery(&app, &id).await;
    assert_eq!(
        (&d["state"], &d["last_status_code"]),
        (&json!("pending"), &json!(302))
    );
    let error = d["last_error"].as_str().unwrap();
    assert!(error.contains("redirects are not followed"), "{error}");
    app.shutdown().await;
}

async fn a_receiver_that_does_not_answer_times_out_and_is_retried(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([Reply::Stall]).await;
    let (id, _) = endpoint_at(&app, &receiver.url("/slow")).await;
    send_test(&app, &id).await;
    // The real limit is 10 s (a unit test pins it); this worker's is 1 s.
    worker(&app, LAX, Duration::from_secs(1))
        .run_once()
        .await
        .unwrap();

    assert_eq!(receiver.received().len(), 1);
    let d = delivery(&app, &id).await;
    assert_eq!(
        (&d["state"], &d["attempts"]),
        (&json!("pending"), &json!(1))
    );
    assert_eq!(d["last_error"], "no complete answer within 1 s");
    assert!(d.get("last_status_code").is_none());
    assert!(d["next_attempt_at"].is_string());
    app.shutdown().await;
}

async fn deleting_an_endpoint_stops_its_pending_deliveries(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([]).await;
    let (id, _) = endpoint_at(&app, &receiver.url("/bye")).await;
    let queued = send_test(&app, &id).await;

    let (status, body) = send(
        app.client
            .delete(app.url(&format!("/webhook-endpoints/{id}")))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!({ "id": id, "deleted": true }));
    for path in [
        format!("/webhook-endpoints/{id}"),
        format!("/webhook-endpoints/{id}/deliveries"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("WEBHOOK_ENDPOINT_NOT_FOUND"))
        );
    }
    let row = app
        .store
        .outbox_row(outbox_id(queued["id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, OutboxState::Dead);
    assert_eq!(
        row.last_error.as_deref(),
        Some(releasedesk_store::STOPPED_ENDPOINT_DELETED)
    );
    assert_eq!(worker(&app, LAX, TIMEOUT).run_once().await.unwrap(), 0);
    assert!(receiver.received().is_empty());
    // Retried from the console, it stops again, saying why.
    app.store.outbox_retry(row.id, &Actor::Cli).await.unwrap();
    worker(&app, LAX, TIMEOUT).run_once().await.unwrap();
    let row = app.store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Dead);
    assert_eq!(
        row.last_error.as_deref(),
        Some(releasedesk_store::STOPPED_ENDPOINT_DELETED)
    );
    assert!(receiver.received().is_empty());
    app.shutdown().await;
}

async fn a_delivery_that_keeps_failing_goes_dead_and_is_retryable_from_the_outbox(
    backend: Backend,
) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let receiver = Receiver::start([Reply::Status(503)]).await;
    let (id, secret) = endpoint_at(&app, &receiver.url("/down")).await;
    let queued = send_test(&app, &id).await;
    let row_id = outbox_id(queued["id"].as_str().unwrap());
    // As if it had failed 7 times over the past day: the next failure is its last.
    let db = app.raw_db().await;
    outbox::Entity::update_many()
        .col_expr(outbox::Column::Attempts, 7.into())
        .filter(outbox::Column::Id.eq(row_id.as_uuid()))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.unwrap();
    let w = worker(&app, LAX, TIMEOUT);
    w.run_once().await.unwrap();
    let d = delivery(&app, &id).await;
    assert_eq!(
        (&d["state"], &d["attempts"], &d["last_status_code"]),
        (&json!("dead"), &json!(8), &json!(503))
    );
    assert!(d.get("next_attempt_at").is_none());
    let dead = app
        .store
        .list_outbox(Some(OutboxState::Dead), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].recipient.as_deref(),
        Some(receiver.url("/down").as_str())
    );

    // The console's retry (the same path for every outbox kind) sends it again, same id.
    app.store.outbox_retry(row_id, &Actor::Cli).await.unwrap();
    w.run_once().await.unwrap();
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    verified(&secret, &got);
    assert_eq!(delivery(&app, &id).await["state"], "delivered");
    app.shutdown().await;
}

async fn endpoints_are_scoped_validated_and_limited_to_ten(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let chosen = create_endpoint(
        &app,
        json!({
            "url": "http://127.0.0.1:9/a",
            "events": ["release_request.rejected", "release_request.approved", "release_request.approved"],
        }),
    )
    .await;
    assert_eq!(
        chosen["events"],
        json!(["release_request.approved", "release_request.rejected"])
    );
    assert!(chosen.get("description").is_none());
    for (body, field) in [
        (json!({}), "url"),
        (json!({ "url": "not a url" }), "url"),
        (json!({ "url": "ftp://127.0.0.1/" }), "url"),
        (json!({ "url": "https://user:pw@127.0.0.1/" }), "url"),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": [] }),
            "events",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": ["release_request.nope"] }),
            "events",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "events": ["webhook.test"] }),
            "events",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "description": "x".repeat(201) }),
            "description",
        ),
        (
            json!({ "url": "http://127.0.0.1:9/", "description": "two\nlines" }),
            "description",
        ),
    ] {
        let (status, res) = app.post_json("/webhook-endpoints", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {res}");
        assert!(res["errors"][field].is_array(), "{body}: {res}");
    }
    let (status, res) = app
        .post_json("/webhook-endpoints", json!({ "url": 42 }))
        .await;
    assert_eq!(
        (status, res["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_JSON"))
    );

    // Another environment's endpoint, and ids that are not ids, are "not found".
    let (_, theirs) = send(
        app.client
            .post(app.url("/webhook-endpoints"))
            .bearer_auth(&app.other_token)
            .json(&json!({ "url": "http://127.0.0.1:9/theirs" })),
    )
    .await;
    let theirs = theirs["data"]["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/webhook-endpoints/{theirs}"),
        format!("/webhook-endpoints/{theirs}/deliveries"),
        "/webhook-endpoints/not-an-id".to_owned(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("WEBHOOK_ENDPOINT_NOT_FOUND")),
            "{path}"
        );
    }
    for action in ["test", "rotate-secret"] {
        let (status, _) = send(
            app.client
                .post(app.url(&format!("/webhook-endpoints/{theirs}/{action}")))
                .bearer_auth(&app.token),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    let (status, _) = send(
        app.client
            .delete(app.url(&format!("/webhook-endpoints/{theirs}")))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(app.client.get(app.url("/webhook-endpoints"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Ten per environment; a deleted one frees its place.
    for n in 1..10 {
        create_endpoint(&app, json!({ "url": format!("http://127.0.0.1:9/{n}") })).await;
    }
    let (status, res) = app
        .post_json(
            "/webhook-endpoints",
            json!({ "url": "http://127.0.0.1:9/eleventh" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{res}");
    assert!(
        res["errors"]["url"][0]
            .as_str()
            .unwrap()
            .contains("at most 10 webhook endpoints"),
        "{res}"
    );
    let (_, list) = app.get("/webhook-endpoints").await;
    let list = list["data"].as_array().unwrap().clone();
    assert_eq!(list.len(), 10);
    assert!(list.iter().all(|e| e.get("secret").is_none()));
    assert_eq!(list[0]["id"], chosen["id"], "oldest first");
    let (status, _) = send(
        app.client
            .delete(app.url(&format!(
                "/webhook-endpoints/{}",
                chosen["id"].as_str().unwrap()
            )))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    create_endpoint(&app, json!({ "url": "http://127.0.0.1:9/tenth" })).await;
    app.shutdown().await;
}

async fn deliveries_are_listed_newest_first_and_paginated(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let (id, _) = endpoint_at(&app, "http://127.0.0.1:9/never").await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(send_test(&app, &id).await["id"].clone());
    }
    let (status, first) = app
        .get(&format!("/webhook-endpoints/{id}/deliveries?limit=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].clone())
        .collect();
    assert_eq!(ids, [sent[2].clone(), sent[1].clone()]);
    assert_eq!(first["pagination"]["has_more"], true);
    let cursor = first["pagination"]["next_cursor"].as_str().unwrap();
    let (_, second) = app
        .get(&format!(
            "/webhook-endpoints/{id}/deliveries?limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["data"][0]["id"], sent[0]);
    assert_eq!(second["pagination"]["has_more"], false);
    let d = &second["data"][0];
    for field in [
        "id",
        "event_type",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
    ] {
        assert!(d.get(field).is_some(), "{field} missing from {d}");
    }
    let (status, body) = app
        .get(&format!("/webhook-endpoints/{id}/deliveries?limit=0"))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("VALIDATION_ERROR"))
    );
    app.shutdown().await;
}

async fn openapi_documents_the_webhook_endpoints(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let (status, doc) = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    for (path, method, operation, statuses) in [
        (
            "/webhook-endpoints",
            "post",
            "createWebhookEndpoint",
            &["201", "400", "401", "413", "415", "422"][..],
        ),
        (
            "/webhook-endpoints",
            "get",
            "listWebhookEndpoints",
            &["200", "401"],
        ),
        (
            "/webhook-endpoints/{webhook_endpoint_id}",
            "get",
            "getWebhookEndpoint",
            &["200", "401", "404"],
        ),
        (
            "/webhook-endpoints/{webhook_endpoint_id}",
            "delete",
            "deleteWebhookEndpoint",
            &["200", "401", "404"],
        ),
        (
            "/webhook-endpoints/{webhook_endpoint_id}/rotate-secret",
            "post",
            "rotateWebhookEndpointSecret",
            &["200", "401", "404"],
        ),
        (
            "/webhook-endpoints/{webhook_endpoint_id}/test",
            "post",
            "sendWebhookEndpointTest",
            &["202", "401", "404", "409"],
        ),
        (
            "/webhook-endpoints/{webhook_endpoint_id}/deliveries",
            "get",
            "listWebhookEndpointDeliveries",
            &["200", "401", "404", "422"],
        ),
    ] {
        let op = &paths[path][method];
        assert_eq!(op["operationId"], operation, "{method} {path}");
        let mut documented: Vec<&str> = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} undocumented"))
            .keys()
            .map(String::as_str)
            .collect();
        // Besides its own, every operation documents what any operation can answer.
        let mut expected = statuses.to_vec();
        expected.extend(["401", "413", "500", "503"]);
        if method == "post" {
            // IDEMPOTENCY_KEY_IN_USE and IDEMPOTENCY_KEY_REUSED.
            expected.extend(["409", "422"]);
        }
        for list in [&mut documented, &mut expected] {
            list.sort();
            list.dedup();
        }
        assert_eq!(documented, expected, "{method} {path}");
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["CreateWebhookEndpointBody"]["properties"]["events"]["items"]["enum"],
        json!(ALL_EVENTS)
    );
    assert_eq!(
        schemas["WebhookDelivery"]["properties"]["state"]["enum"],
        json!(["pending", "delivered", "dead"])
    );
    let mut all_events = ALL_EVENTS.to_vec();
    all_events.push(TEST_EVENT);
    assert_eq!(
        schemas["WebhookDelivery"]["properties"]["event_type"]["enum"],
        json!(all_events)
    );
    assert_eq!(
        schemas["WebhookEndpoint"]["properties"]["created_at"]["format"],
        "date-time"
    );
    app.shutdown().await;
}

async fn a_retried_post_with_the_same_idempotency_key_acts_once(backend: Backend) {
    let Some(app) = spawn(backend, LAX).await else {
        return;
    };
    let post = |path: &str, key: &str, body: Option<Value>| {
        let mut req = app
            .client
            .post(app.url(path))
            .bearer_auth(&app.token)
            .header("Idempotency-Key", key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req
    };
    let body = json!({ "url": "http://127.0.0.1:9/once" });
    let first = post("/webhook-endpoints", "create-1", Some(body.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let again = post("/webhook-endpoints", "create-1", Some(body))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the same answer, secret included");
    let (_, list) = app.get("/webhook-endpoints").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    let id = first["data"]["id"].as_str().unwrap();
    for _ in 0..2 {
        let res = post(&format!("/webhook-endpoints/{id}/test"), "test-1", None)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    assert_eq!(deliveries(&app, id).await.len(), 1, "one test event queued");
    let rotate = format!("/webhook-endpoints/{id}/rotate-secret");
    let a: Value = post(&rotate, "rotate-1", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b: Value = post(&rotate, "rotate-1", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["data"]["secret"], b["data"]["secret"], "rotated once");
    app.shutdown().await;
}
