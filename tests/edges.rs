//! The server as an attacker meets it: stalled and trickling sockets, more idle connections than
//! the server allows or has descriptors for, bursts of wrong passwords across several
//! instances, forged `X-Forwarded-For`, and 300 hostile sign-ins at once against a spawned
//! `releasedesk serve` whose memory is read from `/proc`.
//!
//! Each test runs on SQLite and on PostgreSQL. Timeouts are set short where a test only needs
//! *a* limit; one test waits out the documented default header timeout.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestApp, TestDb};
use releasedesk_domain::EmailAddress;
use releasedesk_server::HttpLimits;
use releasedesk_store::{AuditAction, AuditFilter, Store};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs each named test (an `async fn(Backend)`) on SQLite and on PostgreSQL.
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
    a_half_sent_request_line_is_closed_within_the_default_header_timeout,
    headers_trickled_a_line_every_two_seconds_are_cut_off,
    an_idle_keep_alive_connection_is_closed,
    a_body_trickled_a_byte_every_two_seconds_is_cut_off,
    idle_connections_beyond_the_bound_do_not_keep_livez_out,
    idle_connections_beyond_the_descriptor_limit_do_not_keep_livez_out,
    a_burst_across_two_instances_is_counted_once,
    x_forwarded_for_counts_only_from_a_trusted_proxy,
    memory_stays_bounded_through_300_parallel_hostile_sign_ins,
);

const STAFF_EMAIL: &str = "ada@support.example";
const STAFF_PASSWORD: &str = "correct horse battery staple";
const WRONG: &str = "wrong password!!";
/// What the server may take beyond a limit before the test calls the socket held: scheduling
/// on a loaded two-core machine, not a speed target.
const MARGIN: Duration = Duration::from_secs(3);

async fn spawn(backend: Backend, limits: HttpLimits) -> TestApp {
    let app = TestApp::spawn_with(backend, |c| {
        c.run_worker = false;
        c.http = limits;
    })
    .await;
    app.expect("TEST_DATABASE_URL")
}

fn short(header: u64, body: u64) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_secs(header),
        body_timeout: Duration::from_secs(body),
        ..HttpLimits::default()
    }
}

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

/// Reads until the server closes the socket (or resets it); how long that took, and what it
/// sent. Gives up after `patience`, which the caller's assertion then reports.
async fn until_closed(
    stream: &mut TcpStream,
    since: Instant,
    patience: Duration,
) -> (Duration, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = since + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    (since.elapsed(), String::from_utf8_lossy(&got).into_owned())
}

async fn livez(base: &str) -> StatusCode {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{base}/livez"))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or_else(|e| panic!("/livez did not answer: {e}"))
}

async fn a_half_sent_request_line_is_closed_within_the_default_header_timeout(b: Backend) {
    let app = spawn(b, HttpLimits::default()).await;
    let limit = HttpLimits::default().header_timeout;
    assert_eq!(limit, Duration::from_secs(10), "the documented default");
    let mut stalled = TcpStream::connect(addr_of(&app.base)).await.unwrap();
    let since = Instant::now();
    stalled.write_all(b"GET /livez HT").await.unwrap();
    assert_eq!(livez(&app.base).await, StatusCode::OK, "answers meanwhile");

    let (lived, _) = until_closed(&mut stalled, since, limit + MARGIN * 2).await;
    eprintln!("half-sent request line: closed after {lived:?} (limit {limit:?})");
    assert!(lived <= limit + MARGIN, "held for {lived:?}");
    assert_eq!(livez(&app.base).await, StatusCode::OK);
}

async fn headers_trickled_a_line_every_two_seconds_are_cut_off(b: Backend) {
    let app = spawn(b, short(3, 30)).await;
    let limit = Duration::from_secs(3);
    let slow = TcpStream::connect(addr_of(&app.base)).await.unwrap();
    let since = Instant::now();
    let (mut reader, mut writer) = slow.into_split();
    // Every line is on time for a per-line limit; the headers as a whole never are.
    let trickle = tokio::spawn(async move {
        writer.write_all(b"GET /livez HTTP/1.1\r\n").await?;
        for i in 0..30 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            writer
                .write_all(format!("X-Slow-{i}: yes\r\n").as_bytes())
                .await?;
        }
        Ok::<_, std::io::Error>(())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(livez(&app.base).await, StatusCode::OK, "answers meanwhile");

    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit + MARGIN * 2, async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let lived = since.elapsed();
    trickle.abort();
    eprintln!("headers trickled every 2 s: closed after {lived:?} (limit {limit:?})");
    assert!(
        closed.is_ok() && lived <= limit + MARGIN,
        "held for {lived:?}"
    );
}

async fn an_idle_keep_alive_connection_is_closed(b: Backend) {
    let app = spawn(b, short(2, 30)).await;
    let limit = Duration::from_secs(2);
    let mut conn = TcpStream::connect(addr_of(&app.base)).await.unwrap();
    conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The response is in; the connection is kept alive and now sits idle.
    let since = Instant::now();
    let (lived, more) = until_closed(&mut conn, since, limit + MARGIN * 2).await;
    eprintln!("idle keep-alive connection: closed after {lived:?} (limit {limit:?})");
    assert!(more.is_empty(), "{more}");
    assert!(lived <= limit + MARGIN, "held for {lived:?}");
}

async fn a_body_trickled_a_byte_every_two_seconds_is_cut_off(b: Backend) {
    let app = spawn(b, short(10, 3)).await;
    let limit = Duration::from_secs(3);
    let mut slow = TcpStream::connect(addr_of(&app.base)).await.unwrap();
    let since = Instant::now();
    slow.write_all(
        b"POST /console/login HTTP/1.1\r\nHost: x\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ne",
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = slow.split();
    let trickle = async {
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if writer.write_all(b"m").await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(limit + MARGIN * 2, reader.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        (since.elapsed(), String::from_utf8_lossy(&got).into_owned())
    };
    let watch = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        livez(&app.base).await
    };
    let ((lived, answer), during, ()) = tokio::select! {
        out = async { tokio::join!(read, watch) } => (out.0, out.1, ()),
        () = trickle => panic!("the server read a trickled body for a minute"),
    };
    eprintln!("body trickled every 2 s: closed after {lived:?} (limit {limit:?})");
    assert_eq!(during, StatusCode::OK, "answers meanwhile");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(lived <= limit + MARGIN, "held for {lived:?}");
}

async fn idle_connections_beyond_the_bound_do_not_keep_livez_out(b: Backend) {
    let app = spawn(
        b,
        HttpLimits {
            max_connections: 20,
            ..HttpLimits::default()
        },
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(TcpStream::connect(addr_of(&app.base)).await.unwrap());
    }
    // Well within the header timeout (10 s), so it is the bound that makes room, by closing
    // connections that sit idle, not the timeout.
    assert_eq!(livez(&app.base).await, StatusCode::OK);
    let mut closed = 0;
    for conn in &mut idle {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(20), conn.read(&mut buf)).await
        {
            closed += 1;
        }
    }
    eprintln!("60 idle connections against a bound of 20: {closed} closed by the server");
    assert!(closed >= 20, "only {closed} idle connections were closed");
    assert_eq!(livez(&app.base).await, StatusCode::OK);
}

async fn idle_connections_beyond_the_descriptor_limit_do_not_keep_livez_out(b: Backend) {
    let db = TestDb::new(b).await.expect("TEST_DATABASE_URL");
    let port = free_port();
    // 200 descriptors, the default bound of 1024 connections: the process runs out first.
    let mut server = Server::spawn(&db.url, port, &[], Some(200));
    let base = server.wait_ready().await;
    let mut idle = Vec::new();
    for _ in 0..250 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    assert_eq!(livez(&base).await, StatusCode::OK);
    // More idle connections while it is at its limit, and it still answers.
    for _ in 0..250 {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    assert_eq!(livez(&base).await, StatusCode::OK);
    assert!(server.is_running());
    drop(idle);
}

async fn a_burst_across_two_instances_is_counted_once(b: Backend) {
    let app = spawn(b, HttpLimits::default()).await;
    add_staff(&app.store).await;
    // A second instance on the same database, as a scaled-out deployment runs.
    let mail = tempfile::tempdir().unwrap();
    let mut config =
        releasedesk_server::ServeConfig::for_tests(app.db.url.clone(), PathBuf::from(mail.path()));
    config.run_worker = false;
    let second = releasedesk_server::start(config).await.unwrap();
    let bases = [app.base.clone(), second.base_url()];

    let client = client_at(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (client, base) = (client.clone(), bases[i % 2].clone());
            tokio::spawn(async move { sign_in(&client, &base, STAFF_EMAIL, WRONG).await })
        })
        .collect();
    let answers = futures::future::try_join_all(tasks).await.unwrap();
    let failed = answers.iter().filter(|a| **a == Answer::Failed).count();
    let locked = answers.iter().filter(|a| **a == Answer::Locked).count();
    let busy = answers.iter().filter(|a| **a == Answer::Busy).count();
    eprintln!("burst of 40 over two instances: {failed} failed, {locked} locked, {busy} busy");
    assert_eq!(failed + locked + busy, 40, "no errors: {answers:?}");
    assert_eq!(
        checked_failures(&app.store).await,
        5,
        "exactly the limit of passwords were checked"
    );
    assert_eq!(
        sign_in(&client, &bases[1], STAFF_EMAIL, STAFF_PASSWORD).await,
        Answer::Locked,
        "the right password after the burst is refused too"
    );
    second.shutdown().await;
}

async fn x_forwarded_for_counts_only_from_a_trusted_proxy(b: Backend) {
    // Not trusted: the header is ignored, the address is the peer's.
    let app = spawn(b, HttpLimits::default()).await;
    add_staff(&app.store).await;
    let client = client_at(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let forged = sign_in_with(
        &client,
        &app.base,
        STAFF_EMAIL,
        STAFF_PASSWORD,
        Some("198.51.100.7"),
    )
    .await;
    assert_eq!(forged, Answer::SignedIn);
    assert_eq!(last_sign_in_address(&app.store).await, "127.0.0.1");

    // Trusted (the test client's loopback address is the proxy): the right-most hop counts.
    let app = TestApp::spawn_with(b, |c| {
        c.run_worker = false;
        c.trusted_proxies = "127.0.0.0/8".parse().unwrap();
    })
    .await
    .unwrap();
    add_staff(&app.store).await;
    let proxied = sign_in_with(
        &client,
        &app.base,
        STAFF_EMAIL,
        STAFF_PASSWORD,
        Some("203.0.113.66, 198.51.100.7"),
    )
    .await;
    assert_eq!(proxied, Answer::SignedIn);
    assert_eq!(last_sign_in_address(&app.store).await, "198.51.100.7");
}

async fn memory_stays_bounded_through_300_parallel_hostile_sign_ins(b: Backend) {
    let db = TestDb::new(b).await.expect("TEST_DATABASE_URL");
    let port = free_port();
    let server = Server::spawn(&db.url, port, &[], None);
    let base = server.wait_ready().await;
    let before = server.memory_kib("VmRSS");

    // 300 at once, each from an address and for an account of its own, so the throttle stops
    // none of them: every one costs a password check. Each retries when told "busy" (after the
    // Retry-After it is given), as a determined attacker would, until its password was checked.
    let tasks: Vec<_> = (0..300u32)
        .map(|i| {
            let from = IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8));
            let base = base.clone();
            tokio::spawn(async move {
                let client = client_at(from);
                let email = format!("guess{i}@support.example");
                let mut busy = 0u32;
                loop {
                    match sign_in(&client, &base, &email, WRONG).await {
                        Answer::Busy => {
                            busy += 1;
                            // Retry-After says 2 s; spread the retries over the next second.
                            let jitter = u64::from(i * 37 % 1000);
                            tokio::time::sleep(Duration::from_millis(2000 + jitter)).await;
                        }
                        other => return (other, busy),
                    }
                }
            })
        })
        .collect();
    let answers = futures::future::try_join_all(tasks).await.unwrap();
    let peak = server.memory_kib("VmHWM");
    let after = server.memory_kib("VmRSS");
    let busy: u32 = answers.iter().map(|(_, busy)| busy).sum();
    eprintln!(
        "300 parallel hostile sign-ins: RSS {} MiB before, peak {} MiB, {} MiB after; \
         {busy} 'busy' answers retried",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        answers.iter().all(|(a, _)| *a == Answer::Failed),
        "every attempt was checked and failed: {:?}",
        answers
            .iter()
            .filter(|(a, _)| *a != Answer::Failed)
            .collect::<Vec<_>>()
    );
    assert!(peak < 150 * 1024, "peak RSS {} MiB", peak / 1024);
    assert_eq!(livez(&base).await, StatusCode::OK);
}

// --- helpers ---------------------------------------------------------------------------------

async fn add_staff(store: &Store) {
    releasedesk_console::create_staff(
        store,
        &EmailAddress::parse(STAFF_EMAIL).unwrap(),
        "Ada Reviewer",
        STAFF_PASSWORD,
    )
    .await
    .unwrap();
}

async fn checked_failures(store: &Store) -> usize {
    store
        .list_audit(&AuditFilter {
            action: Some(AuditAction::StaffSignInFailed),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

async fn last_sign_in_address(store: &Store) -> String {
    let events = store
        .list_audit(&AuditFilter {
            action: Some(AuditAction::StaffSignedIn),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(events[0].detail.as_deref().unwrap()).unwrap();
    detail["remote_addr"].as_str().unwrap().to_owned()
}

/// What a sign-in came back as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    SignedIn,
    Failed,
    Locked,
    Busy,
    Other(u16),
}

/// An HTTP client whose connections leave from `from` (any 127.0.0.0/8 address works on
/// loopback, so one test can be many clients).
fn client_at(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn sign_in(client: &reqwest::Client, base: &str, email: &str, password: &str) -> Answer {
    sign_in_with(client, base, email, password, None).await
}

/// One `POST /console/login`, with the double-submit token a browser would carry (any value
/// the cookie and the form agree on).
async fn sign_in_with(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> Answer {
    let token = "t".repeat(43);
    let mut req = client
        .post(format!("{base}/console/login"))
        .header("cookie", format!("rd_login_csrf={token}"))
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", &token),
        ]);
    if let Some(hops) = forwarded_for {
        req = req.header("x-forwarded-for", hops);
    }
    let res = req.send().await.expect("the sign-in is answered");
    let status = res.status();
    let cookies: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    match status {
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(res.headers().contains_key("retry-after"));
            Answer::Busy
        }
        StatusCode::SEE_OTHER if cookies.iter().any(|c| c.starts_with("rd_session=")) => {
            Answer::SignedIn
        }
        StatusCode::SEE_OTHER => {
            let flash = cookies
                .iter()
                .find_map(|c| c.strip_prefix("rd_flash="))
                .and_then(|c| c.split(';').next())
                .map(flash_text)
                .unwrap_or_default();
            if flash.starts_with("Too many failed sign-ins.") {
                Answer::Locked
            } else if flash.starts_with("That email and password do not match") {
                Answer::Failed
            } else {
                Answer::Other(303)
            }
        }
        other => Answer::Other(other.as_u16()),
    }
}

/// The text of a flash cookie (base64url of `{"kind":…,"text":…}`).
fn flash_text(value: &str) -> String {
    use base64::Engine;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary under test, built from this workspace once per test process (a no-op when it is
/// up to date).
fn releasedesk() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
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
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("debug")
            .join("releasedesk")
    })
    .clone()
}

/// A spawned `releasedesk serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `releasedesk serve` on `port`; with `max_files`, under that descriptor limit
    /// (`ulimit -n` in a shell that then becomes the server).
    fn spawn(db: &str, port: u16, env: &[(&str, &str)], max_files: Option<u32>) -> Server {
        let bin = releasedesk();
        let mut cmd = match max_files {
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" serve"))
                    .arg(&bin);
                c
            }
            None => {
                let mut c = Command::new(&bin);
                c.arg("serve");
                c
            }
        };
        let mail = std::env::temp_dir().join(format!("rd-edges-mail-{port}"));
        cmd.env("DATABASE_URL", db)
            .env("RELEASEDESK_BIND", format!("127.0.0.1:{port}"))
            .env("RELEASEDESK_MAIL_DIR", mail)
            .env("RELEASEDESK_NO_WORKER", "true")
            // Not every refused request: a flood of them is the point of some tests.
            .env("RUST_LOG", "warn,tower_http=off")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Server {
            child: cmd.spawn().expect("releasedesk starts"),
            port,
        }
    }

    /// Waits until `/readyz` answers 200; the base URL.
    async fn wait_ready(&self) -> String {
        let base = format!("http://127.0.0.1:{}", self.port);
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(res) = client.get(format!("{base}/readyz")).send().await
                && res.status() == StatusCode::OK
            {
                return base;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("releasedesk serve did not become ready");
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A memory figure of the process, in KiB, from `/proc/<pid>/status` (`VmRSS`: now,
    /// `VmHWM`: the peak so far).
    fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
