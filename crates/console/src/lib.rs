//! releasedesk staff console: server-rendered HTML (askama) under `/console`.
//!
//! Support staff sign in, review the queue of release requests, and approve (irreversibly) or
//! reject them through the same store use cases as the API. Every page works without
//! JavaScript; the stylesheet is served by the app itself.
//!
//! Security, in one place each: sessions live in the database and the cookie carries only a
//! random id whose SHA-256 the store keeps (`session`); every POST goes through one extractor
//! that checks the per-session CSRF token (`session::CsrfForm`); every response gets the same
//! security headers (`security::headers`); every error renders through one type
//! ([`HtmlError`]).

mod client;
mod cookies;
mod csv;
mod error;
mod flash;
mod pages;
mod password;
mod security;
mod session;
mod state;
mod view;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::Redirect;
use axum::routing::{get, post};
use releasedesk_domain::{EmailAddress, StaffId};
use releasedesk_store::{SignInThrottle, Store, StoreError};

pub use client::{TrustedProxies, TrustedProxiesError};
pub use error::HtmlError;
pub use password::MIN_PASSWORD_CHARS;

use state::AppState;

/// Console settings the server passes in.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Mark cookies `Secure` (set when the public URL is https).
    pub secure_cookies: bool,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub absolute_timeout: Duration,
    /// How failed sign-ins are slowed down.
    pub sign_in_throttle: SignInThrottle,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// How many sign-in passwords are checked at once (each check holds Argon2's 19 MiB).
    pub password_checks: usize,
    /// How many more sign-ins may wait for a check; beyond that one is answered "busy".
    pub password_queue: usize,
}

/// At most this many password checks at once by default, however many CPUs there are: each
/// holds 19 MiB, and staff sign-ins never need more throughput than this gives.
const MAX_DEFAULT_PASSWORD_CHECKS: usize = 4;

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 60 * 60),
            sign_in_throttle: SignInThrottle::default(),
            trusted_proxies: TrustedProxies::default(),
            password_checks: default_password_checks(),
            password_queue: 4 * default_password_checks(),
        }
    }
}

/// One check per CPU, up to [`MAX_DEFAULT_PASSWORD_CHECKS`].
pub fn default_password_checks() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_DEFAULT_PASSWORD_CHECKS)
}

/// Forms are small; anything bigger is not a console form.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every `/console/...` route, including its static assets, and `GET /` (to the queue).
///
/// The router sets no fallback, so the server can merge it with the API's router.
pub fn router(store: Store, config: ConsoleConfig) -> Router {
    password::warm_up();
    let state = AppState::new(store, config);
    Router::new()
        .route(
            "/console/login",
            get(pages::login::show).post(pages::login::submit),
        )
        .route("/console/logout", post(pages::login::logout))
        .route("/console/requests", get(pages::queue::show))
        .route("/console/requests/{id}", get(pages::request::show))
        .route(
            "/console/requests/{id}/approve",
            post(pages::decide::approve),
        )
        .route("/console/requests/{id}/reject", post(pages::decide::reject))
        .route("/console/audit", get(pages::audit::show))
        .route("/console/outbox", get(pages::outbox::show))
        .route("/console/outbox/{id}/retry", post(pages::outbox::retry))
        .route(
            "/console/static/console.css",
            get(pages::assets::stylesheet),
        )
        .route("/", get(to_queue))
        .route("/console", get(to_queue))
        .route("/console/", get(to_queue))
        // Unknown console paths get the console's own 404 page, not the API's JSON one.
        .route(
            "/console/{*rest}",
            get(pages::not_found).post(pages::not_found),
        )
        .layer(middleware::from_fn_with_state(
            state.clone(),
            flash::clear_after_showing,
        ))
        .layer(middleware::from_fn(error::render_error_pages))
        .layer(middleware::from_fn(security::headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

async fn to_queue() -> Redirect {
    Redirect::to("/console/requests")
}

/// Why [`create_staff`] refused.
#[derive(Debug, thiserror::Error)]
pub enum CreateStaffError {
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates a staff account (`releasedesk staff add`): the password (at least
/// [`MIN_PASSWORD_CHARS`] characters) is hashed with Argon2id; only the hash is stored.
/// A taken email answers `Store(StoreError::DuplicateStaff)`.
pub async fn create_staff(
    store: &Store,
    email: &EmailAddress,
    name: &str,
    password: &str,
) -> Result<StaffId, CreateStaffError> {
    let hash = password::hash_new(password).await?;
    Ok(store.add_staff(email, name, &hash).await?)
}
