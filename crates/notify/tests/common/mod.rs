//! Test support: a fresh database per test (SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set) with a migrated store on it, a real SMTP server in the test
//! process whose answers a test scripts (both from `releasedesk-testkit`), and store fixtures.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use releasedesk_domain::{
    AgentStatus, Direction, E164, EmailAddress, OutboxId, PhoneNumberId, Reason, RequestId, StaffId,
};
use releasedesk_notify::{NotifyConfig, RecordingCarrier, Worker};
use releasedesk_store::{
    Actor, AuthContext, EnvironmentInfo, OutboxKind, OutboxRow, ReleaseRequest, Store, StoreOptions,
};
use releasedesk_testkit::Backend;

/// Runs an async test body once on SQLite and once on PostgreSQL, as `<name>::sqlite` and
/// `<name>::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::common::TestDb::sqlite().await;
                super::$name(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = $crate::common::TestDb::postgres().await else { return };
                super::$name(&db).await;
                db.finish().await;
            }
        }
    )*};
}

pub const PUBLIC_HOST: &str = "releasedesk.test";
pub const PUBLIC_URL: &str = "http://releasedesk.test:8080";
pub const SUPPORT_INBOX: &str = "support@releasedesk.test";

// ---- databases -------------------------------------------------------------------------

/// A fresh, migrated database for one test and a store on it.
pub struct TestDb {
    pub url: String,
    pub store: Store,
    /// The database itself, dropped (PostgreSQL) or deleted (SQLite) at the end of the test.
    db: releasedesk_testkit::TestDb,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        Self::new(Backend::Sqlite)
            .await
            .expect("SQLite is always available")
    }

    /// `None` (with a note on stderr) when `TEST_DATABASE_URL` is unset, except under CI, where
    /// a PostgreSQL test that cannot run is a failure rather than a silent pass.
    pub async fn postgres() -> Option<Self> {
        Self::new(Backend::Postgres).await
    }

    async fn new(backend: Backend) -> Option<Self> {
        releasedesk_testkit::init_test_tracing();
        let db = releasedesk_testkit::TestDb::new(backend).await?;
        let store = Store::connect(&db.url, StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        Some(Self {
            url: db.url.clone(),
            store,
            db,
        })
    }

    /// Another connection pool on the same database, as another process would have.
    pub async fn another_store(&self) -> Store {
        Store::connect(&self.url, StoreOptions::default())
            .await
            .unwrap()
    }

    /// A store that also emails the support inbox about new requests.
    pub async fn store_with_support_inbox(&self) -> Store {
        let options = StoreOptions {
            support_email: Some(EmailAddress::parse(SUPPORT_INBOX).unwrap()),
            ..StoreOptions::default()
        };
        Store::connect(&self.url, options).await.unwrap()
    }

    /// Closes the store, then drops the database.
    pub async fn finish(self) {
        self.store.close().await;
        drop(self.db);
    }
}

// ---- fixtures ----------------------------------------------------------------------------

pub struct Customer {
    pub env: EnvironmentInfo,
    pub auth: AuthContext,
}

/// An environment with a token, as a customer would have it.
pub async fn customer(store: &Store, notify_email: &str) -> Customer {
    let env = store
        .create_environment(
            "Acme Telephony",
            &EmailAddress::parse(notify_email).unwrap(),
        )
        .await
        .unwrap();
    let issued = store.issue_token(env.id, Some("tests")).await.unwrap();
    let auth = store
        .authenticate(&issued.token.hash())
        .await
        .unwrap()
        .unwrap();
    Customer { env, auth }
}

/// A number of the customer's, `+1555` and seven digits.
pub async fn number(store: &Store, customer: &Customer, n: u32) -> PhoneNumberId {
    let e164 = E164::parse(&format!("+1555{n:07}")).unwrap();
    store
        .add_phone_number(customer.env.id, &e164)
        .await
        .unwrap()
        .id
}

/// A draft agent holding `number`: it does not block approval, and its assignment must go
/// when the number is released.
pub async fn draft_agent_holding(store: &Store, customer: &Customer, number: PhoneNumberId) {
    store
        .add_agent(
            customer.env.id,
            "Night shift bot",
            AgentStatus::Draft,
            Direction::Inbound,
            &[number],
        )
        .await
        .unwrap();
}

pub async fn request(
    store: &Store,
    customer: &Customer,
    number: PhoneNumberId,
    reason: &str,
) -> ReleaseRequest {
    store
        .request_release(&customer.auth, number, Reason::parse(reason).unwrap())
        .await
        .unwrap()
}

pub fn staff() -> Actor {
    Actor::Staff {
        id: StaffId::new(),
        email: "reviewer@releasedesk.test".into(),
    }
}

/// The request's outbox row of `kind` (exactly one expected).
pub async fn outbox_row(store: &Store, request: RequestId, kind: OutboxKind) -> OutboxRow {
    let rows: Vec<_> = store
        .outbox_for_request(request)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == kind)
        .collect();
    assert_eq!(rows.len(), 1, "expected one {kind} row, found {rows:?}");
    rows.into_iter().next().unwrap()
}

// ---- workers -----------------------------------------------------------------------------

/// Fast polling, and a lease long enough that no test outruns it unless it means to.
pub fn config(smtp_url: Option<String>, mail_dir: &Path) -> NotifyConfig {
    NotifyConfig {
        smtp_url,
        mail_dir: mail_dir.to_owned(),
        mail_from: "releasedesk <no-reply@releasedesk.test>".into(),
        public_url: PUBLIC_URL.into(),
        poll_interval: Duration::from_millis(50),
        lease: Duration::from_secs(30),
        sweep_interval: Duration::from_secs(60),
        webhooks: Default::default(),
        webhook_timeout: releasedesk_notify::webhook::WEBHOOK_TIMEOUT,
    }
}

pub fn smtp_worker(store: &Store, smtp: &SmtpServer) -> Worker {
    let dir = std::env::temp_dir();
    Worker::new(
        store.clone(),
        config(Some(smtp.url()), &dir),
        Arc::new(RecordingCarrier),
    )
    .unwrap()
}

/// Runs the worker until it finds nothing due (at most `limit` rounds).
pub async fn drain(worker: &Worker) -> usize {
    let mut total = 0;
    for _ in 0..20 {
        let n = worker.run_once().await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
    panic!("the outbox did not drain");
}

/// Polls `worker.run_once()` until `done()` holds or `within` passes.
pub async fn run_until(worker: &Worker, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        worker.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn message_id_of(row: OutboxId) -> String {
    format!("<{row}@{PUBLIC_HOST}>")
}

pub use releasedesk_testkit::smtp::*;

/// Ids and times differ on every run: snapshots show placeholders instead.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[id]",
    );
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", "[time]");
    settings.set_prepend_module_to_snapshot(false);
    settings
}
