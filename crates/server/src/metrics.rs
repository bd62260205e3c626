//! `/metrics` in the Prometheus text format, on a listener of its own
//! (`RELEASEDESK_METRICS_BIND`), so it is never exposed where the API is.
//!
//! Counters and histograms are recorded as things happen (HTTP requests here, transitions in
//! the store, outbox attempts in the worker) through the `metrics` facade; the queue, the outbox
//! and the pools are read at each scrape ([`Store::snapshot`], index ranges only). Without
//! `RELEASEDESK_METRICS_BIND` no recorder is installed and the facade's calls do nothing.
//! `docs/operations.md` lists every metric.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use releasedesk_store::{Backend, Store, now, stats};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const HTTP_REQUESTS_TOTAL: &str = "releasedesk_http_requests_total";
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "releasedesk_http_request_duration_seconds";
pub const HTTP_REQUESTS_IN_FLIGHT: &str = "releasedesk_http_requests_in_flight";
pub const OPEN_REQUESTS: &str = "releasedesk_release_requests_open";
pub const OLDEST_PENDING_AGE_SECONDS: &str = "releasedesk_oldest_pending_request_age_seconds";
pub const OUTBOX_ROWS: &str = "releasedesk_outbox_rows";
pub const OUTBOX_OLDEST_DUE_AGE_SECONDS: &str = "releasedesk_outbox_oldest_due_age_seconds";
pub const DB_POOL_CONNECTIONS: &str = "releasedesk_db_pool_connections";
pub const DB_POOL_MAX_CONNECTIONS: &str = "releasedesk_db_pool_max_connections";
pub const BUILD_INFO: &str = "releasedesk_build_info";
pub const SCRAPE_ERRORS_TOTAL: &str = "releasedesk_metrics_scrape_errors_total";

/// Request latency buckets, in seconds: from a cached read to a request stuck behind a lock.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A scrape whose database queries take longer than this reports the process's own metrics
/// and counts a scrape error instead of hanging the scraper.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);
/// Histogram samples are folded into their buckets at least this often, scraped or not.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide recorder, installed on first use. Several servers in one process (tests)
/// share it.
fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(HTTP_REQUEST_DURATION_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .set_buckets_for_metric(
                    Matcher::Full(stats::DB_WRITES_PER_COMMIT.to_owned()),
                    stats::WRITES_PER_COMMIT_BUCKETS,
                )
                .map_err(|e| e.to_string())?
                .install_recorder()
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!("installing the metrics recorder: {e}"))
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by method, route (the path template) and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time to answer an HTTP request (until the response head), by method, route and status."
    );
    describe_gauge!(
        HTTP_REQUESTS_IN_FLIGHT,
        "HTTP requests being answered right now."
    );
    describe_gauge!(
        OPEN_REQUESTS,
        "Open release requests in the database, by status (pending, approved)."
    );
    describe_gauge!(
        OLDEST_PENDING_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest pending release request (0 when none is pending)."
    );
    describe_gauge!(
        OUTBOX_ROWS,
        "Outbox rows in the database by kind and state; only pending and dead rows are counted."
    );
    describe_gauge!(
        OUTBOX_OLDEST_DUE_AGE_SECONDS,
        Unit::Seconds,
        "How long the longest-waiting due outbox row has been due (0 when none is due)."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Database connections of this process, by pool and state (idle, in_use)."
    );
    describe_gauge!(
        DB_POOL_MAX_CONNECTIONS,
        "The most connections each pool of this process may open."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the labels say which build runs on which database backend."
    );
    describe_counter!(
        SCRAPE_ERRORS_TOTAL,
        "Scrapes whose database snapshot failed or timed out (the process's own metrics were still served)."
    );
    stats::describe();
}

/// Adds request counting and timing to every route of `router` (and its fallback). With
/// `enabled` false the router is returned untouched: no work per request at all.
pub fn instrument(router: Router, enabled: bool) -> Router {
    if enabled {
        router.layer(axum::middleware::from_fn(track_http))
    } else {
        router
    }
}

/// Decrements the in-flight gauge however the request ends (a client that hangs up drops the
/// future mid-way).
struct InFlight;

impl InFlight {
    fn start() -> Self {
        metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT).increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_REQUESTS_IN_FLIGHT).decrement(1.0);
    }
}

async fn track_http(req: Request, next: Next) -> Response {
    // The template (`/api/v1/phone-numbers/{phone_number_id}`), never the raw path: ids in a
    // label would make a new time series per request.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let _in_flight = InFlight::start();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status),
    ];
    metrics::counter!(HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A bounded set of method labels: anything unusual is `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[derive(Clone)]
struct Scrape {
    store: Store,
    handle: PrometheusHandle,
}

/// Binds `bind` and serves `GET /metrics` there until `shutdown` is cancelled. Also sets the
/// build-info gauge and keeps the histograms folded.
pub async fn serve(
    bind: SocketAddr,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let handle = recorder()?;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding RELEASEDESK_METRICS_BIND (--metrics-bind) {bind}"))?;
    let addr = listener.local_addr()?;
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "backend" => backend
    )
    .set(1.0);
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            store,
            handle: handle.clone(),
        });
    let task = tokio::spawn(async move {
        let upkeep_stop = shutdown.clone();
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    () = upkeep_stop.cancelled() => break,
                    _ = every.tick() => handle.run_upkeep(),
                }
            }
        });
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "the metrics listener stopped with an error");
        }
        let _ = upkeep.await;
    });
    tracing::info!(%addr, "metrics served at /metrics");
    Ok((addr, task))
}

async fn scrape(State(s): State<Scrape>) -> Response {
    match tokio::time::timeout(SNAPSHOT_TIMEOUT, s.store.snapshot()).await {
        Ok(Ok(snapshot)) => publish(&snapshot),
        Ok(Err(e)) => {
            metrics::counter!(SCRAPE_ERRORS_TOTAL).increment(1);
            tracing::warn!(error = ?e, "metrics: the database snapshot failed");
        }
        Err(_) => {
            metrics::counter!(SCRAPE_ERRORS_TOTAL).increment(1);
            tracing::warn!(
                timeout_ms = SNAPSHOT_TIMEOUT.as_millis() as u64,
                "metrics: the database snapshot timed out"
            );
        }
    }
    for pool in s.store.pool_use() {
        let in_use = pool.open.saturating_sub(pool.idle);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => pool.pool, "state" => "idle")
            .set(f64::from(pool.idle));
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => pool.pool, "state" => "in_use")
            .set(f64::from(in_use));
        metrics::gauge!(DB_POOL_MAX_CONNECTIONS, "pool" => pool.pool).set(f64::from(pool.max));
    }
    s.handle.run_upkeep();
    let body = s.handle.render();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

fn publish(snapshot: &stats::Snapshot) {
    let at = now();
    let age = |since: Option<chrono::DateTime<chrono::Utc>>| {
        since.map_or(0.0, |t| {
            ((at - t).num_milliseconds().max(0) as f64) / 1000.0
        })
    };
    for &(status, count) in &snapshot.open_requests {
        metrics::gauge!(OPEN_REQUESTS, "status" => status.as_str()).set(count as f64);
    }
    metrics::gauge!(OLDEST_PENDING_AGE_SECONDS).set(age(snapshot.oldest_pending));
    for &(kind, state, count) in &snapshot.outbox {
        metrics::gauge!(OUTBOX_ROWS, "kind" => kind.as_str(), "state" => state.as_str())
            .set(count as f64);
    }
    metrics::gauge!(OUTBOX_OLDEST_DUE_AGE_SECONDS).set(age(snapshot.oldest_due));
}
