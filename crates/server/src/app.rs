//! Wiring: one axum server with the API, the console and the health checks, plus the outbox
//! worker, sharing one [`Store`]; graceful shutdown for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use releasedesk_console::TrustedProxies;
use releasedesk_notify::{NotifyConfig, RecordingCarrier, Worker};
use releasedesk_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How long shutdown waits for in-flight requests and the worker's current row.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    pub store: Store,
    pub public_url: String,
    shutdown: CancellationToken,
    ready: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token that stops the server when cancelled (wired to SIGTERM and Ctrl-C by `serve`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, lets in-flight requests and the worker's current row finish, and
    /// closes the database.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the server stops (after its shutdown token is cancelled).
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.ready.store(false, Ordering::SeqCst);
        for task in self.tasks {
            if tokio::time::timeout(SHUTDOWN_GRACE, task).await.is_err() {
                tracing::warn!("a task did not stop within the shutdown grace period");
            }
        }
        self.store.close().await;
    }
}

/// Connects, migrates, binds and starts serving (and the worker, unless disabled).
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let started = Instant::now();
    let store = connect(&config).await?;
    crate::database::migrate(&store).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding RELEASEDESK_BIND (--bind) {}", config.bind))?;
    let addr = listener.local_addr()?;
    let public_url = config.public_url_for(addr);
    let shutdown = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();

    let metrics_addr = match config.metrics_bind {
        Some(bind) => {
            let (addr, task) = crate::metrics::serve(bind, store.clone(), shutdown.clone()).await?;
            tasks.push(task);
            Some(addr)
        }
        None => None,
    };

    if config.run_worker {
        let worker = build_worker(&store, &config, &public_url)?;
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move { worker.run(token).await }));
    }

    let router = router(
        store.clone(),
        ready.clone(),
        public_url.starts_with("https://"),
        config.trusted_proxies.clone(),
    );
    let router = crate::metrics::instrument(router, metrics_addr.is_some());
    let token = shutdown.clone();
    let limits = config.http;
    tasks.push(tokio::spawn(crate::http::serve(
        listener, router, limits, token,
    )));

    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        %addr,
        backend = ?store.backend(),
        ready_ms = started.elapsed().as_millis() as u64,
        "releasedesk ready"
    );
    Ok(RunningServer {
        addr,
        metrics_addr,
        store,
        public_url,
        shutdown,
        ready,
        tasks,
    })
}

pub async fn connect(config: &ServeConfig) -> anyhow::Result<Store> {
    crate::database::connect(config).await
}

pub fn build_worker(
    store: &Store,
    config: &ServeConfig,
    public_url: &str,
) -> anyhow::Result<Worker> {
    let notify = NotifyConfig {
        smtp_url: config.smtp_url.clone(),
        mail_dir: config.mail_dir.clone(),
        mail_from: config.mail_from.clone(),
        public_url: public_url.to_owned(),
        poll_interval: config.worker_poll_interval,
        lease: config.worker_lease,
        sweep_interval: config.sweep_interval,
        webhooks: config.webhooks,
        webhook_timeout: config.webhook_timeout,
    };
    Worker::new(store.clone(), notify, Arc::new(RecordingCarrier))
}

fn router(
    store: Store,
    ready: Arc<AtomicBool>,
    secure_cookies: bool,
    trusted_proxies: TrustedProxies,
) -> Router {
    let health = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state((store.clone(), ready));
    let console = releasedesk_console::router(
        store.clone(),
        releasedesk_console::ConsoleConfig {
            secure_cookies,
            trusted_proxies,
            ..Default::default()
        },
    );
    Router::new()
        .merge(releasedesk_api::router(store))
        .merge(console)
        .merge(health)
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!(
                    "http",
                    method = %req.method(),
                    path = %req.uri().path(),
                    request_id = %request_id,
                    environment_id = tracing::field::Empty,
                )
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Outermost: a caller's id that is not kept is dropped before one is set.
        .layer(MapRequestLayer::new(
            crate::request_id::drop_unacceptable::<axum::body::Body>,
        ))
}

async fn readyz(State((store, ready)): State<(Store, Arc<AtomicBool>)>) -> impl IntoResponse {
    if !ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting or shutting down");
    }
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = ?e, "readiness check: database does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
