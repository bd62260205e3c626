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

// ---------------------------------------------------------------------------------------------
// Operating it: metrics, settings errors, logs, help, and `demo` run again.

/// `releasedesk` with exactly these environment variables (plus `PATH`): what a newcomer's
/// shell would pass, without the test runner's own `DATABASE_URL` or `RUST_LOG`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(releasedesk());
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs to completion (bounded: a command that hangs fails the test).
fn finish(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let child = cmd.spawn().expect("releasedesk starts");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the command ends within a minute")
        .unwrap();
    (out, started.elapsed())
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A SQLite URL whose folder does not exist: every command that opens the database stops
/// there, after the command line and the settings were accepted.
fn unopenable_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("missing").join("releasedesk.db").display()
    );
    (dir, url)
}

#[test]
fn a_sqlite_file_in_a_missing_folder_names_database_url_and_the_folder_to_create() {
    let (dir, url) = unopenable_sqlite();
    let (out, _) = finish(command(&["migrate"], &[("DATABASE_URL", &url)]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    let folder = dir.path().join("missing");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "error: DATABASE_URL names the SQLite file {file}, but its folder {folder} does not exist. \
             Create the folder (mkdir -p {folder}) or point DATABASE_URL at a file in an existing folder.",
            file = folder.join("releasedesk.db").display(),
            folder = folder.display()
        )
    );
    assert!(!stderr.contains("code: 14"), "{stderr}");
}

#[test]
fn a_missing_sqlite_file_without_mode_rwc_says_to_add_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("releasedesk.db").display());
    let (out, _) = finish(command(&["migrate"], &[("DATABASE_URL", &url)]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!(
            "Add ?mode=rwc to create it (DATABASE_URL={url}?mode=rwc)"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one message: {stderr}");
    assert!(!dir.path().join("releasedesk.db").exists());
}

#[test]
fn postgres_on_a_closed_port_is_refused_within_five_seconds_naming_the_cause() {
    let port = free_port(); // bound and released: nothing listens there now
    let url = format!("postgres://postgres@127.0.0.1:{port}/releasedesk");
    let (out, took) = finish(command(&["migrate"], &[("DATABASE_URL", &url)]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr_of(&out).trim_end(),
        format!(
            "error: cannot reach PostgreSQL at 127.0.0.1:{port} (DATABASE_URL): connection refused. \
             Is PostgreSQL running and listening there? Check the host and port in DATABASE_URL."
        )
    );
    // The contract's bound (the pool used to retry for 10 s and then report only a timeout).
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test]
async fn postgres_database_that_does_not_exist_is_named_once_with_createdb() {
    let Some(admin) = releasedesk_testkit::test_database_url() else {
        return;
    };
    let mut url = reqwest::Url::parse(&admin).unwrap();
    url.set_path("/releasedesk_no_such_database");
    let (out, _) = finish(command(&["migrate"], &[("DATABASE_URL", url.as_str())]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = stderr_of(&out);
    assert_eq!(stderr.matches("does not exist").count(), 1, "{stderr}");
    let host = url.host_str().unwrap();
    let port = url.port().unwrap_or(5432);
    assert!(
        stderr.contains(&format!(
            "Create it: createdb -h {host} -p {port} -U {} releasedesk_no_such_database",
            url.username()
        )),
        "{stderr}"
    );
}

#[test]
fn a_bind_address_with_a_host_name_names_the_variable_and_the_flag() {
    let (out, _) = finish(command(
        &["serve"],
        &[("RELEASEDESK_BIND", "localhost:8080")],
    ));
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with(
            "error: invalid RELEASEDESK_BIND (--bind): 'localhost:8080' names a host, not an IP \
             address; write an IP address and a port, such as 127.0.0.1:8080"
        ),
        "{stderr}"
    );
    let (out, _) = finish(command(&["serve"], &[("RELEASEDESK_METRICS_BIND", "9464")]));
    assert!(
        stderr_of(&out).contains("invalid RELEASEDESK_METRICS_BIND (--metrics-bind): '9464'"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn booleans_accept_1_0_yes_no_true_false() {
    let (_dir, url) = unopenable_sqlite();
    for value in ["1", "0", "yes", "no", "true", "false", "on", "off"] {
        let (out, _) = finish(command(
            &["serve"],
            &[("DATABASE_URL", &url), ("RELEASEDESK_NO_WORKER", value)],
        ));
        let stderr = stderr_of(&out);
        assert!(
            stderr.contains("DATABASE_URL names the SQLite file"),
            "RELEASEDESK_NO_WORKER={value} is accepted, so serve goes on to the database: {stderr}"
        );
    }
    let (out, _) = finish(command(
        &["serve"],
        &[("DATABASE_URL", &url), ("RELEASEDESK_NO_WORKER", "maybe")],
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).starts_with(
            "error: invalid RELEASEDESK_NO_WORKER (--no-worker): 'maybe' is not a yes/no value; \
             write 1 or 0, true or false, yes or no"
        ),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn an_empty_variable_means_unset() {
    let (_dir, url) = unopenable_sqlite();
    let mut env = vec![("DATABASE_URL", url.as_str())];
    for name in [
        "SMTP_URL",
        "RELEASEDESK_BIND",
        "RELEASEDESK_METRICS_BIND",
        "RELEASEDESK_PUBLIC_URL",
        "RELEASEDESK_SUPPORT_EMAIL",
        "RELEASEDESK_NO_WORKER",
        "RELEASEDESK_MAIL_DIR",
        "RELEASEDESK_WORKER_LEASE_SECS",
        "RELEASEDESK_WORKER_POLL_MS",
        "MAIL_FROM",
        "LOG_FORMAT",
        "RUST_LOG",
    ] {
        env.push((name, ""));
    }
    let (out, _) = finish(command(&["serve"], &env));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("DATABASE_URL names the SQLite file"),
        "every empty setting takes its default; serve stops only at the database: {stderr}"
    );
    // And an empty DATABASE_URL is the default database, as documented.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(&["migrate"], &[("DATABASE_URL", "")]);
    cmd.current_dir(dir.path());
    let (out, _) = finish(cmd);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(dir.path().join("releasedesk.db").exists());
}

#[test]
fn a_bad_smtp_tls_parameter_lists_the_accepted_values_and_hides_the_password() {
    let (out, _) = finish(command(
        &["serve"],
        &[(
            "SMTP_URL",
            "smtp://mailer:s3cret@mail.example:587?tls=bogus",
        )],
    ));
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with(
            "error: invalid SMTP_URL (--smtp-url): the tls parameter accepts required (STARTTLS, \
             refuse a server without it) or opportunistic (STARTTLS when offered), not 'bogus'"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[test]
fn with_json_errors_are_one_json_object_too() {
    let (_dir, url) = unopenable_sqlite();
    let (out, _) = finish(command(
        &[
            "env",
            "create",
            "--name",
            "Acme",
            "--notify-email",
            "ops@acme.example",
            "--json",
        ],
        &[("DATABASE_URL", &url)],
    ));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("DATABASE_URL names the SQLite file"),
        "{v}"
    );
    assert_eq!(v.as_object().unwrap().len(), 1, "{v}");

    // A refused value, before the command even runs.
    let (out, _) = finish(command(
        &[
            "agent", "add", "--env", "x", "--name", "Y", "--status", "asleep", "--json",
        ],
        &[],
    ));
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(
        v,
        serde_json::json!({ "error": "invalid --status: 'asleep' is not one of: active, draft, paused" })
    );
}

#[test]
fn json_is_offered_by_admin_commands_and_every_flag_is_described() {
    for service in ["serve", "demo", "worker"] {
        let (out, _) = finish(command(&[service, "--help"], &[]));
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{help}");
        assert!(!help.contains("--json"), "{service}: {help}");
    }
    for admin in [
        vec!["migrate"],
        vec!["env", "create"],
        vec!["token", "issue"],
        vec!["token", "revoke"],
        vec!["phone", "add"],
        vec!["agent", "add"],
        vec!["staff", "add"],
    ] {
        let mut args = admin.clone();
        args.push("--help");
        let (out, _) = finish(command(&args, &[]));
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(help.contains("--json"), "{admin:?}: {help}");
        // An option's description follows on its line (after two spaces) or, in long help,
        // on the next line, indented.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let option = line.trim_start();
            if option.starts_with("--") || option.starts_with("-h,") {
                let same_line = option
                    .split_once("  ")
                    .is_some_and(|(_, d)| !d.trim().is_empty());
                let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
                assert!(
                    same_line || (!next.is_empty() && !next.starts_with('-')),
                    "{admin:?}: `{option}` has no description"
                );
            }
        }
    }
}

#[test]
fn admin_commands_log_no_migrations_and_logs_have_no_colour_when_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let (out, _) = finish(command(
        &[
            "env",
            "create",
            "--name",
            "Acme",
            "--notify-email",
            "ops@acme.example",
        ],
        &[("DATABASE_URL", &url)],
    ));
    assert!(out.status.success());
    assert_eq!(
        stderr_of(&out),
        "",
        "an admin command prints its line, no logs"
    );

    // A service logs, once for all migrations, and without ANSI escapes into a pipe.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("b.db").display());
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mail = dir.path().join("mail").display().to_string();
    let mut cmd = command(
        &["serve"],
        &[
            ("DATABASE_URL", &url),
            ("RELEASEDESK_BIND", &bind),
            ("RELEASEDESK_MAIL_DIR", &mail),
        ],
    );
    cmd.stdout(Stdio::null());
    let child = Running(cmd.spawn().unwrap());
    wait_ready(port);
    let stderr = stop(child);
    assert!(!stderr.contains('\u{1b}'), "no colour codes: {stderr:?}");
    assert_eq!(
        stderr.matches("database migrated").count(),
        1,
        "migrations logged once: {stderr}"
    );
    assert!(!stderr.contains("Applying migration"), "{stderr}");
}

/// The status of `GET path` on 127.0.0.1:`port`, or `None` when nothing answers (a plain
/// HTTP/1.0 request, so that synchronous tests need no HTTP client).
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(port, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, then the process's stderr once it exited (cleanly: graceful shutdown exits 0).
fn stop(mut running: Running) -> String {
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = running.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = running.0.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit {status}: {stderr}");
    stderr
}

/// One sample of a Prometheus text scrape: `name{labels}` matched on the labels given (others
/// ignored). `None` when no such series is there.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let has = |k: &str, v: &str| {
                label_text
                    .split("\",")
                    .map(|kv| kv.trim_end_matches('"'))
                    .any(|kv| kv == format!("{k}=\"{v}"))
            };
            labels
                .iter()
                .all(|(k, v)| has(k, v))
                .then(|| value.parse().unwrap())
        })
}

/// `promtool check metrics` on a scrape. Outside CI a missing promtool skips the check with a
/// note; under `CI=true` it fails (`.ci/run` installs Debian's `prometheus` package for it).
fn promtool_check(scrape: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ci => {
            eprintln!(
                "promtool is not installed: skipping `promtool check metrics` (apt-get install prometheus)"
            );
            return;
        }
        Err(e) => panic!("promtool must run here (CI installs Debian's prometheus package): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Real traffic against `serve` (no worker, so the outbox backlog stays), then two scrapes:
/// the request is counted by its route template, the backlog and the pending request are seen,
/// the oldest pending request's age grows, and the text passes `promtool check metrics`.
async fn metrics_move_with_real_traffic(db: TestDb) {
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
    store.close().await;

    let (port, metrics_port) = (free_port(), free_port());
    let mail = tempfile::tempdir().unwrap();
    let server = spawn(
        &db.url,
        &["serve"],
        &[
            ("RELEASEDESK_BIND", format!("127.0.0.1:{port}")),
            (
                "RELEASEDESK_METRICS_BIND",
                format!("127.0.0.1:{metrics_port}"),
            ),
            ("RELEASEDESK_MAIL_DIR", mail.path().display().to_string()),
            (
                "RELEASEDESK_SUPPORT_EMAIL",
                "support@releasedesk.example".into(),
            ),
            ("RELEASEDESK_NO_WORKER", "yes".into()),
        ],
    );
    tokio::task::spawn_blocking(move || wait_ready(port))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let created = client
        .post(format!(
            "http://127.0.0.1:{port}/api/v1/phone-numbers/{}/request-release",
            number.id
        ))
        .bearer_auth(token.token.expose())
        .json(&serde_json::json!({ "reason": "We moved this line to the new PBX last month." }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let scrape = || async {
        let res = client
            .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        res.text().await.unwrap()
    };
    let first = scrape().await;
    let route = "/api/v1/phone-numbers/{phone_number_id}/request-release";
    assert_eq!(
        sample(
            &first,
            "releasedesk_http_requests_total",
            &[("method", "POST"), ("route", route), ("status", "201")]
        ),
        Some(1.0),
        "{first}"
    );
    assert_eq!(
        sample(
            &first,
            "releasedesk_http_request_duration_seconds_count",
            &[("route", route), ("status", "201")]
        ),
        Some(1.0)
    );
    assert!(
        !first.contains(&number.id.to_string()),
        "no raw ids in labels"
    );
    assert_eq!(
        sample(
            &first,
            "releasedesk_outbox_rows",
            &[("kind", "email.request_created"), ("state", "pending")]
        ),
        Some(1.0),
        "the support email waits in the outbox: {first}"
    );
    assert_eq!(
        sample(
            &first,
            "releasedesk_outbox_rows",
            &[("kind", "email.request_created"), ("state", "dead")]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &first,
            "releasedesk_release_requests_open",
            &[("status", "pending")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &first,
            "releasedesk_transitions_total",
            &[("status", "pending")]
        ),
        Some(1.0)
    );
    let backend = match db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(
        sample(&first, "releasedesk_build_info", &[("backend", backend)]),
        Some(1.0)
    );
    assert!(sample(&first, "releasedesk_db_pool_max_connections", &[]).unwrap() >= 1.0);
    let age_before = sample(
        &first,
        "releasedesk_oldest_pending_request_age_seconds",
        &[],
    )
    .unwrap();
    promtool_check(&first);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = scrape().await;
    let age_after = sample(
        &second,
        "releasedesk_oldest_pending_request_age_seconds",
        &[],
    )
    .unwrap();
    assert!(
        age_after >= age_before + 1.0,
        "the oldest pending request ages between scrapes: {age_before} then {age_after}"
    );
    assert!(
        sample(&second, "releasedesk_outbox_oldest_due_age_seconds", &[]).unwrap() >= 1.0,
        "nobody works the outbox: its oldest due row is late"
    );
    promtool_check(&second);

    // A worker of its own, with its own /metrics: it delivers the backlog and counts it.
    let worker_port = free_port();
    let worker = spawn(
        &db.url,
        &["worker"],
        &[
            (
                "RELEASEDESK_METRICS_BIND",
                format!("127.0.0.1:{worker_port}"),
            ),
            ("RELEASEDESK_MAIL_DIR", mail.path().display().to_string()),
            ("RELEASEDESK_WORKER_POLL_MS", "50".into()),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let worked = loop {
        if let Ok(res) = client
            .get(format!("http://127.0.0.1:{worker_port}/metrics"))
            .send()
            .await
        {
            let text = res.text().await.unwrap();
            if sample(
                &text,
                "releasedesk_outbox_attempts_total",
                &[("kind", "email.request_created"), ("outcome", "completed")],
            ) == Some(1.0)
            {
                break text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the worker never delivered the email"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    promtool_check(&worked);
    let after = scrape().await;
    assert_eq!(
        sample(
            &after,
            "releasedesk_outbox_rows",
            &[("kind", "email.request_created"), ("state", "pending")]
        ),
        Some(0.0),
        "the backlog is gone: {after}"
    );
    assert_eq!(
        sample(&after, "releasedesk_outbox_oldest_due_age_seconds", &[]),
        Some(0.0)
    );
    let files: Vec<String> = std::fs::read_dir(mail.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].contains("-request_created-") && files[0].ends_with(".eml"),
        "{files:?}"
    );
    tokio::task::spawn_blocking(move || {
        stop(worker);
        stop(server)
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn sqlite_metrics_move_with_real_traffic() {
    metrics_move_with_real_traffic(TestDb::new(Backend::Sqlite).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_metrics_move_with_real_traffic() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        metrics_move_with_real_traffic(db).await;
    }
}

/// What `demo` printed: its `export` lines and the staff sign-in.
struct DemoRun {
    running: Running,
    exports: std::collections::HashMap<String, String>,
    comments: std::collections::HashMap<String, String>,
    password: String,
}

/// Starts `demo` and reads its stdout up to "Stop with Ctrl-C.".
fn start_demo(db: &str, port: u16, metrics_port: u16, mail: &std::path::Path) -> DemoRun {
    use std::io::BufRead;
    let mut cmd = command(
        &["demo"],
        &[
            ("DATABASE_URL", db),
            ("RELEASEDESK_BIND", &format!("127.0.0.1:{port}")),
            (
                "RELEASEDESK_METRICS_BIND",
                &format!("127.0.0.1:{metrics_port}"),
            ),
            ("RELEASEDESK_MAIL_DIR", &mail.display().to_string()),
        ],
    );
    cmd.stderr(Stdio::null());
    let mut running = Running(cmd.spawn().unwrap());
    let stdout = running.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, even past the walk-through: a reader that left early would close
        // the pipe under the demo's feet.
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("demo printed no walk-through: {printed:#?}"));
        let last = line.starts_with("Stop with Ctrl-C.");
        printed.push(line);
        if last {
            break;
        }
    }
    let mut exports = std::collections::HashMap::new();
    let mut comments = std::collections::HashMap::new();
    let mut password = String::new();
    for line in &printed {
        if let Some(export) = line.trim().strip_prefix("export ") {
            let (assignment, comment) = export.split_once('#').unwrap_or((export, ""));
            let (k, v) = assignment.trim().split_once('=').unwrap();
            exports.insert(k.to_owned(), v.to_owned());
            comments.insert(k.to_owned(), comment.trim().to_owned());
        }
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = p.trim().to_owned();
        }
    }
    for k in ["BASE", "TOKEN", "FREE_NUMBER", "IN_USE_NUMBER", "AGENT"] {
        assert!(exports.contains_key(k), "demo printed no {k}: {printed:#?}");
    }
    assert_eq!(password.len(), 16, "{printed:#?}");
    DemoRun {
        running,
        exports,
        comments,
        password,
    }
}

/// The README's walk-through ("The API, walked through with curl"), call for call, with the
/// answers the README documents.
async fn readme_walkthrough(run: &DemoRun) {
    let x = |k: &str| run.exports[k].clone();
    let (base, token) = (x("BASE"), x("TOKEN"));
    let (free, in_use, agent) = (x("FREE_NUMBER"), x("IN_USE_NUMBER"), x("AGENT"));
    let client = reqwest::Client::new();
    let call = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        (status, body)
    };
    let get = |path: String| client.get(format!("{base}{path}")).bearer_auth(&token);
    let post = |path: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
    };
    let free_reason = serde_json::json!({ "reason": "We migrated outbound calling to a new toll-free number and no longer need this DID." });
    let in_use_reason =
        serde_json::json!({ "reason": "The front desk line is moving to the new PBX next week." });

    let (status, numbers) = call(get("/phone-numbers".into())).await;
    assert_eq!(status, 200, "{numbers}");
    let (status, body) = call(post(
        format!("/phone-numbers/{free}/request-release"),
        free_reason.clone(),
    ))
    .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (201, Some("pending")),
        "{body}"
    );
    let (status, body) = call(post(
        format!("/phone-numbers/{free}/request-release"),
        free_reason,
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("RELEASE_ALREADY_PENDING"))
    );
    let (status, body) = call(post(
        format!("/phone-numbers/{in_use}/request-release"),
        in_use_reason.clone(),
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("PHONE_NUMBER_IN_USE")),
        "{body}"
    );
    let (status, body) = call(
        client
            .put(format!("{base}/agents/{agent}/calling"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "direction": "inbound", "phone_number_ids": [] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(post(
        format!("/phone-numbers/{in_use}/request-release"),
        in_use_reason,
    ))
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = call(get(
        "/phone-numbers/release-requests?status=pending&limit=2".into(),
    ))
    .await;
    assert_eq!(status, 200);
    let (status, list) = call(get(format!(
        "/phone-numbers/release-requests?phone_number_id={free}&status=pending"
    )))
    .await;
    assert_eq!(status, 200);
    let req = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(get(format!("/phone-numbers/release-requests/{req}")))
            .await
            .0,
        200
    );
    let cancel = || {
        client
            .post(format!(
                "{base}/phone-numbers/release-requests/{req}/cancel"
            ))
            .bearer_auth(&token)
    };
    let (status, body) = call(cancel()).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("cancelled"))
    );
    let (status, body) = call(cancel()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("RELEASE_REQUEST_NOT_PENDING"))
    );
    assert_eq!(call(get("/agents".into())).await.0, 200);
    let root = base.trim_end_matches("/api/v1");
    assert_eq!(
        call(client.get(format!("{base}/openapi.json"))).await.0,
        200,
        "{root}"
    );
    let (status, body) = call(client.get(format!("{base}/phone-numbers"))).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("UNAUTHORIZED")));
    let (status, body) = call(
        client
            .post(format!("{base}/phone-numbers/{free}/request-release"))
            .bearer_auth(&token)
            .body("reason=x"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("UNSUPPORTED_MEDIA_TYPE"))
    );
}

/// Signs in to the console as a browser would (the sign-in form's CSRF token, its cookie);
/// `true` when the console let the person in (a redirect away from the sign-in page).
async fn console_sign_in(root: &str, email: &str, password: &str) -> bool {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{root}/console/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).expect("a csrf_token field") + marker.len();
    let csrf = &page[start..start + page[start..].find('"').unwrap()];
    let encode = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let res = client
        .post(format!("{root}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email={}&password={}&csrf_token={}",
            encode(email),
            encode(password),
            encode(csrf)
        ))
        .send()
        .await
        .unwrap();
    let location = res
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    res.status() == 303 && !location.starts_with("/console/login")
}

/// `demo` twice on one database, the README's walk-through after each: the second run finds
/// (or makes) a free number, a number held by an active agent and that agent, describes them
/// as they are now, and adds no second staff account.
async fn demo_twice_then_the_readme_walkthrough_answers_as_documented(db: TestDb) {
    let mail = tempfile::tempdir().unwrap();
    let mut seen_numbers = Vec::new();
    for round in 0..2 {
        let (port, metrics_port) = (free_port(), free_port());
        let run = tokio::task::spawn_blocking({
            let (url, mail) = (db.url.clone(), mail.path().to_owned());
            move || start_demo(&url, port, metrics_port, &mail)
        })
        .await
        .unwrap();
        assert!(
            run.comments["IN_USE_NUMBER"].contains("held by the active agent \"Front desk\""),
            "round {round}: {:?}",
            run.comments
        );
        assert!(run.comments["AGENT"].starts_with("\"Front desk\" (active"));
        assert!(run.comments["FREE_NUMBER"].contains("no agent holds it"));
        readme_walkthrough(&run).await;
        let root = run.exports["BASE"].trim_end_matches("/api/v1").to_owned();
        assert!(
            console_sign_in(&root, "demo@releasedesk.local", &run.password).await,
            "round {round}: the printed staff sign-in works"
        );
        seen_numbers.push((
            run.exports["FREE_NUMBER"].clone(),
            run.exports["IN_USE_NUMBER"].clone(),
        ));
        assert!(!run.password.is_empty());
        tokio::task::spawn_blocking(move || stop(run.running))
            .await
            .unwrap();
    }
    // The free number was freed again by the cancel; the in-use number now has a pending
    // request, so the second run needed a fresh one.
    assert_eq!(seen_numbers[0].0, seen_numbers[1].0);
    assert_ne!(seen_numbers[0].1, seen_numbers[1].1);
    use sea_orm::ConnectionTrait;
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    let staff: i64 = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "SELECT COUNT(*) FROM staff_users",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(
        staff, 1,
        "one demo staff account, however often the demo runs"
    );
    let _ = conn.close().await;
}

#[tokio::test]
async fn sqlite_demo_twice_then_the_readme_walkthrough_answers_as_documented() {
    demo_twice_then_the_readme_walkthrough_answers_as_documented(
        TestDb::new(Backend::Sqlite).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn postgres_demo_twice_then_the_readme_walkthrough_answers_as_documented() {
    if let Some(db) = TestDb::new(Backend::Postgres).await {
        demo_twice_then_the_readme_walkthrough_answers_as_documented(db).await;
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
