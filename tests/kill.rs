//! SIGKILL under a create load: the real `releasedesk serve` is killed while clients are
//! creating release requests, and the database is read directly afterwards.
//!
//! 1. Every create acknowledged with 201 is in the database with its audit row and the outbox
//!    rows the rules of `crates/store/src/notifications.rs` give a `created` event (the support
//!    inbox's email, one webhook delivery per endpoint subscribed to `release_request.created`,
//!    none for an endpoint that is not). No request exists without them (nothing half-done), no
//!    request exists that no in-flight create can explain, every `409 RELEASE_ALREADY_PENDING`
//!    points at a request that exists, and after a restart every acknowledged id is served.
//! 2. Creates sent with an `Idempotency-Key` are retried after the kill and a restart, with the
//!    same key and body bytes: each key ends with exactly one request — the stored 201 replayed
//!    (`Idempotent-Replayed: true`) if its create had committed, a fresh 201 if not — and a key a
//!    killed request held answers `409 IDEMPOTENCY_KEY_IN_USE` only until its lock (one minute
//!    from the claim) runs out.
//!
//! The counts vary from run to run (how much was acknowledged, how much was in flight, how much
//! of that committed); the invariants do not. Each test prints what it checked: see them with
//! `cargo test --test kill -- --nocapture`. `docs/faults.md` says what the kill must not do.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::binary::Process;
use futures::StreamExt;
use releasedesk_domain::{E164, EmailAddress};
use releasedesk_store::entities::phone_number;
use releasedesk_store::{IDEMPOTENCY_LOCK, Store, StoreOptions};
use releasedesk_testkit::{Backend, TestDb};
use sea_orm::{ConnectionTrait, EntityTrait, Statement, TransactionTrait};
use serde_json::{Value, json};

const REASON: &str = "No longer needed after the move to the new carrier.";
const SUPPORT: &str = "support@example.com";
/// Concurrent clients of the load.
const CLIENTS: usize = 24;
/// Acknowledged creates to wait for before the kill is armed.
const ACKED_BEFORE_KILL: usize = 20;

/// One test of this binary at a time: each runs a server under full load, and the machine's
/// cores (and PostgreSQL's connections) are shared.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A random-ish number below `n`, different on every call.
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u64
}

// ---- the fixture --------------------------------------------------------------------------------

/// An environment with a token and `numbers` free numbers, made through the store (an admin
/// command per number would take minutes); the server later migrates nothing.
struct Fixture {
    token: String,
    numbers: Vec<String>,
}

impl Fixture {
    async fn create(db: &TestDb, numbers: usize) -> Self {
        let store = Store::connect(
            &db.url,
            StoreOptions {
                max_connections: Some(2),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        let env = store
            .create_environment("Acme", &EmailAddress::parse("ops@acme.example").unwrap())
            .await
            .unwrap();
        let token = store.issue_token(env.id, None).await.unwrap();
        // One transaction, in batches: a transaction per number costs a commit each.
        let at = chrono::Utc::now();
        let rows: Vec<phone_number::ActiveModel> = (0..numbers)
            .map(|n| {
                phone_number::ActiveModel::from(phone_number::Model {
                    id: uuid::Uuid::new_v4(),
                    environment_id: env.id.as_uuid(),
                    e164: E164::parse(&format!("+1555{n:07}"))
                        .unwrap()
                        .as_str()
                        .to_owned(),
                    status: "active".to_owned(),
                    created_at: at,
                    updated_at: at,
                    released_at: None,
                })
            })
            .collect();
        let numbers = rows
            .iter()
            .map(|r| r.id.clone().unwrap().to_string())
            .collect();
        let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
        let tx = conn.begin().await.unwrap();
        for chunk in rows.chunks(100) {
            phone_number::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(&tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        conn.close().await.unwrap();
        store.close().await;
        Self {
            token: token.token.expose().to_owned(),
            numbers,
        }
    }
}

/// The server's environment: the support inbox set (so a `created` event has an email), webhook
/// URLs on loopback over plain HTTP allowed, and no worker (the outbox rows stay as written).
fn server_env() -> Vec<(&'static str, String)> {
    vec![
        ("RELEASEDESK_SUPPORT_EMAIL", SUPPORT.to_owned()),
        ("RELEASEDESK_WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        ("RELEASEDESK_WEBHOOK_ALLOW_PRIVATE", "true".to_owned()),
        ("RELEASEDESK_NO_WORKER", "true".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
}

async fn start_server(db: &TestDb) -> Process {
    let mut server = Process::serve(&db.url, &server_env());
    server.wait_ready(Duration::from_secs(60)).await;
    server
}

/// SIGKILL, and the process gone.
async fn kill(mut server: Process) {
    server.signal("-KILL");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "killed: {status}");
}

/// Two webhook endpoints, made through the API: one subscribed to `release_request.created`
/// (every create must leave a delivery row for it), one only to `release_request.cancelled`
/// (no create may leave one for it). Returns their URLs.
async fn webhook_endpoints(api: &str, token: &str) -> (String, String) {
    let client = reqwest::Client::new();
    let mut urls = Vec::new();
    for (path, event) in [
        ("/created", "release_request.created"),
        ("/cancelled", "release_request.cancelled"),
    ] {
        let url = format!("http://127.0.0.1:9{path}");
        let res = client
            .post(format!("{api}/webhook-endpoints"))
            .bearer_auth(token)
            .json(&json!({ "url": url, "events": [event] }))
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert_eq!(status, 201, "{}", res.text().await.unwrap_or_default());
        urls.push(url);
    }
    (urls.remove(0), urls.remove(0))
}

// ---- what the database holds --------------------------------------------------------------------

/// An outbox row of a request: kind, recipient, event type.
type OutboxRow = (String, Option<String>, Option<String>);

/// A request row and everything written with it.
#[derive(Debug, Default, Clone)]
struct Written {
    phone_number_id: String,
    status: String,
    /// Audit actions recorded for the request.
    audit: Vec<String>,
    /// Its outbox rows, sorted.
    outbox: Vec<OutboxRow>,
}

/// Every release request in the database, with its audit and outbox rows; plus audit and
/// outbox rows that name a request that does not exist.
async fn read_database(url: &str) -> (BTreeMap<String, Written>, Vec<String>) {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let query = |sql: &str| db.query_all_raw(Statement::from_string(backend, sql.to_owned()));
    let mut requests: BTreeMap<String, Written> = BTreeMap::new();
    for r in query("SELECT id, phone_number_id, status FROM release_requests")
        .await
        .unwrap()
    {
        let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
        let number: uuid::Uuid = r.try_get_by_index(1).unwrap();
        requests.insert(
            id.to_string(),
            Written {
                phone_number_id: number.to_string(),
                status: r.try_get_by_index(2).unwrap(),
                ..Written::default()
            },
        );
    }
    let mut orphans = Vec::new();
    for r in query("SELECT request_id, action FROM audit_events WHERE request_id IS NOT NULL")
        .await
        .unwrap()
    {
        let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
        let action: String = r.try_get_by_index(1).unwrap();
        match requests.get_mut(&id.to_string()) {
            Some(w) => w.audit.push(action),
            None => orphans.push(format!("audit {action} of {id}")),
        }
    }
    for r in query(
        "SELECT request_id, kind, recipient, event_type FROM outbox WHERE request_id IS NOT NULL",
    )
    .await
    .unwrap()
    {
        let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
        let kind: String = r.try_get_by_index(1).unwrap();
        let row = (
            kind,
            r.try_get_by_index(2).unwrap(),
            r.try_get_by_index(3).unwrap(),
        );
        match requests.get_mut(&id.to_string()) {
            Some(w) => w.outbox.push(row),
            None => orphans.push(format!("outbox {row:?} of {id}")),
        }
    }
    for w in requests.values_mut() {
        w.audit.sort();
        w.outbox.sort();
    }
    db.close().await.unwrap();
    (requests, orphans)
}

/// What a create writes besides the request, by the rules in `notifications.rs`: one audit row
/// `request.created`; the email to the support inbox; a delivery to the endpoint subscribed to
/// `release_request.created` and none to the one that is not.
fn expected_side_rows(created_hook: &str) -> (Vec<String>, Vec<OutboxRow>) {
    let mut outbox = vec![
        (
            "email.request_created".to_owned(),
            Some(SUPPORT.to_owned()),
            None,
        ),
        (
            "webhook".to_owned(),
            Some(created_hook.to_owned()),
            Some("release_request.created".to_owned()),
        ),
    ];
    outbox.sort();
    (vec!["request.created".to_owned()], outbox)
}

/// Every request in the database is whole: pending, with exactly the audit and outbox rows a
/// create writes; and no audit or outbox row names a request that does not exist.
fn assert_all_whole(rows: &BTreeMap<String, Written>, orphans: &[String], created_hook: &str) {
    let (audit, outbox) = expected_side_rows(created_hook);
    let broken: Vec<String> = rows
        .iter()
        .filter(|(_, w)| w.status != "pending" || w.audit != audit || w.outbox != outbox)
        .map(|(id, w)| format!("{id}: {w:?}"))
        .collect();
    assert!(
        broken.is_empty(),
        "{} of {} requests are not whole (expected audit {audit:?}, outbox {outbox:?}): {:?}",
        broken.len(),
        rows.len(),
        &broken[..broken.len().min(5)]
    );
    assert!(
        orphans.is_empty(),
        "rows of no request: {:?}",
        &orphans[..orphans.len().min(5)]
    );
}

/// Every id in `ids` is served by the API: 200, pending, on the number it was created for.
async fn served_through_api(api: &str, token: &str, ids: &BTreeMap<String, String>) -> usize {
    let client = reqwest::Client::new();
    let wrong: Vec<String> = futures::stream::iter(ids.iter())
        .map(|(id, number)| {
            let client = client.clone();
            async move {
                let res = client
                    .get(format!("{api}/phone-numbers/release-requests/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                let code = res.status();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (code == 200
                    && body["data"]["status"] == "pending"
                    && body["data"]["phone_number_id"] == number.as_str())
                .then_some(())
                .ok_or_else(|| format!("{id}: {code} {body}"))
            }
        })
        .buffer_unordered(8)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged requests are not served after the restart: {:?}",
        wrong.len(),
        ids.len(),
        &wrong[..wrong.len().min(5)]
    );
    ids.len()
}

// ---- the load -----------------------------------------------------------------------------------

/// One create the load sent.
#[derive(Debug, Clone)]
struct Sent {
    number: String,
    /// The `Idempotency-Key`, when one was sent.
    key: Option<String>,
    /// The exact body bytes.
    body: String,
    /// Status and body; `None` when no answer arrived (in flight at the kill).
    answer: Option<(u16, Value)>,
}

/// Clients creating release requests as fast as they are answered, until told to stop (just
/// before the kill) or until the server stops answering.
struct Load {
    sent: Arc<Mutex<Vec<Sent>>>,
    acked: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `numbers` are handed out in order from `next`; with `collide`, one create in five goes to
    /// a number handed out a moment before (so some creates race for a number and answer 409).
    fn start(
        api: &str,
        token: &str,
        numbers: Arc<Vec<String>>,
        next: Arc<AtomicUsize>,
        collide: bool,
        with_keys: bool,
    ) -> Self {
        let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
        let acked: Arc<AtomicUsize> = Arc::default();
        let stop: Arc<AtomicBool> = Arc::default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let tasks = (0..CLIENTS)
            .map(|_| {
                let (client, sent, acked, stop) =
                    (client.clone(), sent.clone(), acked.clone(), stop.clone());
                let (numbers, next) = (numbers.clone(), next.clone());
                let (api, token) = (api.to_owned(), token.to_owned());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let handed = next.load(Ordering::SeqCst);
                        let number = if collide && (handed >= numbers.len() || random_below(5) == 0)
                        {
                            let recent = handed.min(numbers.len());
                            let back = random_below(CLIENTS as u64) as usize + 1;
                            numbers[recent.saturating_sub(back)].clone()
                        } else {
                            match numbers.get(next.fetch_add(1, Ordering::SeqCst)) {
                                Some(n) => n.clone(),
                                None => return,
                            }
                        };
                        let key = with_keys.then(|| uuid::Uuid::new_v4().to_string());
                        let body = json!({ "reason": REASON }).to_string();
                        let answer =
                            send_create(&client, &api, &token, &number, key.as_deref(), &body)
                                .await
                                .ok()
                                .map(|r| (r.status, r.body));
                        let dead = answer.is_none();
                        if answer.as_ref().is_some_and(|(s, _)| *s == 201) {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        sent.lock().unwrap().push(Sent {
                            number,
                            key,
                            body,
                            answer,
                        });
                        if dead {
                            return;
                        }
                    }
                })
            })
            .collect();
        Self {
            sent,
            acked,
            stop,
            tasks,
        }
    }

    /// Waits for `n` acknowledged creates (a busy machine is slow).
    async fn wait_for_acks(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} creates acknowledged within 30 s: {:?}",
                self.sent
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops sending (what was sent stays in flight), for the kill.
    fn stop_sending(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Everything sent, once every client has its answer or its broken connection.
    async fn finish(self) -> Vec<Sent> {
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::into_inner(self.sent).unwrap().into_inner().unwrap()
    }
}

struct CreateReply {
    status: u16,
    replayed: bool,
    body: Value,
}

/// `POST /phone-numbers/{number}/request-release` with these exact body bytes; an error when
/// no whole answer arrived.
async fn send_create(
    client: &reqwest::Client,
    api: &str,
    token: &str,
    number: &str,
    key: Option<&str>,
    body: &str,
) -> Result<CreateReply, String> {
    let mut req = client
        .post(format!("{api}/phone-numbers/{number}/request-release"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let res = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let text = res.text().await.map_err(|e| format!("{e:?}"))?;
    Ok(CreateReply {
        status,
        replayed,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

/// The id of a 201 answer.
fn created_id(body: &Value) -> String {
    body["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a 201 without an id: {body}"))
        .to_owned()
}

/// Kills `server` at a random moment `window` milliseconds after `ACKED_BEFORE_KILL` creates
/// were acknowledged, with requests in flight. Returns everything the load sent.
async fn kill_under_load(
    server: Process,
    load: Load,
    window: std::ops::Range<u64>,
) -> (Vec<Sent>, Duration) {
    load.wait_for_acks(ACKED_BEFORE_KILL).await;
    let after = Duration::from_millis(window.start + random_below(window.end - window.start));
    tokio::time::sleep(after).await;
    load.stop_sending();
    kill(server).await;
    (load.finish().await, after)
}

// ---- 1. no acknowledged write lost --------------------------------------------------------------

const ROUNDS: usize = 4;

async fn sigkill_under_create_load_loses_no_acknowledged_write(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Built first (cargo may wait for a lock): the time a test takes starts after.
    common::binary::releasedesk();
    let started = Instant::now();
    // Enough numbers for four rounds at a few thousand creates a second: a load that runs out
    // of numbers stops acknowledging (each number is asked for once, plus the 409 repeats).
    let fixture = Fixture::create(&db, 8000).await;
    eprintln!("{backend:?}: fixture ready in {:?}", started.elapsed());
    let numbers = Arc::new(fixture.numbers.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let token = fixture.token.clone();

    let mut server = start_server(&db).await;
    let (created_hook, _) = webhook_endpoints(&server.api(), &token).await;
    // Every acknowledged id (over all rounds), with its number.
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..ROUNDS {
        let load = Load::start(
            &server.api(),
            &token,
            numbers.clone(),
            next.clone(),
            true,
            false,
        );
        // Each round kills in another quarter of the first second.
        let window = 250 * round as u64..250 * (round as u64 + 1);
        let (sent, kill_after) = kill_under_load(server, load, window).await;

        let mut conflicts: BTreeSet<String> = BTreeSet::new();
        let mut in_flight: Vec<&Sent> = Vec::new();
        let mut unexpected = Vec::new();
        let mut acked_now = 0;
        for s in &sent {
            match &s.answer {
                Some((201, body)) => {
                    acknowledged.insert(created_id(body), s.number.clone());
                    acked_now += 1;
                }
                Some((409, body)) if body["code"] == "RELEASE_ALREADY_PENDING" => {
                    conflicts.insert(s.number.clone());
                }
                Some((status, body)) => unexpected.push(format!("{status} {body}")),
                None => in_flight.push(s),
            }
        }
        assert!(unexpected.is_empty(), "round {round}: {unexpected:?}");

        // Straight from the database, before anything restarts.
        let (rows, orphans) = read_database(&db.url).await;
        let missing: Vec<&String> = acknowledged
            .keys()
            .filter(|id| !rows.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged creates are not in the database: {missing:?}",
            missing.len(),
            acknowledged.len()
        );
        for (id, number) in &acknowledged {
            assert_eq!(&rows[id].phone_number_id, number, "{id}");
        }
        assert_all_whole(&rows, &orphans, &created_hook);
        // Every 409 said a pending request held the number: it exists.
        let by_number: BTreeMap<&str, usize> = rows.values().fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w.phone_number_id.as_str()).or_default() += 1;
            m
        });
        for number in &conflicts {
            assert!(
                by_number.contains_key(number.as_str()),
                "round {round}: a 409 named a pending request on {number}, which the database \
                 does not hold"
            );
        }
        assert!(
            by_number.values().all(|n| *n == 1),
            "round {round}: a number with two pending requests"
        );
        // What nobody acknowledged was in flight at the kill: at most one per unanswered create,
        // on its number.
        let unacked: Vec<&Written> = rows
            .iter()
            .filter(|(id, _)| !acknowledged.contains_key(*id))
            .map(|(_, w)| w)
            .collect();
        let mut flying: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &in_flight {
            *flying.entry(s.number.as_str()).or_default() += 1;
        }
        for w in &unacked {
            let n = flying.get_mut(w.phone_number_id.as_str());
            assert!(
                n.as_ref().is_some_and(|n| **n > 0),
                "round {round}: a request nobody acknowledged and no create in flight \
                 explains: {w:?}"
            );
            *n.unwrap() -= 1;
        }
        // Adopt them: from now on they are as good as acknowledged (a restart must serve them).
        let committed_in_flight = unacked.len();
        for (id, w) in &rows {
            acknowledged
                .entry(id.clone())
                .or_insert_with(|| w.phone_number_id.clone());
        }

        // Restart on the same database: every acknowledged id is served.
        server = start_server(&db).await;
        let served = served_through_api(&server.api(), &token, &acknowledged).await;
        eprintln!(
            "{backend:?} round {round} (at {:?}): killed {kill_after:?} after {ACKED_BEFORE_KILL} acks; \
             sent {}, acknowledged {acked_now}, 409 {}, in flight {} (committed {committed_in_flight}); \
             in the database {} requests, all whole; served after restart {served}",
            started.elapsed(),
            sent.len(),
            sent.iter()
                .filter(|s| s.answer.as_ref().is_some_and(|(st, _)| *st == 409))
                .count(),
            in_flight.len(),
            rows.len(),
        );
    }
    server.stop().await;
    eprintln!(
        "{backend:?}: {ROUNDS} kills, {} requests in the end, in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_under_create_load_loses_no_acknowledged_write() {
    sigkill_under_create_load_loses_no_acknowledged_write(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigkill_under_create_load_loses_no_acknowledged_write() {
    sigkill_under_create_load_loses_no_acknowledged_write(Backend::Postgres).await;
}

// ---- 2. an idempotent retry after the kill ------------------------------------------------------

/// Sends creates again, after the kill, on the restarted server.
struct Retrier<'a> {
    client: reqwest::Client,
    api: String,
    token: String,
    /// When the server was killed, and how long after that a key may still be in use.
    killed: Instant,
    bound: Duration,
    server: &'a Process,
    /// Retries that got no answer (and were sent once more).
    transport_errors: &'a Mutex<Vec<String>>,
}

impl Retrier<'_> {
    /// `s` with its key and body bytes, until it is answered other than
    /// `409 IDEMPOTENCY_KEY_IN_USE` (which must end within the bound); whether it was in use.
    async fn settle<'s>(&self, s: &'s Sent) -> (&'s Sent, CreateReply, bool) {
        let mut was_in_use = false;
        let mut no_answer = 0;
        loop {
            // A retry that gets no answer is sent again, with the same key: that is what the
            // key is for. (A pooled connection the server closed at that moment, say.)
            let reply = match send_create(
                &self.client,
                &self.api,
                &self.token,
                &s.number,
                s.key.as_deref(),
                &s.body,
            )
            .await
            {
                Ok(reply) => reply,
                Err(e) => {
                    no_answer += 1;
                    assert!(
                        no_answer < 3,
                        "the restarted server does not answer: {e}\n{}",
                        self.server.log_tail()
                    );
                    self.transport_errors.lock().unwrap().push(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if reply.status == 409 && reply.body["code"] == "IDEMPOTENCY_KEY_IN_USE" {
                was_in_use = true;
                let since = self.killed.elapsed();
                assert!(
                    since < self.bound,
                    "a key is still IDEMPOTENCY_KEY_IN_USE {since:?} after the kill \
                     (lock {IDEMPOTENCY_LOCK})"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            return (s, reply, was_in_use);
        }
    }
}

/// Creates with an `Idempotency-Key` each (one number per key), killed under load. After a
/// restart every create that got no answer, and every fourth that did, is sent again with its
/// key and body bytes, until it is answered other than `409 IDEMPOTENCY_KEY_IN_USE`:
///
/// - a create whose request is in the database is replayed: 201, `Idempotent-Replayed: true`,
///   the id the database holds (the id acknowledged, when it was);
/// - one whose request is not is carried out now: 201, not replayed;
/// - `IDEMPOTENCY_KEY_IN_USE` ends within the documented lock (one minute from the claim, so
///   from before the kill).
///
/// Then every key has exactly one request, and one more retry of each replays it.
async fn an_idempotent_retry_after_the_kill_replays_or_creates_exactly_once(backend: Backend) {
    let _serial = SERIAL.lock().await;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    // Built first (cargo may wait for a lock): the time a test takes starts after.
    common::binary::releasedesk();
    let started = Instant::now();
    let fixture = Fixture::create(&db, 4000).await;
    let numbers = Arc::new(fixture.numbers.clone());
    let token = fixture.token.clone();

    let server = start_server(&db).await;
    let (created_hook, _) = webhook_endpoints(&server.api(), &token).await;
    let load = Load::start(
        &server.api(),
        &token,
        numbers.clone(),
        Arc::new(AtomicUsize::new(0)),
        false,
        true,
    );
    let (sent, kill_after) = kill_under_load(server, load, 0..1000).await;
    let killed = Instant::now();

    let (before, orphans) = read_database(&db.url).await;
    assert_all_whole(&before, &orphans, &created_hook);
    let held: BTreeMap<&str, &str> = before
        .iter()
        .map(|(id, w)| (w.phone_number_id.as_str(), id.as_str()))
        .collect();
    for s in &sent {
        match &s.answer {
            Some((201, body)) => assert_eq!(
                held.get(s.number.as_str()).copied(),
                Some(created_id(body).as_str()),
                "an acknowledged create is not in the database"
            ),
            Some((status, body)) => panic!("before the kill: {status} {body}"),
            None => {}
        }
    }

    let server = start_server(&db).await;
    // Idle connections are dropped before the server's keep-alive timeout could close them.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let api = server.api();
    let transport_errors: Mutex<Vec<String>> = Mutex::default();
    let transport_errors = &transport_errors;
    let running = &server;
    let retried: Vec<&Sent> = sent
        .iter()
        .enumerate()
        .filter(|(i, s)| s.answer.is_none() || i % 4 == 0)
        .map(|(_, s)| s)
        .collect();
    let (mut replayed, mut fresh, mut in_use_keys, mut last_in_use) = (0, 0, 0, None);
    // The lock is taken before the kill; a little slack for the clocks' and scheduler's sake.
    let bound = IDEMPOTENCY_LOCK.to_std().unwrap() + Duration::from_secs(3);
    let mut outcome: BTreeMap<&str, String> = BTreeMap::new();
    let retrier = Retrier {
        client,
        api: api.clone(),
        token: token.clone(),
        killed,
        bound,
        server: running,
        transport_errors,
    };
    let results: Vec<(&Sent, CreateReply, bool)> = futures::stream::iter(retried.iter().copied())
        .map(|s| retrier.settle(s))
        .buffer_unordered(8)
        .collect()
        .await;
    for (s, reply, was_in_use) in results {
        assert_eq!(reply.status, 201, "retry of {:?}: {}", s.key, reply.body);
        let id = created_id(&reply.body);
        match held.get(s.number.as_str()) {
            Some(committed) => {
                assert!(
                    reply.replayed,
                    "{id}: committed before the kill, so replayed"
                );
                assert_eq!(id, *committed, "the replay names the committed request");
                replayed += 1;
            }
            None => {
                assert!(
                    !reply.replayed,
                    "{id}: not committed before the kill, yet replayed"
                );
                fresh += 1;
            }
        }
        if let Some((_, first)) = &s.answer {
            assert_eq!(id, created_id(first), "the retry of an acknowledged create");
        }
        if was_in_use {
            in_use_keys += 1;
            last_in_use = Some(killed.elapsed());
        }
        outcome.insert(s.key.as_deref().unwrap(), id);
    }

    // Exactly one request per key, and it is the one the key answers with.
    let (after, orphans) = read_database(&db.url).await;
    assert_all_whole(&after, &orphans, &created_hook);
    for s in &sent {
        let on_number: Vec<&String> = after
            .iter()
            .filter(|(_, w)| w.phone_number_id == s.number)
            .map(|(id, _)| id)
            .collect();
        let key = s.key.as_deref().unwrap();
        let expected = match (&s.answer, outcome.get(key)) {
            (_, Some(id)) => Some(id.clone()),
            (Some((_, body)), None) => Some(created_id(body)),
            (None, None) => unreachable!("every unanswered create was retried"),
        };
        assert_eq!(on_number.len(), 1, "key {key}: {on_number:?}");
        assert_eq!(Some(on_number[0].clone()), expected, "key {key}");
    }
    assert_eq!(
        after.len(),
        sent.len(),
        "one request per key, and none no key explains"
    );
    // And every key holds its stored 201, no longer locked.
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let keys: BTreeMap<String, (Option<i32>, Option<uuid::Uuid>)> = conn
        .query_all_raw(Statement::from_string(
            conn.get_database_backend(),
            "SELECT idempotency_key, response_status, lock_token FROM idempotency_keys",
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            let key: String = r.try_get_by_index(0).unwrap();
            (
                key,
                (
                    r.try_get_by_index(1).unwrap(),
                    r.try_get_by_index(2).unwrap(),
                ),
            )
        })
        .collect();
    conn.close().await.unwrap();
    assert_eq!(keys.len(), sent.len(), "one key row per key");
    for s in &sent {
        let key = s.key.as_deref().unwrap();
        assert_eq!(keys.get(key), Some(&(Some(201), None)), "key {key}");
    }
    // Once more: every retried key now replays.
    for s in &retried {
        let reply = send_create(
            &retrier.client,
            &api,
            &token,
            &s.number,
            s.key.as_deref(),
            &s.body,
        )
        .await
        .unwrap();
        assert_eq!(
            (reply.status, reply.replayed),
            (201, true),
            "{}",
            reply.body
        );
        assert_eq!(
            &created_id(&reply.body),
            &outcome[s.key.as_deref().unwrap()]
        );
    }
    server.stop().await;

    let unanswered = sent.iter().filter(|s| s.answer.is_none()).count();
    eprintln!(
        "{backend:?} idempotent retry: killed {kill_after:?} after {ACKED_BEFORE_KILL} acks; sent {}, \
         acknowledged {}, in flight {unanswered} (committed {}); retried {} ({} of them \
         unanswered): replayed {replayed}, created {fresh}; keys IDEMPOTENCY_KEY_IN_USE after the \
         restart {in_use_keys} (the last free {last_in_use:?} after the kill, bound {bound:?}); \
         {} requests, one per key; retries without an answer {:?}; in {:?}",
        sent.len(),
        sent.len() - unanswered,
        sent.iter()
            .filter(|s| s.answer.is_none() && held.contains_key(s.number.as_str()))
            .count(),
        retried.len(),
        unanswered,
        after.len(),
        transport_errors.lock().unwrap(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_idempotent_retry_after_the_kill_replays_or_creates_exactly_once() {
    an_idempotent_retry_after_the_kill_replays_or_creates_exactly_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_idempotent_retry_after_the_kill_replays_or_creates_exactly_once() {
    an_idempotent_retry_after_the_kill_replays_or_creates_exactly_once(Backend::Postgres).await;
}
