//! The real `releasedesk` binary, run as a separate process: built once per test process,
//! its admin commands, and `serve`/`worker` processes waited on and signalled.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

// ---- the binary ------------------------------------------------------------------------------

/// The binary under test, built from this workspace once per test process.
pub fn releasedesk() -> PathBuf {
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

/// An admin command's one JSON object.
pub fn cli(db: &str, args: &[&str], stdin: Option<&str>) -> Value {
    let mut child = Command::new(releasedesk())
        .args(args)
        .arg("--json")
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
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `releasedesk serve` (or `worker`) process; killed if the test ends without stopping it.
pub struct Process {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    pub fn serve(db: &str, env: &[(&str, String)]) -> Self {
        Self::spawn(db, "serve", env)
    }

    pub fn spawn(db: &str, command: &str, env: &[(&str, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("releasedesk.log");
        let mut cmd = Command::new(releasedesk());
        cmd.arg(command)
            .env("DATABASE_URL", db)
            .env("RELEASEDESK_BIND", format!("127.0.0.1:{port}"))
            .env("RELEASEDESK_MAIL_DIR", dir.path().join("mail"))
            .env("RELEASEDESK_SHUTDOWN_GRACE", "0s")
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("releasedesk starts");
        Self {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn api(&self) -> String {
        format!("{}/api/v1", self.base())
    }

    /// The last lines the process logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits for `/readyz` to answer 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self, within: Duration) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "releasedesk exited {status} before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok(res) = client.get(format!("{}/readyz", self.base())).send().await
                && res.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within {within:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} later:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, and a clean exit.
    pub async fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "exit {status}:\n{}", self.log_tail());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
