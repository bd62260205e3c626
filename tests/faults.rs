//! Faults, injected for real, and what a client sees and the database holds afterwards:
//!
//! - the disk fills under load (SQLite on a small tmpfs, as root);
//! - three instances start together on a fresh database, or on one a migration behind;
//! - PostgreSQL terminates the service's connections under load (a restart or failover);
//! - SIGTERM behind a load balancer;
//! - an outbox worker is killed while it holds a row.
//!
//! The process-level tests run the real `releasedesk` binary. Each test prints the counts it
//! checked (acknowledged / present); see them with `cargo test --test faults -- --nocapture`.
//! `docs/faults.md` says what each fault must and must not do.

mod common;

use common::binary::{Process, cli, in_ci};

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use releasedesk_domain::{E164, EmailAddress, Reason, StaffId};
use releasedesk_store::{
    Actor, EmailKind, Migrator, MigratorTrait, OutboxKind, OutboxState, Store, StoreOptions,
};
use releasedesk_testkit::smtp::SmtpServer;
use releasedesk_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

const REASON: &str = "No longer needed after the move to the new carrier.";
const PASSWORD: &str = "correct horse battery staple";

// ---- the binary: `tests/common/binary.rs` -----------------------------------------------------

/// An environment with a token, free numbers and a staff account, made with the admin commands.
struct Fixture {
    token: String,
    numbers: Vec<String>,
    staff_email: String,
}

impl Fixture {
    fn create(db: &str, numbers: usize) -> Self {
        cli(db, &["migrate"], None);
        let env = cli(
            db,
            &[
                "env",
                "create",
                "--name",
                "Acme",
                "--notify-email",
                "ops@acme.example",
            ],
            None,
        )["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let token = cli(db, &["token", "issue", "--env", &env], None)["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let numbers = (0..numbers)
            .map(|n| {
                let e164 = format!("+1555010{n:04}");
                cli(
                    db,
                    &["phone", "add", "--env", &env, "--number", &e164],
                    None,
                )["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let staff_email = "reviewer@acme.example".to_owned();
        cli(
            db,
            &[
                "staff",
                "add",
                "--email",
                &staff_email,
                "--name",
                "Reviewer",
            ],
            Some(PASSWORD),
        );
        Self {
            token,
            numbers,
            staff_email,
        }
    }
}

// ---- a small tmpfs ------------------------------------------------------------------------------

/// A tmpfs of its own (root only), unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a note) when this machine does not let the test mount one, outside CI;
    /// in CI, where the tests run as root, that is a failure.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                !in_ci(),
                "CI must run as root: this test mounts a tmpfs to fill it"
            );
            eprintln!("cannot mount a tmpfs here (not root?): skipping the disk-full test");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes zeros until the file system refuses another byte.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).unwrap();
        for chunk in [64 * 1024, 4096, 512] {
            let zeros = vec![0u8; chunk];
            while f.write_all(&zeros).is_ok() {}
        }
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

// ---- load, and what it was told -------------------------------------------------------------

/// When a request was sent, relative to the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Before = 0,
    During = 1,
    After = 2,
}

impl Stage {
    fn of(v: u8) -> Self {
        match v {
            0 => Stage::Before,
            1 => Stage::During,
            _ => Stage::After,
        }
    }
}

/// Everything the load was told: which requests were acknowledged (and so must exist), which
/// were refused, and anything it should never have been told.
#[derive(Debug, Default)]
struct Ledger {
    /// Every create answered 201, by id: whether its cancel was answered 200 too.
    created: BTreeMap<String, bool>,
    /// Creates acknowledged per stage.
    created_in: BTreeMap<Stage, usize>,
    /// (stage, operation, status) → count.
    answers: BTreeMap<(Stage, &'static str, u16), usize>,
    /// 503s whose commit outcome is unknown (the connection broke during COMMIT).
    unconfirmed: usize,
    /// Requests (and the ids found pending after an unconfirmed commit) nobody acknowledged.
    adopted: Vec<String>,
    /// Answers a correct service never gives.
    unexpected: Vec<String>,
}

impl Ledger {
    fn count(&self, stage: Stage, op: &str, status: u16) -> usize {
        self.answers
            .iter()
            .filter(|((s, o, st), _)| *s == stage && *o == op && *st == status)
            .map(|(_, n)| n)
            .sum()
    }

    fn refused(&self, stage: Stage) -> usize {
        self.count(stage, "create", 503) + self.count(stage, "cancel", 503)
    }

    /// id → the status the database must hold.
    fn expected(&self) -> BTreeMap<String, &'static str> {
        self.created
            .iter()
            .map(|(id, cancelled)| {
                let status = if *cancelled { "cancelled" } else { "pending" };
                (id.clone(), status)
            })
            .collect()
    }
}

/// Customers creating and cancelling release requests as fast as they are answered, one task
/// per number, plus one reading the list. A create refused with 503 is tried again; a cancel
/// refused with 503 is tried again before the next create.
struct Load {
    ledger: Arc<Mutex<Ledger>>,
    stage: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Answers of requests *sent* after [`Load::mark`], by status.
    since_mark: Arc<Mutex<BTreeMap<u16, usize>>>,
    marked: Arc<AtomicBool>,
}

impl Load {
    fn start(api: &str, token: &str, numbers: &[String]) -> Self {
        let load = Self {
            ledger: Arc::default(),
            stage: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
            since_mark: Arc::default(),
            marked: Arc::default(),
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for number in numbers {
            let c = Customer {
                client: client.clone(),
                api: api.to_owned(),
                token: token.to_owned(),
                ledger: load.ledger.clone(),
                stage: load.stage.clone(),
                since_mark: load.since_mark.clone(),
                marked: load.marked.clone(),
            };
            let (number, stop) = (number.clone(), load.stop.clone());
            tasks.push(tokio::spawn(async move {
                c.create_and_cancel(&number, &stop).await
            }));
        }
        let c = Customer {
            client,
            api: api.to_owned(),
            token: token.to_owned(),
            ledger: load.ledger.clone(),
            stage: load.stage.clone(),
            since_mark: load.since_mark.clone(),
            marked: load.marked.clone(),
        };
        let stop = load.stop.clone();
        tasks.push(tokio::spawn(async move { c.read_list(&stop).await }));
        Self { tasks, ..load }
    }

    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Ordering::SeqCst);
    }

    /// From now on, answers are also counted in `since_mark`.
    fn mark(&self) {
        self.marked.store(true, Ordering::SeqCst);
    }

    fn since_mark(&self) -> BTreeMap<u16, usize> {
        self.since_mark.lock().unwrap().clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap()
    }

    /// Waits until `n` creates sent in `stage` were acknowledged (a busy machine is slow).
    async fn wait_for_creates(&self, stage: Stage, n: usize, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ledger().created_in.get(&stage).copied().unwrap_or(0) < n {
            assert!(
                Instant::now() < deadline,
                "{why}: fewer than {n} creates acknowledged within 60 s ({:?})",
                self.ledger().answers
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::into_inner(self.ledger).unwrap().into_inner().unwrap()
    }
}

struct Customer {
    client: reqwest::Client,
    api: String,
    token: String,
    ledger: Arc<Mutex<Ledger>>,
    stage: Arc<AtomicU8>,
    since_mark: Arc<Mutex<BTreeMap<u16, usize>>>,
    marked: Arc<AtomicBool>,
}

impl Customer {
    /// Sends one request; returns its status and JSON body, recording the answer.
    async fn send(&self, op: &'static str, req: reqwest::RequestBuilder) -> (Stage, u16, Value) {
        let stage = Stage::of(self.stage.load(Ordering::SeqCst));
        let marked = self.marked.load(Ordering::SeqCst);
        let res = match req.bearer_auth(&self.token).send().await {
            Ok(res) => res,
            Err(e) => {
                self.ledger
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("{op}: no answer: {e}"));
                return (stage, 0, Value::Null);
            }
        };
        let status = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").cloned();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let mut ledger = self.ledger.lock().unwrap();
        *ledger.answers.entry((stage, op, status)).or_default() += 1;
        if marked {
            *self.since_mark.lock().unwrap().entry(status).or_default() += 1;
        }
        if status == 503 {
            if body["code"] != "STORAGE_UNAVAILABLE" || retry_after.is_none() {
                ledger.unexpected.push(format!(
                    "{op}: 503 without STORAGE_UNAVAILABLE and Retry-After: {body}"
                ));
            }
            if body["message"]
                .as_str()
                .is_some_and(|m| m.contains("may not have been saved"))
            {
                ledger.unconfirmed += 1;
            }
        }
        (stage, status, body)
    }

    async fn create_and_cancel(&self, number: &str, stop: &AtomicBool) {
        let mut open: Option<String> = None;
        while !stop.load(Ordering::SeqCst) {
            if let Some(id) = open.clone() {
                let url = format!("{}/phone-numbers/release-requests/{id}/cancel", self.api);
                let (_, status, body) = self.send("cancel", self.client.post(url)).await;
                match status {
                    200 => {
                        self.ledger.lock().unwrap().created.insert(id, true);
                        open = None;
                    }
                    503 => tokio::time::sleep(Duration::from_millis(20)).await,
                    // The cancel whose commit was unconfirmed had been applied after all.
                    409 if self.ledger.lock().unwrap().unconfirmed > 0
                        && body["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("cancelled")) =>
                    {
                        let mut ledger = self.ledger.lock().unwrap();
                        ledger.created.insert(id.clone(), true);
                        ledger.adopted.push(id);
                        open = None;
                    }
                    _ => self.unexpected("cancel", status, &body),
                }
                continue;
            }
            let url = format!("{}/phone-numbers/{number}/request-release", self.api);
            let req = self.client.post(url).json(&json!({ "reason": REASON }));
            let (stage, status, body) = self.send("create", req).await;
            match status {
                201 => {
                    let id = body["data"]["id"].as_str().unwrap().to_owned();
                    let mut ledger = self.ledger.lock().unwrap();
                    ledger.created.insert(id.clone(), false);
                    *ledger.created_in.entry(stage).or_default() += 1;
                    open = Some(id);
                }
                503 => tokio::time::sleep(Duration::from_millis(20)).await,
                // Only a commit whose outcome was unknown may have left a request nobody
                // acknowledged: adopt it (the check at the end allows one per such answer).
                409 if self.ledger.lock().unwrap().unconfirmed > 0 => {
                    open = self.adopt_pending(number).await;
                }
                _ => self.unexpected("create", status, &body),
            }
        }
    }

    async fn adopt_pending(&self, number: &str) -> Option<String> {
        let url = format!(
            "{}/phone-numbers/release-requests?phone_number_id={number}&status=pending",
            self.api
        );
        let (_, _, body) = self.send("read", self.client.get(url)).await;
        let id = body["data"][0]["id"].as_str()?.to_owned();
        self.ledger.lock().unwrap().adopted.push(id.clone());
        Some(id)
    }

    async fn read_list(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            let url = format!("{}/phone-numbers/release-requests?limit=20", self.api);
            let (_, status, body) = self.send("read", self.client.get(url)).await;
            if status != 200 {
                self.unexpected("read", status, &body);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn unexpected(&self, op: &str, status: u16, body: &Value) {
        if status == 0 {
            return; // already recorded
        }
        self.ledger
            .lock()
            .unwrap()
            .unexpected
            .push(format!("{op}: {status} {body}"));
    }
}

/// Every acknowledged request, read back through the API: how many answer 200 with the
/// status the client was told.
async fn readable_through_api(
    api: &str,
    token: &str,
    expected: &BTreeMap<String, &'static str>,
) -> usize {
    let client = reqwest::Client::new();
    let wrong: Vec<String> = futures::stream::iter(expected.iter())
        .map(|(id, status)| {
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
                (code == StatusCode::OK && body["data"]["status"] == *status)
                    .then_some(())
                    .ok_or_else(|| format!("{id}: expected {status}, got {code} {body}"))
            }
        })
        .buffer_unordered(8)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    assert!(
        wrong.is_empty(),
        "{} of {} acknowledged requests are not as acknowledged: {:?}",
        wrong.len(),
        expected.len(),
        &wrong[..wrong.len().min(5)]
    );
    expected.len()
}

/// Every release request row the database holds: id → status.
async fn rows_in_database(url: &str) -> BTreeMap<String, String> {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT id, status FROM release_requests",
        ))
        .await
        .unwrap();
    let out = rows
        .into_iter()
        .map(|r| {
            let id: uuid::Uuid = r.try_get_by_index(0).unwrap();
            let status: String = r.try_get_by_index(1).unwrap();
            (id.to_string(), status)
        })
        .collect();
    db.close().await.unwrap();
    out
}

/// The database holds every acknowledged request with the acknowledged status, and nothing
/// else (but for requests adopted after an unconfirmed commit). Returns how many rows it holds.
async fn database_holds_exactly(url: &str, ledger: &Ledger) -> usize {
    let rows = rows_in_database(url).await;
    for (id, status) in ledger.expected() {
        let adopted = ledger.adopted.contains(&id);
        match rows.get(&id) {
            Some(s) if s == status || adopted => {}
            other => panic!("acknowledged {id} ({status}) is {other:?} in the database"),
        }
    }
    let unacknowledged: Vec<&String> = rows
        .keys()
        .filter(|id| !ledger.created.contains_key(*id) || ledger.adopted.contains(id))
        .collect();
    assert!(
        unacknowledged.len() <= ledger.unconfirmed,
        "the database holds {} requests nobody acknowledged (unconfirmed commits: {}): {:?}",
        unacknowledged.len(),
        ledger.unconfirmed,
        unacknowledged
    );
    rows.len()
}

// ---- 1. the disk fills up --------------------------------------------------------------------

/// SQLite on an 8 MiB tmpfs under create-and-cancel load; the disk is filled with a file, then
/// the file is removed. While full: writes answer 503 `STORAGE_UNAVAILABLE` with `Retry-After`,
/// reads answer 200, `/readyz` answers 503 naming the full disk, the console says the change
/// was not saved. Once space returns, writes succeed again with no restart. Every write
/// acknowledged before, during and after is in the database (through the API, and in the file
/// after a restart), with the acknowledged status, and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_with_503_and_loses_no_acknowledged_write() {
    let Some(disk) = Tmpfs::mount("8m") else {
        return;
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        disk.path().join("releasedesk.db").display()
    );
    let fixture = Fixture::create(&url, 12);
    let mut server = Process::serve(&url, &[]);
    server.wait_ready(Duration::from_secs(30)).await;
    let (api, base, token) = (server.api(), server.base(), fixture.token.clone());
    let client = reqwest::Client::new();

    let load = Load::start(&api, &token, &fixture.numbers);
    load.wait_for_creates(Stage::Before, 30, "before the disk fills")
        .await;

    load.set_stage(Stage::During);
    disk.fill();
    // The fault shows: writes refused, readiness down with the reason.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut readyz_full = None;
    while readyz_full.is_none() || load.ledger().refused(Stage::During) == 0 {
        assert!(
            Instant::now() < deadline,
            "the disk is full but no write was refused, or /readyz never said so ({readyz_full:?}):\n{}",
            server.log_tail()
        );
        let res = client.get(format!("{base}/readyz")).send().await.unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            let reason = res.text().await.unwrap();
            if reason.contains("full") {
                readyz_full = Some(reason);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reads keep working.
    let some_id = load.ledger().created.keys().next().cloned().unwrap();
    let res = client
        .get(format!("{api}/phone-numbers/release-requests/{some_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a read while the disk is full"
    );
    // A console change says it was not saved. (A write may still fit now and then, in pages
    // SQLite freed: such a sign-in succeeds, and is tried again.)
    let mut console_page = None;
    for _ in 0..20 {
        let (status, retry_after, page) = console_sign_in(&base, &fixture.staff_email).await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(retry_after, "a 503 page carries Retry-After");
            console_page = Some(page);
            break;
        }
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    }
    let page = console_page.expect("a console sign-in refused while the disk is full");
    assert!(page.contains("not saved"), "{page}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Space returns: everything recovers by itself.
    load.set_stage(Stage::After);
    disk.free();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let res = client.get(format!("{base}/readyz")).send().await.unwrap();
        if res.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still 503 after space returned: {}",
            res.text().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.wait_for_creates(Stage::After, 20, "after space returned")
        .await;
    let ledger = load.stop().await;
    assert!(ledger.unexpected.is_empty(), "{:?}", ledger.unexpected);
    assert_eq!(
        ledger.unconfirmed, 0,
        "a SQLite COMMIT that fails saved nothing"
    );

    let expected = ledger.expected();
    let readable = readable_through_api(&api, &token, &expected).await;
    server.stop().await;
    let present = database_holds_exactly(&url, &ledger).await;
    assert_eq!(present, expected.len());
    let mut again = Process::serve(&url, &[]);
    again.wait_ready(Duration::from_secs(30)).await;
    let readable_after_restart = readable_through_api(&again.api(), &token, &expected).await;
    again.stop().await;

    eprintln!(
        "disk full (SQLite on an 8 MiB tmpfs): creates acknowledged {} (before {}, while full {}, \
         after {}), cancels acknowledged {}; writes refused with 503 while full {}; readyz while \
         full: {:?}; readable through the API {readable}, after a restart {readable_after_restart}; \
         rows in the database {present}",
        expected.len(),
        ledger.created_in.get(&Stage::Before).unwrap_or(&0),
        ledger.created_in.get(&Stage::During).unwrap_or(&0),
        ledger.created_in.get(&Stage::After).unwrap_or(&0),
        ledger.created.values().filter(|c| **c).count(),
        ledger.refused(Stage::During),
        readyz_full.unwrap_or_default(),
    );
}

/// Signs in to the console with a fresh browser: status, whether `Retry-After` was set, body.
async fn console_sign_in(base: &str, email: &str) -> (StatusCode, bool, String) {
    let console = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = console
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = login.find(marker).unwrap() + marker.len();
    let csrf = &login[start..start + login[start..].find('"').unwrap()];
    let res = console
        .post(format!("{base}/console/login"))
        .form(&[
            ("email", email),
            ("password", PASSWORD),
            ("csrf_token", csrf),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry_after = res.headers().contains_key("retry-after");
    (status, retry_after, res.text().await.unwrap())
}

// ---- 2. instances starting together -------------------------------------------------------------

/// Three `serve` started at the same moment, three times on a fresh database and twice on a
/// database one migration behind: all three become ready, every time, and every migration is
/// recorded once.
async fn instances_started_together_all_come_up(backend: Backend) {
    let total = Migrator::migrations().len();
    for (round, behind) in [0, 0, 0, 1, 1].into_iter().enumerate() {
        let Some(db) = TestDb::new(backend).await else {
            return;
        };
        if behind > 0 {
            let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
            Migrator::up(&conn, Some((total - behind) as u32))
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        let mut servers: Vec<Process> = (0..3).map(|_| Process::serve(&db.url, &[])).collect();
        for s in &mut servers {
            s.wait_ready(Duration::from_secs(60)).await;
        }
        let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
        let applied: i64 = conn
            .query_one_raw(Statement::from_string(
                conn.get_database_backend(),
                "SELECT COUNT(*) FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        conn.close().await.unwrap();
        assert_eq!(
            applied as usize, total,
            "round {round}: each migration once"
        );
        for s in servers {
            s.stop().await;
        }
        eprintln!(
            "{backend:?} round {round} ({}): 3 of 3 instances ready",
            if behind > 0 {
                "one migration behind"
            } else {
                "fresh database"
            }
        );
    }
}

#[tokio::test]
async fn sqlite_instances_started_together_all_come_up() {
    instances_started_together_all_come_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_instances_started_together_all_come_up() {
    instances_started_together_all_come_up(Backend::Postgres).await;
}

// ---- 3. PostgreSQL terminates the service's connections ---------------------------------------

/// `pg_terminate_backend` on every connection of the service's database, twice, under load
/// (what a restart or a failover does to a pool). No request answers 500; no request sent
/// after the termination answers 5xx (stale pooled connections are retried or replaced);
/// every acknowledged write is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_terminated_connections_cost_no_5xx() {
    releasedesk_testkit::init_test_tracing();
    let Some(app) = common::TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let mut numbers = Vec::new();
    for n in 0..6 {
        numbers.push(app.add_number(&format!("+1555020{n:04}")).await.to_string());
    }
    let admin_url = releasedesk_testkit::test_database_url().unwrap();
    let admin = sea_orm::Database::connect(admin_url.as_str())
        .await
        .unwrap();
    let db_name = app.db.url.rsplit('/').next().unwrap().to_owned();
    let terminate = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
        [db_name.clone().into()],
    );
    // pg_terminate_backend only signals: a backend is gone once it left pg_stat_activity.
    let started_before = |at: chrono::DateTime<chrono::Utc>| {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND backend_start < $2",
            [db_name.clone().into(), at.into()],
        )
    };

    let load = Load::start(&app.api, &app.token, &numbers);
    load.wait_for_creates(Stage::Before, 20, "before the termination")
        .await;
    let mut terminated = 0;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let at = chrono::Utc::now();
        let killed: i64 = admin
            .query_one_raw(terminate.clone())
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index(0)
            .unwrap();
        assert!(killed > 0, "the service had connections to terminate");
        terminated += killed;
        while scalar(&admin, started_before(at)).await > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // Requests sent from now on find the pool full of dead connections (or new ones): none
    // may fail. (Requests in flight during a termination may answer 503: a COMMIT the
    // connection broke under has an unknown outcome.)
    load.mark();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = load.since_mark();
    let ledger = load.stop().await;
    admin.close().await.unwrap();

    let answers: usize = ledger.answers.values().sum();
    let errors_500: usize = ledger
        .answers
        .iter()
        .filter(|((_, _, s), _)| *s == 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(errors_500, 0, "{:?}", ledger.answers);
    let refused: usize = ledger
        .answers
        .iter()
        .filter(|((_, _, s), _)| *s >= 500)
        .map(|(_, n)| n)
        .sum();
    assert!(
        ledger.unexpected.is_empty(),
        "{:?}",
        &ledger.unexpected[..ledger.unexpected.len().min(5)]
    );
    let fivexx_after: usize = after
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(fivexx_after, 0, "answers after the termination: {after:?}");
    assert!(after.get(&201).is_some_and(|n| *n > 0), "{after:?}");

    let expected = ledger.expected();
    let readable = readable_through_api(&app.api, &app.token, &expected).await;
    let present = database_holds_exactly(&app.db.url, &ledger).await;
    eprintln!(
        "PostgreSQL connections terminated ({terminated} backends, 2 rounds) under load: {answers} \
         answers, 500s {errors_500}, other 5xx {refused} (commits unconfirmed {}), 5xx after the \
         terminations {fivexx_after}; creates acknowledged {}, readable {readable}, rows in the \
         database {present} (adopted after an unconfirmed commit {})",
        ledger.unconfirmed,
        expected.len(),
        ledger.adopted.len(),
    );
    app.shutdown().await;
}

/// The attack on a create's unknown outcome: its PostgreSQL backend is terminated while the
/// call waits for the number's row lock (held here by another transaction), so the call was
/// sent and its connection then lost. The service must not answer 503 ("may or may not have
/// been saved"): the server ended that session, so the outcome is decided, and a lookup tells
/// that nothing committed; the create is sent again on another connection, waits for the lock
/// like any other, and answers 201 with exactly one request, one audit event and its outbox
/// rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_create_whose_backend_is_terminated_mid_call_is_sent_again_once() {
    releasedesk_testkit::init_test_tracing();
    let Some(app) = common::TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let number = app.add_number("+15550209999").await;
    // A subscriber, so that the create writes outbox rows too.
    app.store
        .create_webhook_endpoint(
            &app.auth,
            releasedesk_store::NewWebhookEndpoint {
                url: releasedesk_domain::WebhookUrl::parse(
                    "https://hooks.example.com/releasedesk",
                    releasedesk_domain::WebhookPolicy::default(),
                )
                .unwrap(),
                description: None,
                events: vec![],
            },
        )
        .await
        .unwrap();
    let db = app.raw_db().await;
    let pg = |sql: &str, values: Vec<sea_orm::Value>| {
        Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
    };
    // Another writer holds the number's row lock.
    let holder = sea_orm::TransactionTrait::begin(&db).await.unwrap();
    holder
        .execute_raw(pg(
            "SELECT 1 FROM phone_numbers WHERE id = $1 FOR UPDATE",
            vec![number.as_uuid().into()],
        ))
        .await
        .unwrap();
    let create = tokio::spawn(common::send(app.release_request(number, &app.token)));
    // The create's backend, waiting for the lock.
    let waiting = pg(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query LIKE '%releasedesk_create_request%'",
        vec![],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(row) = db.query_one_raw(waiting.clone()).await.unwrap() {
            break row.try_get_by_index(0).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the create never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let terminated: bool = db
        .query_one_raw(pg("SELECT pg_terminate_backend($1)", vec![pid.into()]))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(terminated);
    let gone = pg(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1",
        vec![pid.into()],
    );
    while scalar(&db, gone.clone()).await > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    holder.commit().await.unwrap();

    let (status, body) = tokio::time::timeout(Duration::from_secs(20), create)
        .await
        .expect("the create answered")
        .unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["data"]["phone_number"], "+15550209999", "{body}");
    let count = |sql: &str| pg(sql, vec![number.as_uuid().into()]);
    let requests = count("SELECT COUNT(*) FROM release_requests WHERE phone_number_id = $1");
    assert_eq!(scalar(&db, requests).await, 1);
    let audit = count("SELECT COUNT(*) FROM audit_events WHERE phone_number_id = $1");
    assert_eq!(scalar(&db, audit).await, 1);
    // The outbox rows of one create: as many as an undisturbed create on another number writes.
    let outbox = |n: releasedesk_domain::PhoneNumberId| {
        pg(
            "SELECT COUNT(*) FROM outbox o JOIN release_requests r ON o.request_id = r.id \
             WHERE r.phone_number_id = $1",
            vec![n.as_uuid().into()],
        )
    };
    let undisturbed = app.add_number("+15550209998").await;
    app.request_release(undisturbed).await;
    let written = scalar(&db, outbox(number)).await;
    assert!(written > 0);
    assert_eq!(written, scalar(&db, outbox(undisturbed)).await);
    let (status, fetched) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched["data"]["status"], "pending");
    app.shutdown().await;
}

/// The first column of the one row `stmt` returns, as a number (counts, mostly).
async fn scalar(db: &impl ConnectionTrait, stmt: Statement) -> i64 {
    db.query_one_raw(stmt)
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap()
}

// ---- 4. SIGTERM behind a load balancer ---------------------------------------------------------

/// On SIGTERM the server keeps serving for `RELEASEDESK_SHUTDOWN_GRACE` with `/readyz` at 503,
/// so a load balancer stops sending before anything is refused; then it stops accepting,
/// finishes what is in flight and exits 0.
async fn sigterm_drains_with_readyz_503_while_requests_still_succeed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let fixture = Fixture::create(&db.url, 1);
    let grace = Duration::from_secs(3);
    let mut server = Process::serve(&db.url, &[("RELEASEDESK_SHUTDOWN_GRACE", "3s".into())]);
    server.wait_ready(Duration::from_secs(30)).await;
    let (api, base) = (server.api(), server.base());
    let client = reqwest::Client::new();

    server.signal("-TERM");
    let signalled = Instant::now();
    let mut readyz_503_at = None;
    let mut served_after_503 = 0;
    let mut refused = Vec::new();
    // While the drain lasts (with a margin for scheduling), everything is answered.
    while signalled.elapsed() < grace - Duration::from_millis(500) {
        match client.get(format!("{base}/readyz")).send().await {
            Ok(res) if res.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let body = res.text().await.unwrap();
                assert_eq!(body, "shutting down");
                readyz_503_at.get_or_insert(signalled.elapsed());
            }
            Ok(res) => assert!(
                readyz_503_at.is_none(),
                "/readyz went back to {}",
                res.status()
            ),
            Err(e) => refused.push(format!("readyz: {e}")),
        }
        match client
            .get(format!("{api}/phone-numbers"))
            .bearer_auth(&fixture.token)
            .send()
            .await
        {
            Ok(res) if res.status() == StatusCode::OK => {
                if readyz_503_at.is_some() {
                    served_after_503 += 1;
                }
            }
            Ok(res) => refused.push(format!("api: {}", res.status())),
            Err(e) => refused.push(format!("api: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(refused.is_empty(), "refused during the drain: {refused:?}");
    let readyz_503_at = readyz_503_at.expect("/readyz answered 503 during the drain");
    assert!(
        served_after_503 > 0,
        "requests still served after /readyz said 503"
    );

    let status = server.wait_exit(Duration::from_secs(30)).await;
    let exited_after = signalled.elapsed();
    assert!(status.success(), "exit {status}:\n{}", server.log_tail());
    assert!(
        exited_after >= grace,
        "exited after {exited_after:?}, before the drain ended"
    );
    assert!(
        client.get(format!("{base}/livez")).send().await.is_err(),
        "nothing listens after the exit"
    );
    eprintln!(
        "{backend:?} SIGTERM: /readyz 503 after {readyz_503_at:?}, {served_after_503} API \
         requests served after that, 0 refused; exit 0 after {exited_after:?}"
    );
}

#[tokio::test]
async fn sqlite_sigterm_drains_with_readyz_503_while_requests_still_succeed() {
    sigterm_drains_with_readyz_503_while_requests_still_succeed(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_sigterm_drains_with_readyz_503_while_requests_still_succeed() {
    sigterm_drains_with_readyz_503_while_requests_still_succeed(Backend::Postgres).await;
}

// ---- 5. a worker killed while it holds a row ---------------------------------------------------

/// Two `releasedesk worker` processes with the default lease. The first takes the "approved"
/// email and hangs on an SMTP server that never answers, for longer than a lease: its lease is
/// renewed, so the second does not take the row. Then the first is killed (SIGKILL): the
/// second delivers the email within 20 s, with the same Message-ID, once.
async fn a_killed_workers_row_is_delivered_by_another_within_20s(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let env = store
        .create_environment("Acme", &EmailAddress::parse("ops@acme.example").unwrap())
        .await
        .unwrap();
    let number = store
        .add_phone_number(env.id, &E164::parse("+15551234567").unwrap())
        .await
        .unwrap();
    let token = store.issue_token(env.id, None).await.unwrap();
    let auth = store
        .authenticate(&token.token.hash())
        .await
        .unwrap()
        .unwrap();
    let request = store
        .request_release(&auth, number.id, Reason::parse(REASON).unwrap())
        .await
        .unwrap();
    store
        .approve(
            &Actor::Staff {
                id: StaffId::new(),
                email: "rev@example.com".into(),
            },
            request.id,
            "+15551234567",
            None,
        )
        .await
        .unwrap();
    let approved = store
        .outbox_for_request(request.id)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == OutboxKind::Email(EmailKind::RequestApproved))
        .unwrap()
        .id;

    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let worker_env = |smtp: String| {
        vec![
            ("SMTP_URL", smtp),
            ("RELEASEDESK_WORKER_POLL_MS", "100".to_owned()),
            (
                "RELEASEDESK_PUBLIC_URL",
                "http://releasedesk.test".to_owned(),
            ),
        ]
    };
    let first = Process::spawn(
        &db.url,
        "worker",
        &worker_env(format!(
            "smtp://127.0.0.1:{}",
            black_hole.local_addr().unwrap().port()
        )),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = store.outbox_row(approved).await.unwrap().unwrap();
        if row.lease_owner.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker never claimed the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let smtp = SmtpServer::start();
    let _second = Process::spawn(&db.url, "worker", &worker_env(smtp.url()));
    // Longer than the default 15 s lease: only renewals keep the row with the first worker.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let row = store.outbox_row(approved).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.attempts),
        (OutboxState::Pending, 1),
        "the hung worker keeps its row while it lives"
    );
    let holder = row.lease_owner.clone();

    let mut first = first;
    first.signal("-KILL");
    first.wait_exit(Duration::from_secs(10)).await;
    let killed = Instant::now();
    let expected = format!("<{approved}@releasedesk.test>");
    let delivered_after = loop {
        let ids: Vec<String> = smtp
            .received()
            .iter()
            .filter_map(|m| m.parsed().header("Message-ID"))
            .collect();
        if ids.contains(&expected) {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "not delivered within 20 s of the kill: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<String> = smtp
        .received()
        .iter()
        .filter_map(|m| m.parsed().header("Message-ID"))
        .collect();
    assert_eq!(
        ids.iter().filter(|id| **id == expected).count(),
        1,
        "delivered once by the second worker: {ids:?}"
    );
    let row = store.outbox_row(approved).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Sent, 2));
    assert_ne!(row.lease_owner, holder);
    drop(black_hole);
    store.close().await;
    eprintln!(
        "{backend:?} worker killed holding a row (lease held 17 s by renewals): delivered by \
         another worker {delivered_after:?} after the kill, once, same Message-ID"
    );
}

#[tokio::test]
async fn sqlite_a_killed_workers_row_is_delivered_by_another_within_20s() {
    a_killed_workers_row_is_delivered_by_another_within_20s(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_killed_workers_row_is_delivered_by_another_within_20s() {
    a_killed_workers_row_is_delivered_by_another_within_20s(Backend::Postgres).await;
}
