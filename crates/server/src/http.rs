//! The HTTP front door: the accept loop and the limits every connection lives under, so that a
//! slow or stalled client never holds the server.
//!
//! - **Headers** must arrive within [`HttpLimits::header_timeout`] (hyper's header read
//!   timeout). hyper counts it from the moment the connection is ready for a request — when it
//!   is accepted, and again when the previous response is written — so the same limit closes a
//!   keep-alive connection left idle.
//! - **Body**: a request's body must have arrived, and its answer be ready, within
//!   [`HttpLimits::body_timeout`] of its headers (tower-http's `TimeoutLayer`, answering 408).
//!   The limit is on the whole, not between bytes: a body trickled one byte at a time is cut off
//!   as surely as a stalled one.
//! - **Connections**: at most [`HttpLimits::max_connections`] are open. At the limit, every open
//!   connection but the youngest is asked to close once idle (hyper's graceful shutdown: idle
//!   ones close at once, busy ones after their current response), and new connections wait in
//!   the listen backlog until a slot frees.
//! - **Out of descriptors** (`EMFILE`): accepting pauses briefly, idle connections are closed the
//!   same way to free descriptors, and serving the open connections goes on; new ones are
//!   accepted as soon as descriptors free up.
//!
//! Only HTTP/1.1 is served: HTTP/2 (and TLS) belong to the reverse proxy in front. hyper-util's
//! protocol auto-detection would first wait for a client's opening bytes with no deadline at
//! all, which is exactly what a stalled client exploits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

/// The limits of [`serve`] (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// How long accepting pauses after an error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Repeated warnings (limit reached, accept failing) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` is cancelled; then stops accepting and returns
/// once every open connection has finished its current request. Handlers see the peer as
/// `ConnectInfo<SocketAddr>`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) {
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    ));
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);

    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut generations = Generations::new();
    let mut warned = Warned::default();

    'accept: loop {
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break slot;
            }
            warned.warn(|| {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached: closing idle connections, new ones wait"
                );
            });
            generations.close_idle(&connections);
            tokio::select! {
                _ = shutdown.cancelled() => break 'accept,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => break slot,
                    Err(_) => break 'accept,
                },
                // Connections too young to be closed just now may be idle by then.
                _ = tokio::time::sleep(YOUNG) => {}
            }
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    warned.warn(|| {
                        tracing::error!(
                            error = %e,
                            "accept failed (out of file descriptors?): closing idle \
                             connections, serving the open ones, retrying shortly"
                        );
                    });
                    generations.close_idle(&connections);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let service = router
            .clone()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let watched = generations.current().watch(
            builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .into_owned(),
        );
        connections.spawn(async move {
            let _slot = slot;
            if let Err(e) = watched.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    generations.shut_down(&connections);
    connections.close();
    connections.wait().await;
}

/// A connection accepted less than this long ago is never closed as idle: its request may
/// already wait in the socket, unread yet by hyper, which would then see an idle connection.
const YOUNG: Duration = Duration::from_secs(1);

/// Open connections, watched in generations of [`GracefulShutdown`] by when they were accepted,
/// so that closing the idle ones can spare the connections accepted in the last [`YOUNG`].
struct Generations {
    /// Where newly accepted connections go; started at `started`.
    current: GracefulShutdown,
    started: Instant,
    /// Earlier generations that still have connections.
    older: Vec<GracefulShutdown>,
}

impl Generations {
    fn new() -> Self {
        Self {
            current: GracefulShutdown::new(),
            started: Instant::now(),
            older: Vec::new(),
        }
    }

    /// The generation a connection accepted now joins.
    fn current(&mut self) -> &GracefulShutdown {
        if self.started.elapsed() >= YOUNG {
            self.rotate();
        }
        &self.current
    }

    fn rotate(&mut self) {
        let done = std::mem::replace(&mut self.current, GracefulShutdown::new());
        self.started = Instant::now();
        self.older.retain(|g| g.count() > 0);
        self.older.push(done);
    }

    /// Asks every connection older than [`YOUNG`] to close once idle (hyper's graceful
    /// shutdown: an idle one closes at once, a busy one after its current response), without
    /// waiting for them.
    fn close_idle(&mut self, connections: &TaskTracker) {
        if self.started.elapsed() >= YOUNG {
            self.rotate();
        }
        for generation in self.older.drain(..) {
            connections.spawn(generation.shutdown());
        }
    }

    /// Asks every connection to finish its current request and close.
    fn shut_down(self, connections: &TaskTracker) {
        for generation in self.older.into_iter().chain([self.current]) {
            connections.spawn(generation.shutdown());
        }
    }
}

/// Errors of one incoming connection (it went away before it was accepted): nothing to wait for.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Keeps a repeated warning from flooding the log.
#[derive(Default)]
struct Warned(Option<Instant>);

impl Warned {
    fn warn(&mut self, log: impl FnOnce()) {
        if self.0.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            log();
            self.0 = Some(Instant::now());
        }
    }
}
