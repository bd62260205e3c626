//! `sqlite-limit`: how many `POST request-release` transactions per second SQLite itself
//! sustains on this machine, with the service's pragmas (WAL, `synchronous=FULL`, busy timeout,
//! foreign keys), the service's pool shape (one writing connection, a pool of readers for the
//! token lookup), `BEGIN IMMEDIATE`, and the very statements the store sends (captured from the
//! service; see `bench/README.md`). Each transaction uses a different phone number.
//!
//! Usage: `sqlite-limit --db FILE --token-hash HEX --env UUID --numbers FILE --clients N
//! --seconds S [--offset K]`; prints one JSON object.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

// The statements `Store::authenticate` and `Store::request_release` send, as SQLite sees them.
const TOKEN_LOOKUP: &str = r#"SELECT "api_tokens"."id", "api_tokens"."environment_id", "api_tokens"."prefix" FROM "api_tokens" WHERE "api_tokens"."token_hash" = ? AND "api_tokens"."revoked_at" IS NULL LIMIT ?"#;
const TOUCH_NUMBER: &str = "UPDATE phone_numbers SET updated_at = ?1 WHERE id = ?2 AND environment_id = ?3 RETURNING e164, status";
const OPEN_REQUEST: &str = r#"SELECT "release_requests"."status" FROM "release_requests" WHERE "release_requests"."phone_number_id" = ? AND "release_requests"."status" IN (?, ?) LIMIT ?"#;
const ACTIVE_AGENTS: &str = r#"SELECT "agents"."id", "agents"."name" FROM "agents" WHERE "agents"."current_status" = ? AND "agents"."id" IN (SELECT "agent_id" FROM "agent_phone_numbers" WHERE "agent_phone_numbers"."phone_number_id" = ?) ORDER BY "agents"."name" ASC"#;
const INSERT_REQUEST: &str = r#"INSERT INTO "release_requests" ("id", "environment_id", "phone_number_id", "phone_number", "reason", "status", "requested_at", "resolved_at", "released_at", "review_note", "reviewed_by") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#;
const INSERT_AUDIT: &str = r#"INSERT INTO "audit_events" ("id", "occurred_at", "actor_kind", "actor_id", "actor_label", "action", "environment_id", "request_id", "phone_number_id", "detail") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"#;

const REASON: &str = "Benchmark: this number is no longer needed by the team.";

struct Args {
    db: String,
    token_hash: String,
    env: Uuid,
    numbers: Vec<Uuid>,
    offset: usize,
    clients: usize,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut map = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let k = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k}"))?
            .to_owned();
        let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
        map.insert(k, v);
    }
    let get = |k: &str| {
        map.get(k)
            .cloned()
            .ok_or_else(|| format!("--{k} is required"))
    };
    let num = |k: &str, d: &str| -> Result<f64, String> {
        f64::from_str(map.get(k).map_or(d, String::as_str)).map_err(|e| format!("--{k}: {e}"))
    };
    let numbers = std::fs::read_to_string(get("numbers")?)
        .map_err(|e| format!("--numbers: {e}"))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Uuid::parse_str(l.trim()).map_err(|e| format!("--numbers: {l}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Args {
        db: get("db")?,
        token_hash: get("token-hash")?,
        env: Uuid::parse_str(&get("env")?).map_err(|e| format!("--env: {e}"))?,
        numbers,
        offset: num("offset", "0")? as usize,
        clients: num("clients", "1")?.max(1.0) as usize,
        seconds: num("seconds", "10")?,
    })
}

fn options(db: &str) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(db)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
}

/// One `POST request-release` worth of SQL: the token lookup on a reader, then the
/// transaction on the writer. An error when the database refused it (or the number was taken).
async fn one(
    read: &SqlitePool,
    write: &SqlitePool,
    token_hash: &str,
    env: Uuid,
    number: Uuid,
) -> Result<(), sqlx::Error> {
    let token = sqlx::query(TOKEN_LOOKUP)
        .bind(token_hash)
        .bind(1_i64)
        .fetch_optional(read)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let prefix: String = token.try_get(2)?;
    let at = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap_or_else(|_| Utc::now());
    let mut tx = write.begin_with("BEGIN IMMEDIATE").await?;
    let row = sqlx::query(TOUCH_NUMBER)
        .bind(at)
        .bind(number)
        .bind(env)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    let e164: String = row.try_get(0)?;
    let _status: String = row.try_get(1)?;
    let open = sqlx::query(OPEN_REQUEST)
        .bind(number)
        .bind("pending")
        .bind("approved")
        .bind(1_i64)
        .fetch_optional(&mut *tx)
        .await?;
    if open.is_some() {
        return Err(sqlx::Error::Protocol(
            "number already has an open request".into(),
        ));
    }
    let agents = sqlx::query(ACTIVE_AGENTS)
        .bind("active")
        .bind(number)
        .fetch_all(&mut *tx)
        .await?;
    if !agents.is_empty() {
        return Err(sqlx::Error::Protocol("number in use".into()));
    }
    let id = Uuid::now_v7();
    sqlx::query(INSERT_REQUEST)
        .bind(id)
        .bind(env)
        .bind(number)
        .bind(&e164)
        .bind(REASON)
        .bind("pending")
        .bind(at)
        .bind(None::<chrono::DateTime<Utc>>)
        .bind(None::<chrono::DateTime<Utc>>)
        .bind(None::<String>)
        .bind(None::<Uuid>)
        .execute(&mut *tx)
        .await?;
    sqlx::query(INSERT_AUDIT)
        .bind(Uuid::now_v7())
        .bind(Utc::now())
        .bind("customer")
        .bind(Some(prefix.clone()))
        .bind(format!("token {prefix}…"))
        .bind("request.created")
        .bind(Some(env))
        .bind(Some(id))
        .bind(Some(number))
        .bind(None::<String>)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    // No ping on checkout: a direct loop would not ping either (the service pings only
    // connections idle for 30 s).
    let write = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options(&args.db))
        .await
        .map_err(|e| e.to_string())?;
    let read = SqlitePoolOptions::new()
        .test_before_acquire(false)
        .max_connections(4)
        .min_connections(1)
        .connect_with(options(&args.db))
        .await
        .map_err(|e| e.to_string())?;
    let numbers = Arc::new(args.numbers);
    let next = Arc::new(AtomicUsize::new(args.offset));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (read, write, numbers, next) =
            (read.clone(), write.clone(), numbers.clone(), next.clone());
        let hash = args.token_hash.clone();
        let env = args.env;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0_u64;
            let mut first_error = None;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&number) = numbers.get(i) else { break };
                let t = Instant::now();
                match one(&read, &write, &hash, env, number).await {
                    Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let (l, e, f) = t.await.map_err(|e| e.to_string())?;
        lat.extend(l);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "clients": args.clients,
        "transactions": lat.len(),
        "seconds": elapsed,
        "tps": lat.len() as f64 / elapsed,
        "p50_ms": percentile(&lat, 50.0),
        "p99_ms": percentile(&lat, 99.0),
        "errors": errors,
        "first_error": first_error,
        "next_offset": next.load(Ordering::Relaxed).min(numbers.len()),
    });
    println!("{out}");
    write.close().await;
    read.close().await;
    Ok(())
}
