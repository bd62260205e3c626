//! The review-policy migration on a database that already has staff accounts, on SQLite and
//! (with `TEST_DATABASE_URL`) PostgreSQL: existing accounts become admins, existing environments
//! need one approval, and the step goes down and up again.

use releasedesk_migration::{Migrator, MigratorTrait};
use releasedesk_testkit::{Backend, TestDb};
use sea_orm_migration::sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// The migrations before the review policy.
const BEFORE: u32 = 5;

async fn one_string(db: &DatabaseConnection, sql: &str) -> String {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<String>(0)
        .or_else(|_| row.try_get_by_index::<i32>(0).map(|n| n.to_string()))
        .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
        .unwrap()
}

async fn existing_accounts_become_admins_and_the_step_reverses(backend: Backend) {
    let Some(test_db) = TestDb::new(backend).await else {
        return;
    };
    let db = Database::connect(test_db.url.as_str()).await.unwrap();
    Migrator::up(&db, Some(BEFORE)).await.unwrap();
    db.execute_unprepared(
        "INSERT INTO staff_users (id, email, name, password_hash, created_at, disabled_at) \
         VALUES ('0190f0a0-0000-7000-8000-000000000001', 'old@example.com', 'Old', 'x', \
         '2026-01-01T00:00:00Z', NULL)",
    )
    .await
    .unwrap();
    db.execute_unprepared(
        "INSERT INTO environments (id, name, notify_email, created_at) \
         VALUES ('0190f0a0-0000-7000-8000-000000000002', 'Old env', 'ops@example.com', \
         '2026-01-01T00:00:00Z')",
    )
    .await
    .unwrap();

    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        one_string(&db, "SELECT role FROM staff_users").await,
        "admin"
    );
    assert_eq!(
        one_string(&db, "SELECT required_approvals FROM environments").await,
        "1"
    );

    // Down removes what it added (with the steps after it); up again works on the same data.
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20261128_000009_review_policy")
        .expect("the review-policy step exists")
        + 1;
    Migrator::down(&db, Some(steps as u32)).await.unwrap();
    assert!(
        db.execute_unprepared("SELECT role FROM staff_users")
            .await
            .is_err(),
        "the role column is gone"
    );
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        one_string(&db, "SELECT role FROM staff_users").await,
        "admin"
    );
    // Accounts added later without a role get the least a reviewer needs.
    db.execute_unprepared(
        "INSERT INTO staff_users (id, email, name, password_hash, created_at, disabled_at) \
         VALUES ('0190f0a0-0000-7000-8000-000000000003', 'new@example.com', 'New', 'x', \
         '2026-01-02T00:00:00Z', NULL)",
    )
    .await
    .unwrap();
    assert_eq!(
        one_string(
            &db,
            "SELECT role FROM staff_users WHERE email = 'new@example.com'"
        )
        .await,
        "reviewer"
    );
    db.close().await.unwrap();
}

#[tokio::test]
async fn sqlite_existing_accounts_become_admins_and_the_step_reverses() {
    existing_accounts_become_admins_and_the_step_reverses(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_existing_accounts_become_admins_and_the_step_reverses() {
    existing_accounts_become_admins_and_the_step_reverses(Backend::Postgres).await;
}
