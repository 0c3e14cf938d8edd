//! Rolling upgrades: the migration Job of a new release runs before its pods replace
//! the old ones, so old instances must keep serving (and restart) on a schema that has
//! migrations they do not know.
use crate::helpers::{shared_settings, spawn_with};
use sea_orm::ConnectionTrait;

/// A migration of a release after this one, as its migration Job records it.
async fn record_newer_migration(db: &sea_orm::DatabaseConnection) {
    db.execute_unprepared(
        "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m29991231_000001_from_a_newer_release', 0)",
    )
    .await
    .unwrap_or_else(|e| panic!("record a newer migration: {e}"));
}

async fn ready_status(app: &crate::helpers::TestApp) -> u16 {
    app.client
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_instance_stays_ready_when_a_newer_release_migrates_its_database() {
    let app = spawn_with(shared_settings().await).await;
    assert_eq!(ready_status(&app).await, 200);
    record_newer_migration(&app.db).await;
    assert_eq!(
        ready_status(&app).await,
        200,
        "a migration of a newer release took a running instance out of service"
    );
}

#[tokio::test]
async fn an_older_release_starts_and_serves_on_a_database_a_newer_one_migrated() {
    let settings = shared_settings().await;
    let first = spawn_with(settings.clone()).await;
    record_newer_migration(&first.db).await;
    // Starting migrates (App::build): it must accept the newer schema, as a restarted
    // old pod (or a rollback) does.
    let restarted = spawn_with(settings).await;
    assert_eq!(ready_status(&restarted).await, 200);
    let body = restarted
        .gql(None, "{ categories { id } }", serde_json::json!({}))
        .await;
    assert!(body["errors"].is_null(), "{body}");
}
