//! Test support shared by releasedesk's test harnesses: a fresh database per test on SQLite or
//! PostgreSQL, test logs behind `TEST_LOG`, and an in-process SMTP server ([`smtp`]).
//!
//! A dev-dependency only: nothing here belongs in a running service.

pub mod smtp;

use sea_orm::ConnectionTrait;

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test: a SQLite file in a temporary folder, or a new
/// PostgreSQL database on the `TEST_DATABASE_URL` server, dropped with the `TestDb`.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    /// Holds the SQLite file's folder until the test ends.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: the server URL and the database made for this test, dropped at the end.
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// `None` when the backend is not available here (PostgreSQL without `TEST_DATABASE_URL`
    /// outside CI). In CI a missing PostgreSQL panics: see [`test_database_url`].
    pub async fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
                Some(Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    pg_drop: None,
                })
            }
            Backend::Postgres => {
                let admin_url = test_database_url()?;
                let name = format!("rd_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(admin_url.as_str())
                    .await
                    .unwrap_or_else(|e| panic!("TEST_DATABASE_URL does not answer: {e}"));
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                Some(Self {
                    url: url.to_string(),
                    backend,
                    _dir: None,
                    pg_drop: Some((admin_url, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_drop.take() {
            // Drop may run inside the test's runtime, which cannot be blocked on: use a small
            // runtime of its own, on a thread of its own. FORCE ends sessions still open.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async move {
                    let admin = sea_orm::Database::connect(admin_url.as_str()).await.ok()?;
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// `TEST_DATABASE_URL`, or `None` (with a note on stderr) when it is unset or empty. Under
/// `CI=true` (or `CI=1`) a missing URL panics instead: the PostgreSQL variants must fail in
/// CI rather than pass by doing nothing. This is the only place that rule is written.
pub fn test_database_url() -> Option<String> {
    url_or_skip(
        std::env::var("TEST_DATABASE_URL").ok(),
        std::env::var("CI").ok(),
    )
}

fn url_or_skip(test_database_url: Option<String>, ci: Option<String>) -> Option<String> {
    match test_database_url {
        Some(url) if !url.is_empty() => Some(url),
        _ if ci.is_some_and(|v| v == "true" || v == "1") => {
            panic!("CI is set but TEST_DATABASE_URL is not: the PostgreSQL tests cannot run")
        }
        _ => {
            eprintln!("TEST_DATABASE_URL is not set: skipping the PostgreSQL variant");
            None
        }
    }
}

/// Logs to the test output only with `TEST_LOG` set (zero2prod's habit): quiet by default.
pub fn init_test_tracing() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,sqlx=warn")
            .with_test_writer()
            .try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::url_or_skip;

    #[test]
    fn a_set_url_is_used_in_and_out_of_ci() {
        let url = "postgres://postgres@127.0.0.1/test".to_owned();
        assert_eq!(url_or_skip(Some(url.clone()), None), Some(url.clone()));
        assert_eq!(
            url_or_skip(Some(url.clone()), Some("true".into())),
            Some(url)
        );
    }

    #[test]
    fn a_missing_url_skips_outside_ci() {
        assert_eq!(url_or_skip(None, None), None);
        assert_eq!(url_or_skip(Some(String::new()), Some("false".into())), None);
    }

    #[test]
    #[should_panic(expected = "TEST_DATABASE_URL")]
    fn a_missing_url_fails_in_ci() {
        url_or_skip(None, Some("true".into()));
    }

    #[test]
    #[should_panic(expected = "TEST_DATABASE_URL")]
    fn an_empty_url_fails_in_ci() {
        url_or_skip(Some(String::new()), Some("1".into()));
    }
}
