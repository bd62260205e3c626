//! The black-box test harness: a real server on a random loopback port, on a fresh database.
//!
//! Every integration test runs twice, on SQLite and on PostgreSQL, through [`backend_tests!`].
//! The database comes from `releasedesk_testkit::TestDb` (PostgreSQL from `TEST_DATABASE_URL`,
//! a fresh database per test, dropped after). Without it the PostgreSQL variant is skipped
//! locally, and **fails** in CI (`CI=true`), so CI cannot silently pass without PostgreSQL.

#![allow(dead_code)]

pub mod binary;
pub mod contract;

use std::path::PathBuf;

use releasedesk_domain::{
    AgentStatus, Direction, E164, EmailAddress, EnvironmentId, PhoneNumberId,
};
use releasedesk_server::{RunningServer, ServeConfig};
use releasedesk_store::{AuthContext, Store};
pub use releasedesk_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

/// Generates `mod sqlite { … }` and `mod postgres { … }` with one `#[tokio::test]` per named
/// test function (`async fn name(app: TestApp)` in the parent module).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::common::TestApp::spawn($crate::common::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// Seeded numbers of the main environment.
#[derive(Debug, Clone)]
pub struct Numbers {
    /// Not held by any agent.
    pub free: PhoneNumberId,
    pub free_e164: String,
    /// Another free one.
    pub free2: PhoneNumberId,
    /// Held by the active agent `front_desk`.
    pub in_use: PhoneNumberId,
    /// Held only by the paused agent `night_shift`.
    pub held_by_paused: PhoneNumberId,
}

pub struct TestApp {
    pub server: Option<RunningServer>,
    pub store: Store,
    pub db: TestDb,
    pub backend: Backend,
    pub api: String,
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    pub auth: AuthContext,
    pub env_id: EnvironmentId,
    pub numbers: Numbers,
    pub front_desk: releasedesk_domain::AgentId,
    pub night_shift: releasedesk_domain::AgentId,
    /// Another environment, its token and number.
    pub other_token: String,
    pub other_number: PhoneNumberId,
    pub other_agent: releasedesk_domain::AgentId,
    pub mail_dir: tempfile::TempDir,
}

impl TestApp {
    /// A server without the outbox worker: tests drive the worker themselves when they need it.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |c| c.run_worker = false).await
    }

    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut ServeConfig),
    ) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let mail_dir = tempfile::tempdir().expect("mail dir");
        let mut config = ServeConfig::for_tests(db.url.clone(), PathBuf::from(mail_dir.path()));
        configure(&mut config);
        let server = releasedesk_server::start(config)
            .await
            .expect("server starts");
        let store = server.store.clone();
        let base = server.base_url();

        let env = store
            .create_environment("Acme", &EmailAddress::parse("ops@acme.example").unwrap())
            .await
            .unwrap();
        let add = |n: &'static str| {
            let store = store.clone();
            async move {
                store
                    .add_phone_number(env.id, &E164::parse(n).unwrap())
                    .await
                    .unwrap()
                    .id
            }
        };
        let free = add("+15550000001").await;
        let free2 = add("+15550000002").await;
        let in_use = add("+15550000003").await;
        let held_by_paused = add("+15550000004").await;
        let front_desk = store
            .add_agent(
                env.id,
                "Front desk",
                AgentStatus::Active,
                Direction::Inbound,
                &[in_use],
            )
            .await
            .unwrap()
            .id;
        let night_shift = store
            .add_agent(
                env.id,
                "Night shift",
                AgentStatus::Paused,
                Direction::Outbound,
                &[held_by_paused],
            )
            .await
            .unwrap()
            .id;
        let issued = store.issue_token(env.id, Some("tests")).await.unwrap();
        let auth = store
            .authenticate(&issued.token.hash())
            .await
            .unwrap()
            .unwrap();

        let other = store
            .create_environment("Other", &EmailAddress::parse("ops@other.example").unwrap())
            .await
            .unwrap();
        let other_number = store
            .add_phone_number(other.id, &E164::parse("+15550000009").unwrap())
            .await
            .unwrap()
            .id;
        let other_agent = store
            .add_agent(
                other.id,
                "Theirs",
                AgentStatus::Draft,
                Direction::Inbound,
                &[],
            )
            .await
            .unwrap()
            .id;
        let other_token = store.issue_token(other.id, None).await.unwrap();

        Some(Self {
            api: format!("{base}/api/v1"),
            base,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            token: issued.token.expose().to_owned(),
            auth,
            env_id: env.id,
            numbers: Numbers {
                free,
                free_e164: "+15550000001".into(),
                free2,
                in_use,
                held_by_paused,
            },
            front_desk,
            night_shift,
            other_token: other_token.token.expose().to_owned(),
            other_number,
            other_agent,
            store,
            server: Some(server),
            backend,
            db,
            mail_dir,
        })
    }

    /// Adds another free number to the main environment.
    pub async fn add_number(&self, e164: &str) -> PhoneNumberId {
        self.store
            .add_phone_number(self.env_id, &E164::parse(e164).unwrap())
            .await
            .unwrap()
            .id
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api, path)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.client.get(self.url(path)).bearer_auth(&self.token)).await
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            self.client
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    pub async fn put_json(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(
            self.client
                .put(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    /// `POST /phone-numbers/{id}/request-release` with a valid reason, as `token`, not yet sent
    /// (a test that races it sends it from a task of its own: `tokio::spawn(send(…))`).
    pub fn release_request(
        &self,
        number: impl std::fmt::Display,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(&format!("/phone-numbers/{number}/request-release")))
            .bearer_auth(token)
            .json(&serde_json::json!({ "reason": "We no longer need this number for our agents." }))
    }

    /// `POST /phone-numbers/{id}/request-release` with a valid reason; returns the request id.
    pub async fn request_release(&self, number: PhoneNumberId) -> String {
        let (status, body) = send(self.release_request(number, &self.token)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    /// A second connection to the test database, for what the service does not expose.
    pub async fn raw_db(&self) -> sea_orm::DatabaseConnection {
        sea_orm::Database::connect(self.db.url.as_str())
            .await
            .unwrap()
    }

    pub async fn shutdown(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// An answer, checked against the OpenAPI document (see [`contract`]).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON; `Value::Null` when it is not JSON.
    pub json: Value,
}

/// Sends and returns the status and the JSON body (`Value::Null` when the body is not JSON).
/// An API response that the OpenAPI document does not describe fails the test.
pub async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let reply = send_full(req).await;
    (reply.status, reply.json)
}

/// [`send`], keeping the headers and the raw body.
pub async fn send_full(req: reqwest::RequestBuilder) -> Reply {
    let (client, request) = req.build_split();
    let request = request.expect("the request builds");
    let method = request.method().clone();
    let url = request.url().clone();
    let res = client.execute(request).await.expect("request is answered");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    contract::check(&method, &url, status, &headers, &text);
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

/// The reusable redactions of ids and times in API snapshots.
pub fn redact(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, val) in map.iter_mut() {
                    let is_id = k == "id" || k.ends_with("_id") || k == "next_cursor";
                    let is_time = k.ends_with("_at");
                    match val {
                        Value::String(_) if is_id => *val = Value::String("[id]".into()),
                        Value::String(_) if is_time => *val = Value::String("[time]".into()),
                        Value::Array(items) if k.ends_with("_ids") => {
                            for i in items.iter_mut() {
                                *i = Value::String("[id]".into());
                            }
                        }
                        _ => walk(val),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Runs an outbox worker on the app's database until nothing is due (release jobs and
/// emails), the way `releasedesk serve` would in the background.
pub async fn run_worker_until_idle(app: &TestApp) {
    let config = ServeConfig::for_tests(app.db.url.clone(), PathBuf::from(app.mail_dir.path()));
    let worker = releasedesk_server::app::build_worker(&app.store, &config, &app.base).unwrap();
    for _ in 0..20 {
        let done = worker.run_once().await.expect("worker pass");
        if done == 0 {
            return;
        }
    }
    panic!("the outbox did not drain in 20 passes");
}
