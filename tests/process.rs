//! The `releasedesk` binary as an operator runs it: admin commands, `serve` with SIGTERM, and
//! an outbox worker killed with SIGKILL between claiming a row and sending it.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use releasedesk_domain::{E164, EmailAddress, Reason, RequestId, StaffId};
use releasedesk_store::{Actor, EmailKind, OutboxKind, OutboxState, Store, StoreOptions};
use releasedesk_testkit::smtp::SmtpServer;
use releasedesk_testkit::{Backend, TestDb};
use serde_json::Value;

/// The binary under test, built from this workspace once per test process (a no-op when it is
/// up to date).
fn releasedesk() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(build_releasedesk).clone()
}

fn build_releasedesk() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "releasedesk-server",
            "--bin",
            "releasedesk",
        ])
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building releasedesk failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join("releasedesk")
}

fn run(db: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(releasedesk())
        .args(args)
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("releasedesk starts");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn admin_commands_print_one_json_object(db: TestDb) {
    let url = db.url.as_str();
    assert_eq!(
        json_of(&run(url, &["migrate", "--json"], None)),
        serde_json::json!({ "migrated": true })
    );
    let env = json_of(&run(
        url,
        &[
            "env",
            "create",
            "--name",
            "Acme",
            "--notify-email",
            "ops@acme.example",
            "--json",
        ],
        None,
    ));
    let env_id = env["id"].as_str().unwrap().to_owned();
    let token = json_of(&run(
        url,
        &[
            "token", "issue", "--env", &env_id, "--label", "ci", "--json",
        ],
        None,
    ));
    let secret = token["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("talq_") && secret.len() >= 37);
    let phone = json_of(&run(
        url,
        &[
            "phone",
            "add",
            "--env",
            &env_id,
            "--number",
            "+15551234567",
            "--json",
        ],
        None,
    ));
    let phone_id = phone["id"].as_str().unwrap().to_owned();
    let agent = json_of(&run(
        url,
        &[
            "agent",
            "add",
            "--env",
            &env_id,
            "--name",
            "Front desk",
            "--status",
            "paused",
            "--direction",
            "outbound",
            "--phone",
            &phone_id,
            "--json",
        ],
        None,
    ));
    assert!(agent["id"].is_string());
    let staff = json_of(&run(
        url,
        &[
            "staff",
            "add",
            "--email",
            "Rev@Example.com",
            "--name",
            "Rev",
            "--json",
        ],
        Some("correct horse battery\n"),
    ));
    assert!(staff["id"].is_string());

    // Human output without --json.
    let out = run(
        url,
        &["phone", "add", "--env", &env_id, "--number", "+15557654321"],
        None,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("phone number +15557654321 added: "));

    // Bad input: a clear message on stderr, a failing exit code, nothing written.
    for (args, stdin, says) in [
        (
            vec![
                "phone",
                "add",
                "--env",
                env_id.as_str(),
                "--number",
                "555-1234",
            ],
            None,
            "E.164",
        ),
        (
            vec![
                "phone",
                "add",
                "--env",
                "not-an-id",
                "--number",
                "+15550000000",
            ],
            None,
            "environment id",
        ),
        (
            vec![
                "phone",
                "add",
                "--env",
                env_id.as_str(),
                "--number",
                "+15551234567",
            ],
            None,
            "already exists",
        ),
        (
            vec!["env", "create", "--name", "X", "--notify-email", "nope"],
            None,
            "email",
        ),
        (
            vec![
                "staff",
                "add",
                "--email",
                "short@example.com",
                "--name",
                "S",
            ],
            Some("too short\n"),
            "12 characters",
        ),
        (
            vec![
                "staff",
                "add",
                "--email",
                "rev@example.com",
                "--name",
                "Again",
            ],
            Some("another long passphrase\n"),
            "already",
        ),
        (
            vec!["token", "revoke", "--prefix", "talq_nothing1"],
            None,
            "no live token",
        ),
    ] {
        let out = run(url, &args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // Revoking by display prefix.
    let prefix = token["prefix"].as_str().unwrap();
    assert_eq!(
        json_of(&run(
            url,
            &["token", "revoke", "--prefix", prefix, "--json"],
            None
        )),
        serde_json::json!({ "revoked": 1 })
    );
    let store = Store::connect(url, StoreOptions::default()).await.unwrap();
    let hash = releasedesk_domain::ApiToken::parse(&secret).unwrap().hash();
    assert!(
        store.authenticate(&hash).await.unwrap().is_none(),
        "revoked tokens no longer authenticate"
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_admin_commands_print_one_json_object() {
    admin_commands_print_one_json_object(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_admin_commands_print_one_json_object() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        admin_commands_print_one_json_object(db).await;
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(db: &str, args: &[&str], env: &[(&str, String)]) -> Running {
    let mut cmd = Command::new(releasedesk());
    cmd.args(args)
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(cmd.spawn().expect("releasedesk starts"))
}

#[tokio::test]
async fn serve_answers_readyz_then_stops_cleanly_on_sigterm() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let port = free_port();
    let mail = tempfile::tempdir().unwrap();
    let mut server = spawn(
        &db.url,
        &["serve"],
        &[
            ("RELEASEDESK_BIND", format!("127.0.0.1:{port}")),
            ("RELEASEDESK_MAIL_DIR", mail.path().display().to_string()),
        ],
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && res.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let live = client
        .get(format!("http://127.0.0.1:{port}/livez"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    assert!(
        client
            .get(format!("http://127.0.0.1:{port}/livez"))
            .send()
            .await
            .is_err()
    );
}

/// Kill the worker (SIGKILL) after it claimed the "approved" email and before the SMTP server
/// took it; a new worker delivers it once the lease expires, with the same Message-ID, and
/// every email arrives exactly once.
async fn killed_worker_row_is_delivered_after_restart(db: TestDb) {
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
        .request_release(
            &auth,
            number.id,
            Reason::parse("No longer needed after the migration.").unwrap(),
        )
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
    let approved_row = email_row(
        &store,
        request.id,
        OutboxKind::Email(EmailKind::RequestApproved),
    )
    .await;

    // An SMTP server that accepts connections and never answers: the worker is stuck mid-send.
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let black_hole_url = format!(
        "smtp://127.0.0.1:{}",
        black_hole.local_addr().unwrap().port()
    );
    let mail = tempfile::tempdir().unwrap();
    let worker_env = |smtp: String| {
        vec![
            ("SMTP_URL", smtp),
            ("RELEASEDESK_MAIL_DIR", mail.path().display().to_string()),
            ("RELEASEDESK_WORKER_LEASE_SECS", "3".to_owned()),
            ("RELEASEDESK_WORKER_POLL_MS", "50".to_owned()),
            (
                "RELEASEDESK_PUBLIC_URL",
                "http://releasedesk.test".to_owned(),
            ),
        ]
    };
    let mut first = spawn(&db.url, &["worker"], &worker_env(black_hole_url));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let row = store.outbox_row(approved_row).await.unwrap().unwrap();
        if row.lease_owner.is_some() && row.attempts == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never claimed the row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill().unwrap(); // SIGKILL: no chance to hand the lease back
    first.0.wait().unwrap();
    drop(black_hole);
    let row = store.outbox_row(approved_row).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending, "not sent, not lost");

    let smtp = SmtpServer::start();
    let _second = spawn(&db.url, &["worker"], &worker_env(smtp.url()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.outbox_pending_count().await.unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "the outbox did not drain after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = smtp.received();
    let ids: Vec<String> = received
        .iter()
        .map(|m| m.parsed().header("Message-ID").unwrap())
        .collect();
    let expected = format!("<{approved_row}@releasedesk.test>");
    assert_eq!(
        ids.iter().filter(|id| **id == expected).count(),
        1,
        "approved email exactly once: {ids:?}"
    );
    assert_eq!(
        received.len(),
        2,
        "approved and released, once each: {ids:?}"
    );
    let row = store.outbox_row(approved_row).await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (OutboxState::Sent, 2));
    assert_eq!(
        store
            .find_request(request.id)
            .await
            .unwrap()
            .status
            .as_str(),
        "released"
    );
    store.close().await;
}

async fn email_row(
    store: &Store,
    request: RequestId,
    kind: OutboxKind,
) -> releasedesk_domain::OutboxId {
    store
        .outbox_for_request(request)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.kind == kind)
        .unwrap()
        .id
}

#[tokio::test]
async fn sqlite_killed_worker_row_is_delivered_after_restart() {
    killed_worker_row_is_delivered_after_restart(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_killed_worker_row_is_delivered_after_restart() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        killed_worker_row_is_delivered_after_restart(db).await;
    }
}

/// The review policy's commands: roles for staff accounts, four eyes for environments; every
/// change audited as the command line; bad input refused with a clear message.
async fn staff_and_policy_commands(db: TestDb) {
    let url = db.url.as_str();
    let env = json_of(&run(
        url,
        &[
            "env",
            "create",
            "--name",
            "Acme",
            "--notify-email",
            "ops@acme.example",
            "--required-approvals",
            "2",
            "--json",
        ],
        None,
    ));
    assert_eq!(env["required_approvals"], 2);
    let env_id = env["id"].as_str().unwrap().to_owned();
    let set = json_of(&run(
        url,
        &[
            "env",
            "set",
            "--env",
            &env_id,
            "--required-approvals",
            "1",
            "--json",
        ],
        None,
    ));
    assert_eq!(
        set,
        serde_json::json!({ "id": env_id, "required_approvals": 1 })
    );
    let default_env = json_of(&run(
        url,
        &[
            "env",
            "create",
            "--name",
            "Globex",
            "--notify-email",
            "noc@globex.example",
            "--json",
        ],
        None,
    ));
    assert_eq!(default_env["required_approvals"], 1);

    let admin = json_of(&run(
        url,
        &[
            "staff",
            "add",
            "--email",
            "root@example.com",
            "--name",
            "Root",
            "--role",
            "admin",
            "--json",
        ],
        Some("a long admin passphrase\n"),
    ));
    assert_eq!(admin["role"], "admin");
    let reviewer = json_of(&run(
        url,
        &[
            "staff",
            "add",
            "--email",
            "rev@example.com",
            "--name",
            "Rev",
            "--json",
        ],
        Some("a long reviewer passphrase\n"),
    ));
    assert_eq!(reviewer["role"], "reviewer", "reviewer is the default role");
    let out = run(
        url,
        &[
            "staff",
            "set-role",
            "--email",
            "rev@example.com",
            "--role",
            "viewer",
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "staff rev@example.com is now viewer"
    );
    let disabled = json_of(&run(
        url,
        &["staff", "disable", "--email", "rev@example.com", "--json"],
        None,
    ));
    assert_eq!(disabled["disabled"], true);

    let store = Store::connect(url, StoreOptions::default()).await.unwrap();
    let rev = store
        .staff_for_sign_in(&EmailAddress::parse("rev@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (rev.role, rev.disabled),
        (releasedesk_domain::StaffRole::Viewer, true)
    );
    let enabled = json_of(&run(
        url,
        &["staff", "enable", "--email", "rev@example.com", "--json"],
        None,
    ));
    assert_eq!(enabled["disabled"], false);
    let env = store
        .get_environment(releasedesk_domain::EnvironmentId::parse(&env_id).unwrap())
        .await
        .unwrap();
    assert_eq!(env.required_approvals.get(), 1);
    let audit = store
        .list_audit(&releasedesk_store::AuditFilter {
            actor: Some("command line".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().rev().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "environment.policy_changed",
            "staff.added",
            "staff.added",
            "staff.role_changed",
            "staff.disabled",
            "staff.enabled",
        ]
    );
    store.close().await;

    for (args, says) in [
        (
            vec![
                "env",
                "set",
                "--env",
                env_id.as_str(),
                "--required-approvals",
                "3",
            ],
            "1..=2",
        ),
        (
            vec![
                "env",
                "set",
                "--env",
                "01900000-0000-7000-8000-000000000000",
                "--required-approvals",
                "2",
            ],
            "no environment",
        ),
        (
            vec![
                "staff",
                "set-role",
                "--email",
                "nobody@example.com",
                "--role",
                "admin",
            ],
            "no staff account",
        ),
        (
            vec![
                "staff",
                "set-role",
                "--email",
                "root@example.com",
                "--role",
                "boss",
            ],
            "boss",
        ),
        (
            vec![
                "staff",
                "set-role",
                "--email",
                "root@example.com",
                "--role",
                "reviewer",
            ],
            "no enabled admin",
        ),
        (
            vec!["staff", "disable", "--email", "root@example.com"],
            "no enabled admin",
        ),
    ] {
        let out = run(url, &args, None);
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn sqlite_staff_and_policy_commands() {
    staff_and_policy_commands(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_staff_and_policy_commands() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        staff_and_policy_commands(db).await;
    }
}

/// Two worker processes sweep the same database every 200 ms with service levels of seconds:
/// every request gets exactly one overdue reminder and, a few seconds later, expires once with
/// exactly one email to the customer.
async fn two_workers_sweeping_at_once_send_each_email_once(db: TestDb) {
    const REQUESTS: usize = 8;
    let store = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let env = store
        .create_environment("Acme", &EmailAddress::parse("ops@acme.example").unwrap())
        .await
        .unwrap();
    let token = store.issue_token(env.id, None).await.unwrap();
    let auth = store
        .authenticate(&token.token.hash())
        .await
        .unwrap()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let number = store
            .add_phone_number(env.id, &E164::parse(&format!("+1555100{i:04}")).unwrap())
            .await
            .unwrap();
        let request = store
            .request_release(
                &auth,
                number.id,
                Reason::parse("No longer needed after the migration.").unwrap(),
            )
            .await
            .unwrap();
        ids.push(request.id);
    }

    let smtp = SmtpServer::start();
    let mail = tempfile::tempdir().unwrap();
    let worker_env = vec![
        ("SMTP_URL", smtp.url()),
        ("RELEASEDESK_MAIL_DIR", mail.path().display().to_string()),
        ("RELEASEDESK_WORKER_POLL_MS", "50".to_owned()),
        (
            "RELEASEDESK_SUPPORT_EMAIL",
            "support@example.com".to_owned(),
        ),
        ("RELEASEDESK_REMIND_AFTER", "1s".to_owned()),
        ("RELEASEDESK_EXPIRE_AFTER", "4s".to_owned()),
        ("RELEASEDESK_SWEEP_INTERVAL", "200ms".to_owned()),
        (
            "RELEASEDESK_PUBLIC_URL",
            "http://releasedesk.test".to_owned(),
        ),
    ];
    let _one = spawn(&db.url, &["worker"], &worker_env);
    let _two = spawn(&db.url, &["worker"], &worker_env);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut expired = 0;
        for id in &ids {
            if store.find_request(*id).await.unwrap().status.as_str() == "expired" {
                expired += 1;
            }
        }
        if expired == REQUESTS
            && store.outbox_pending_count().await.unwrap() == 0
            && smtp.received_count() >= 2 * REQUESTS
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all expired and sent in time: {expired} expired, {} received",
            smtp.received_count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Both workers keep sweeping for a while: nothing more may be sent.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let received = smtp.received();
    let ids_seen: std::collections::BTreeSet<String> = received
        .iter()
        .map(|m| m.parsed().header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids_seen.len(), received.len(), "no Message-ID twice");
    let to = |who: &str| received.iter().filter(|m| m.to == [who]).count();
    assert_eq!(to("support@example.com"), REQUESTS, "one reminder each");
    assert_eq!(to("ops@acme.example"), REQUESTS, "one expiry email each");
    assert_eq!(received.len(), 2 * REQUESTS);
    for id in &ids {
        let rows = store.outbox_for_request(*id).await.unwrap();
        for kind in [EmailKind::RequestOverdue, EmailKind::RequestExpired] {
            let of_kind: Vec<_> = rows
                .iter()
                .filter(|r| r.kind == OutboxKind::Email(kind))
                .collect();
            assert_eq!(of_kind.len(), 1, "{kind:?} of {id}");
            assert_eq!(of_kind[0].state, OutboxState::Sent);
        }
        let timeline = store.request_timeline(*id).await.unwrap();
        for action in ["request.reminded", "request.expired"] {
            assert_eq!(
                timeline.iter().filter(|e| e.action == action).count(),
                1,
                "{action} of {id}"
            );
        }
    }
    store.close().await;
}

#[tokio::test]
async fn sqlite_two_workers_sweeping_at_once_send_each_email_once() {
    two_workers_sweeping_at_once_send_each_email_once(TestDb::new(Backend::Sqlite).await.unwrap())
        .await;
}

#[tokio::test]
async fn postgres_two_workers_sweeping_at_once_send_each_email_once() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        two_workers_sweeping_at_once_send_each_email_once(db).await;
    }
}
