//! Before the pools open: is `DATABASE_URL` usable, and if not, why and what to do about it.
//!
//! A pool hides the first error behind its own: SQLite says `(code: 14) unable to open database
//! file` whatever the cause, and a PostgreSQL pool retries a refused connection until its
//! acquire timeout and then reports only that it timed out. One direct attempt, bounded in
//! time, gets the real cause, which [`DatabaseUnavailable`] turns into a sentence naming the
//! setting and the fix.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::sqlx::{self, Connection};

/// How long the direct attempt may take before PostgreSQL counts as unreachable.
pub const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `DATABASE_URL` cannot be used, worded for the person who set it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUnavailable {
    #[error(
        "DATABASE_URL names the SQLite file {file}, but its folder {folder} does not exist. \
         Create the folder (mkdir -p {folder}) or point DATABASE_URL at a file in an existing folder."
    )]
    SqliteFolderMissing { file: PathBuf, folder: PathBuf },
    #[error(
        "DATABASE_URL names the SQLite file {file}, which does not exist, and the URL does not \
         allow creating it. Add ?mode=rwc to create it (DATABASE_URL={suggestion}), or fix the path."
    )]
    SqliteFileMissing { file: PathBuf, suggestion: String },
    #[error(
        "DATABASE_URL is not a valid SQLite URL: {0}. Write it like sqlite://releasedesk.db?mode=rwc."
    )]
    SqliteUrl(String),
    #[error(
        "DATABASE_URL is not a valid PostgreSQL URL: {0}. Write it like postgres://user@host:5432/database."
    )]
    PostgresUrl(String),
    #[error(
        "cannot reach PostgreSQL at {target} (DATABASE_URL): {cause}. Is PostgreSQL running \
         and listening there? Check the host and port in DATABASE_URL."
    )]
    PostgresUnreachable { target: String, cause: String },
    #[error(
        "PostgreSQL at {target} (DATABASE_URL) did not answer within {} s. Check the host and \
         port in DATABASE_URL, and that no firewall drops the connection.",
        POSTGRES_CONNECT_TIMEOUT.as_secs()
    )]
    PostgresTimeout { target: String },
    #[error(
        "the PostgreSQL database \"{database}\" does not exist on {target} (DATABASE_URL). \
         Create it: createdb -h {host} -p {port} -U {user} {database}"
    )]
    PostgresDatabaseMissing {
        database: String,
        target: String,
        host: String,
        port: u16,
        user: String,
    },
    #[error(
        "PostgreSQL at {target} refused the user \"{user}\" (DATABASE_URL): {cause}. Check the \
         user name and password in DATABASE_URL."
    )]
    PostgresAuth {
        target: String,
        user: String,
        cause: String,
    },
    #[error("cannot connect to PostgreSQL at {target} (DATABASE_URL): {cause}")]
    Postgres { target: String, cause: String },
}

/// Checks `url` the cheap way before the store opens its pools: for SQLite, the file and its
/// folder; for PostgreSQL, one connection, opened and closed within
/// [`POSTGRES_CONNECT_TIMEOUT`]. Other schemes are left to [`crate::Store::connect`].
pub async fn preflight(url: &str) -> Result<(), DatabaseUnavailable> {
    if url.starts_with("sqlite:") {
        sqlite(url)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres(url).await
    } else {
        Ok(())
    }
}

fn sqlite(url: &str) -> Result<(), DatabaseUnavailable> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| DatabaseUnavailable::SqliteUrl(e.to_string()))?;
    let mode = sqlite_mode(url);
    if mode == Some("memory") || url.contains(":memory:") {
        return Ok(());
    }
    let file = options.get_filename().to_path_buf();
    if file.exists() {
        return Ok(());
    }
    let folder = match file.parent() {
        Some(p) if p.as_os_str().is_empty() => Path::new("."),
        Some(p) => p,
        None => Path::new("/"),
    };
    if !folder.is_dir() {
        return Err(DatabaseUnavailable::SqliteFolderMissing {
            folder: folder.to_path_buf(),
            file,
        });
    }
    if mode != Some("rwc") {
        return Err(DatabaseUnavailable::SqliteFileMissing {
            file,
            suggestion: with_mode_rwc(url),
        });
    }
    Ok(())
}

/// The `mode` query parameter of a SQLite URL, as sqlx reads it.
fn sqlite_mode(url: &str) -> Option<&str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "mode")
        .map(|(_, v)| v)
        .next_back()
}

/// `url` with `mode=rwc`, replacing another mode.
fn with_mode_rwc(url: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("mode="))
        .collect();
    params.push("mode=rwc");
    format!("{base}?{}", params.join("&"))
}

async fn postgres(url: &str) -> Result<(), DatabaseUnavailable> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| DatabaseUnavailable::PostgresUrl(e.to_string()))?;
    let host = options.get_host().to_owned();
    let port = options.get_port();
    let target = format!("{host}:{port}");
    let attempt = tokio::time::timeout(
        POSTGRES_CONNECT_TIMEOUT,
        PgConnection::connect_with(&options),
    )
    .await;
    let error = match attempt {
        Err(_) => return Err(DatabaseUnavailable::PostgresTimeout { target }),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(e)) => e,
    };
    Err(match &error {
        sqlx::Error::Io(io) => DatabaseUnavailable::PostgresUnreachable {
            target,
            cause: match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                _ => io.to_string(),
            },
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => DatabaseUnavailable::PostgresDatabaseMissing {
                database: options
                    .get_database()
                    .unwrap_or(options.get_username())
                    .to_owned(),
                target,
                host,
                port,
                user: options.get_username().to_owned(),
            },
            // invalid_authorization_specification, invalid_password
            Some("28000" | "28P01") => DatabaseUnavailable::PostgresAuth {
                target,
                user: options.get_username().to_owned(),
                cause: db.message().to_owned(),
            },
            _ => DatabaseUnavailable::Postgres {
                target,
                cause: db.message().to_owned(),
            },
        },
        other => DatabaseUnavailable::Postgres {
            target,
            cause: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_rwc_is_added_or_replaces_another_mode() {
        assert_eq!(with_mode_rwc("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            with_mode_rwc("sqlite://a.db?mode=rw&cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
    }

    #[test]
    fn the_last_mode_parameter_counts() {
        assert_eq!(sqlite_mode("sqlite://a.db?mode=ro&mode=rwc"), Some("rwc"));
        assert_eq!(sqlite_mode("sqlite://a.db"), None);
    }

    #[tokio::test]
    async fn a_sqlite_file_in_a_missing_folder_names_the_folder_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("missing").join("x.db");
        let err = preflight(&format!("sqlite://{}?mode=rwc", file.display()))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("DATABASE_URL"), "{text}");
        assert!(text.contains("mkdir -p"), "{text}");
        assert!(matches!(
            err,
            DatabaseUnavailable::SqliteFolderMissing { .. }
        ));
    }

    #[tokio::test]
    async fn a_missing_sqlite_file_without_rwc_suggests_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        let text = preflight(&url).await.unwrap_err().to_string();
        assert!(text.contains(&format!("{url}?mode=rwc")), "{text}");
        // With rwc the file may be created; an existing file needs nothing.
        preflight(&format!("{url}?mode=rwc")).await.unwrap();
        std::fs::write(dir.path().join("x.db"), b"").unwrap();
        preflight(&url).await.unwrap();
        preflight("sqlite::memory:").await.unwrap();
    }
}
