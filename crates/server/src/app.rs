//! Wiring: one axum server with the API, the console and the health checks, plus the outbox
//! worker, sharing one [`Store`]; graceful shutdown for all of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use releasedesk_console::TrustedProxies;
use releasedesk_notify::{NotifyConfig, RecordingCarrier, Worker};
use releasedesk_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::util::MapRequestLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServeConfig;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// How long shutdown waits for in-flight requests and the worker's current row, once the
/// server stopped accepting connections.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

/// Where the server is in its life. `/readyz` answers 200 only while `Serving` (and the
/// database can take writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Starting = 0,
    Serving = 1,
    /// Shutting down: requests are still served, but load balancers are told to go elsewhere.
    Draining = 2,
}

/// The [`Phase`], shared by the server and its `/readyz` handler.
#[derive(Debug, Clone, Default)]
struct Lifecycle(Arc<AtomicU8>);

impl Lifecycle {
    fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }
    fn get(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }
}

/// A started server. Dropping it does not stop it: call [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    pub store: Store,
    pub public_url: String,
    /// Cancelled to begin the shutdown (SIGTERM, Ctrl-C, [`RunningServer::shutdown`]).
    shutdown: CancellationToken,
    /// Cancelled once draining is over: the listener stops accepting, in-flight requests finish.
    stop_serving: CancellationToken,
    /// Cancelled when the shutdown begins: the worker claims nothing more.
    stop_worker: CancellationToken,
    lifecycle: Lifecycle,
    drain: Duration,
    serve_task: JoinHandle<()>,
    worker_task: Option<JoinHandle<()>>,
    metrics_task: Option<JoinHandle<()>>,
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token that stops the server when cancelled (wired to SIGTERM and Ctrl-C by `serve`).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down (see [`RunningServer::wait`]) and returns when everything has stopped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.wait().await;
    }

    /// Waits until the server stops, after its shutdown token is cancelled. In this order:
    ///
    /// 1. `/readyz` answers 503 and the worker stops claiming rows (it finishes the row in
    ///    hand); requests are still served for the drain period (`RELEASEDESK_SHUTDOWN_GRACE`),
    ///    so a load balancer notices and sends new requests elsewhere before any is refused.
    /// 2. The listener stops accepting; requests in flight finish (up to 30 s).
    /// 3. The database pools close.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.lifecycle.set(Phase::Draining);
        self.stop_worker.cancel();
        if !self.drain.is_zero() {
            tracing::info!(
                drain_ms = self.drain.as_millis() as u64,
                "shutting down: /readyz answers 503 while requests are still served"
            );
            tokio::time::sleep(self.drain).await;
        }
        self.stop_serving.cancel();
        let tasks = std::iter::once(("server", self.serve_task))
            .chain(self.worker_task.map(|t| ("outbox worker", t)))
            .chain(self.metrics_task.map(|t| ("metrics listener", t)));
        for (name, task) in tasks {
            if tokio::time::timeout(IN_FLIGHT_GRACE, task).await.is_err() {
                tracing::warn!(task = name, "did not stop within 30 s of the shutdown");
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
    let stop_serving = CancellationToken::new();
    let stop_worker = CancellationToken::new();
    let lifecycle = Lifecycle::default();

    // The metrics listener stays up while draining, so the drain itself can be watched.
    let (metrics_addr, metrics_task) = match config.metrics_bind {
        Some(bind) => {
            let (addr, task) =
                crate::metrics::serve(bind, store.clone(), stop_serving.clone()).await?;
            (Some(addr), Some(task))
        }
        None => (None, None),
    };

    let worker_task = if config.run_worker {
        let worker = build_worker(&store, &config, &public_url)?;
        let token = stop_worker.clone();
        Some(tokio::spawn(async move { worker.run(token).await }))
    } else {
        None
    };

    let router = router(
        store.clone(),
        lifecycle.clone(),
        public_url.starts_with("https://"),
        config.trusted_proxies.clone(),
    );
    let router = crate::metrics::instrument(router, metrics_addr.is_some());
    let serve_task = tokio::spawn(crate::http::serve(
        listener,
        router,
        config.http,
        stop_serving.clone(),
    ));

    lifecycle.set(Phase::Serving);
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
        stop_serving,
        stop_worker,
        lifecycle,
        drain: config.shutdown_grace,
        serve_task,
        worker_task,
        metrics_task,
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
    lifecycle: Lifecycle,
    secure_cookies: bool,
    trusted_proxies: TrustedProxies,
) -> Router {
    let health = Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state((store.clone(), lifecycle));
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

/// 200 `ready` while serving and the database answers and takes writes; otherwise 503 with
/// the reason in one line (`shutting down`, `the database is unavailable: the disk or the
/// database is full`, …).
async fn readyz(State((store, lifecycle)): State<(Store, Lifecycle)>) -> impl IntoResponse {
    let unavailable = |reason: String| (StatusCode::SERVICE_UNAVAILABLE, reason);
    match lifecycle.get() {
        Phase::Starting => return unavailable("starting".into()),
        Phase::Draining => return unavailable("shutting down".into()),
        Phase::Serving => {}
    }
    match store.readiness().await {
        Ok(()) => (StatusCode::OK, "ready".to_owned()),
        Err(e @ StoreError::StorageUnavailable { .. }) => unavailable(e.to_string()),
        Err(e) => {
            tracing::warn!(error = %e.chain(), "readiness check failed");
            unavailable("the database does not answer".into())
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
