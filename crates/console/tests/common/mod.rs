//! Test harness: a fresh database per test (SQLite in a temp dir, or a new PostgreSQL database
//! made from `TEST_DATABASE_URL`), the console router driven in-process with `oneshot`, and a
//! tiny cookie-keeping "browser".

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use releasedesk_console::{ConsoleConfig, create_staff, router};
use releasedesk_domain::{
    AgentStatus, Direction, E164, EmailAddress, EnvironmentId, PhoneNumberId, Reason, RequestId,
};
use releasedesk_store::{AuthContext, Store, StoreOptions};
pub use releasedesk_testkit::Backend;
use releasedesk_testkit::TestDb;
use tower::ServiceExt;

pub const STAFF_EMAIL: &str = "ada@support.example";
pub const STAFF_NAME: &str = "Ada Reviewer";
pub const STAFF_PASSWORD: &str = "correct horse battery staple";

/// Runs each named test (an `async fn(Backend)`) on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if ::releasedesk_testkit::test_database_url().is_some() {
                        super::$name($crate::common::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

pub struct TestApp {
    pub store: Store,
    pub router: Router,
    pub staff_id: releasedesk_domain::StaffId,
    /// Dropped last: the database outlives the store's connections.
    _db: TestDb,
}

impl TestApp {
    pub async fn start(backend: Backend) -> TestApp {
        Self::with_config(backend, ConsoleConfig::default()).await
    }

    pub async fn with_config(backend: Backend, config: ConsoleConfig) -> TestApp {
        let db = TestDb::new(backend).await.expect("TEST_DATABASE_URL");
        let store = Store::connect(&db.url, StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let email = EmailAddress::parse(STAFF_EMAIL).unwrap();
        let staff_id = create_staff(&store, &email, STAFF_NAME, STAFF_PASSWORD)
            .await
            .expect("staff");
        let router = router(store.clone(), config);
        TestApp {
            store,
            router,
            staff_id,
            _db: db,
        }
    }

    pub fn browser(&self) -> Browser {
        Browser {
            router: self.router.clone(),
            cookies: Arc::default(),
            remote: None,
            headers: Vec::new(),
        }
    }

    /// A browser already signed in as the test staff member.
    pub async fn signed_in(&self) -> Browser {
        let b = self.browser();
        let res = b.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert!(b.cookie("rd_session").is_some(), "signed in");
        b
    }

    /// An environment with a token, as a customer would have.
    pub async fn customer(&self, name: &str) -> Customer {
        let env = self
            .store
            .create_environment(name, &EmailAddress::parse("ops@customer.example").unwrap())
            .await
            .unwrap();
        let token = self.store.issue_token(env.id, None).await.unwrap();
        let auth = self
            .store
            .authenticate(&token.token.hash())
            .await
            .unwrap()
            .unwrap();
        Customer { env: env.id, auth }
    }

    /// A number of `customer`'s and a pending request to release it.
    pub async fn pending_request(
        &self,
        customer: &Customer,
        number: &str,
        reason: &str,
    ) -> RequestId {
        let n = self.add_number(customer, number).await;
        self.request(customer, n, reason).await
    }

    pub async fn add_number(&self, customer: &Customer, number: &str) -> PhoneNumberId {
        self.store
            .add_phone_number(customer.env, &E164::parse(number).unwrap())
            .await
            .unwrap()
            .id
    }

    pub async fn request(
        &self,
        customer: &Customer,
        number: PhoneNumberId,
        reason: &str,
    ) -> RequestId {
        self.store
            .request_release(&customer.auth, number, Reason::parse(reason).unwrap())
            .await
            .unwrap()
            .id
    }

    /// A pending request whose number an active agent holds (the agent was a draft when the
    /// request was made, then went live).
    pub async fn blocked_request(
        &self,
        customer: &Customer,
        number: &str,
        agent: &str,
    ) -> RequestId {
        let n = self.add_number(customer, number).await;
        let a = self
            .store
            .add_agent(
                customer.env,
                agent,
                AgentStatus::Draft,
                Direction::Inbound,
                &[n],
            )
            .await
            .unwrap();
        let id = self
            .request(customer, n, "Moving this line to another provider.")
            .await;
        self.store
            .set_agent_status(customer.env, a.id, AgentStatus::Active)
            .await
            .unwrap();
        id
    }

    pub async fn status_of(&self, id: RequestId) -> String {
        self.store
            .find_request(id)
            .await
            .unwrap()
            .status
            .to_string()
    }

    /// How many audit events of `action` the request has.
    pub async fn events(&self, id: RequestId, action: &str) -> usize {
        self.store
            .request_timeline(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.action == action)
            .count()
    }
}

pub struct Customer {
    pub env: EnvironmentId,
    pub auth: AuthContext,
}

/// What a response looked like.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The flash a redirect carries: (kind, text).
    pub fn flash(&self) -> Option<(String, String)> {
        let c = self.set_cookie("rd_flash")?;
        let value = c.split(';').next()?.split_once('=')?.1;
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(value).ok()?).ok()?;
        Some((
            json["kind"].as_str()?.to_owned(),
            json["text"].as_str()?.to_owned(),
        ))
    }

    /// The first `csrf_token` hidden field of the page.
    pub fn csrf_token(&self) -> String {
        let marker = "name=\"csrf_token\" value=\"";
        let start = self.body.find(marker).expect("a csrf_token field") + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

/// Keeps cookies like a browser (no domain or path logic: everything is under `/console`).
#[derive(Clone)]
pub struct Browser {
    router: Router,
    cookies: Arc<Mutex<HashMap<String, String>>>,
    remote: Option<SocketAddr>,
    headers: Vec<(String, String)>,
}

impl Browser {
    /// The same cookie jar, seen from another peer address.
    pub fn at_address(&self, addr: &str) -> Browser {
        Browser {
            remote: Some(addr.parse().unwrap()),
            ..self.clone()
        }
    }

    /// The same browser, sending `name: value` with every request (after any it sends already).
    pub fn with_header(&self, name: &str, value: &str) -> Browser {
        let mut headers = self.headers.clone();
        headers.push((name.to_owned(), value.to_owned()));
        Browser {
            headers,
            ..self.clone()
        }
    }

    /// A fresh cookie jar at the same address.
    pub fn fresh(&self) -> Browser {
        Browser {
            cookies: Arc::default(),
            ..self.clone()
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.into(), value.into());
    }

    pub async fn get(&self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(Method::POST, path, Some(body)).await
    }

    /// Follows a redirect's `Location` with a GET.
    pub async fn follow(&self, res: &Page) -> Page {
        assert!(
            res.status.is_redirection(),
            "not a redirect: {}",
            res.status
        );
        self.get(res.location()).await
    }

    pub async fn sign_in(&self, email: &str, password: &str) -> Page {
        self.ready_to_sign_in().await.submit(email, password).await
    }

    /// The sign-in form, loaded: submitting it is one request, so a test can send many at once.
    pub async fn ready_to_sign_in(&self) -> SignInForm {
        let login = self.get("/console/login").await;
        SignInForm {
            browser: self.clone(),
            token: login.csrf_token(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<String>) -> Page {
        let mut req = Request::builder().method(method).uri(path);
        let cookie = {
            let jar = self.cookies.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        for (name, value) in &self.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        if let Some(addr) = self.remote {
            req.extensions_mut().insert(ConnectInfo(addr));
        }
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        let page = Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        let mut jar = self.cookies.lock().unwrap();
        for c in page.set_cookies() {
            let first = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = first.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        page
    }
}

/// A loaded sign-in form (see [`Browser::ready_to_sign_in`]).
pub struct SignInForm {
    browser: Browser,
    token: String,
}

impl SignInForm {
    pub async fn submit(&self, email: &str, password: &str) -> Page {
        self.browser
            .post(
                "/console/login",
                &[
                    ("email", email),
                    ("password", password),
                    ("csrf_token", &self.token),
                ],
            )
            .await
    }
}
