//! Rollbacks in stages on real tenant databases: a rollout back to an older version runs the
//! revert scripts through the same staged, recorded engine — killed half-way and resumed, each
//! tenant's history, schema and control-plane version move back together, the old version is
//! released, templates above it are forgotten, and rolling forward again applies each migration
//! once more. And `--on-failure revert`: a stage past its limit moves back every tenant the
//! rollout moved, so the fleet ends on one version with nothing released.

use control_plane::rollouts::{FailureLimit, OnFailure, RolloutDirection, RolloutState};
use migrator::MigrationSet;

use crate::harness::{TestApp, TestOptions, connect};
use crate::rollouts::{
    kill_an_engine_mid_rollout, resume_with_a_new_engine, spec, tenant_history, wait_for_state,
};

/// The rollout tests' V3 (a table) and V4 (a column; refuses tenants holding a branch coded
/// BROKEN; sleeps a little so an engine can be killed mid-stage), each with a revert script.
fn revertible_migrations() -> MigrationSet {
    crate::rollouts::extra_migrations()
        .with_reverts(&[
            (3, "DROP TABLE loyalty_cards;"),
            (
                4,
                "SELECT pg_sleep(0.05); ALTER TABLE items DROP COLUMN loyalty_points;",
            ),
        ])
        .unwrap()
}

/// Whether the tenant's database has V3's table and V4's column.
async fn schema_of(app: &TestApp, slug: &str) -> (bool, bool) {
    let row = connect(&app.tenant_url(slug).await)
        .await
        .unwrap()
        .query_one(
            "SELECT to_regclass('loyalty_cards') IS NOT NULL, EXISTS (SELECT 1 FROM \
             information_schema.columns WHERE table_name = 'items' AND column_name = 'loyalty_points')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_over_many_tenants_is_interrupted_resumed_and_releases_the_old_version() {
    let set = revertible_migrations();
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(set.clone()),
        ..Default::default()
    })
    .await;
    let slugs: Vec<String> = (0..12).map(|i| format!("fleet-{i}")).collect();
    for slug in &slugs {
        app.active_tenant(slug).await;
    }
    let forward = app
        .store
        .create_rollout(&spec(4, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    wait_for_state(&app, forward, RolloutState::Completed).await;
    assert_eq!(app.store.released_version().await.unwrap(), Some(4));
    // A signup now builds the host's template at version 4.
    app.active_tenant("at-four").await;
    let host = app.store.hosts().await.unwrap()[0].id;
    assert!(app.store.template(host, 4).await.unwrap().is_some());
    app.stop().await;

    let mut back = spec(2, &[25, 100], FailureLimit::Count(0));
    back.direction = RolloutDirection::Back;
    let id = app.store.create_rollout(&back).await.unwrap();
    // An engine killed while tenants are being reverted; another resumes.
    kill_an_engine_mid_rollout(&app, &set, id).await;
    assert_eq!(app.store.released_version().await.unwrap(), Some(4));
    let state = resume_with_a_new_engine(&app, &set, id).await;
    assert_eq!(state, RolloutState::Completed);
    assert_eq!(app.store.released_version().await.unwrap(), Some(2));
    assert!(app.store.template(host, 4).await.unwrap().is_none());
    let rows = app.store.rollout_tenants(id, None).await.unwrap();
    assert_eq!(rows.len(), 13);
    for row in &rows {
        assert_eq!(
            (row.status.as_str(), row.from_version, row.to_version),
            ("succeeded", Some(4), Some(2)),
            "{row:?}"
        );
        assert_eq!(
            tenant_history(&app, &row.slug).await,
            (2, 2, 2),
            "{}",
            row.slug
        );
        assert_eq!(schema_of(&app, &row.slug).await, (false, false));
        let record = app.store.tenant_by_slug(&row.slug).await.unwrap().unwrap();
        assert_eq!(record.schema_version, Some(2));
        let client = connect(&app.tenant_url(&row.slug).await).await.unwrap();
        let drift = migrator::drift::detect(&client, &set).await.unwrap();
        assert!(drift.is_empty(), "{}: {drift:?}", row.slug);
    }

    // Forwards again: each migration applied once more, nothing twice.
    let again = app
        .store
        .create_rollout(&spec(4, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    assert_eq!(
        resume_with_a_new_engine(&app, &set, again).await,
        RolloutState::Completed
    );
    for row in &rows {
        assert_eq!(tenant_history(&app, &row.slug).await, (4, 4, 4));
        assert_eq!(schema_of(&app, &row.slug).await, (true, true));
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_revert_leaves_every_tenant_on_the_old_version() {
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(revertible_migrations()),
        ..Default::default()
    })
    .await;
    let slugs: Vec<String> = (0..10).map(|i| format!("shop-{i}")).collect();
    for slug in &slugs {
        app.active_tenant(slug).await;
    }
    let plan = app.store.plan(&[20, 60, 100]).await.unwrap();
    let stage_two: Vec<&str> = plan
        .iter()
        .filter(|t| t.stage == 1)
        .map(|t| t.slug.as_str())
        .collect();
    let broken = stage_two[stage_two.len() - 1];
    connect(&app.tenant_url(broken).await)
        .await
        .unwrap()
        .batch_execute("INSERT INTO branches (code, name) VALUES ('BROKEN', 'Blocks V4')")
        .await
        .unwrap();

    let mut rollout = spec(4, &[20, 60, 100], FailureLimit::Count(0));
    rollout.on_failure = OnFailure::Revert;
    let id = app.store.create_rollout(&rollout).await.unwrap();
    wait_for_state(&app, id, RolloutState::Aborted).await;

    let record = app.store.rollout(id).await.unwrap();
    let reason = record.pause_reason.unwrap();
    assert!(
        reason.contains("failed in stage 2") && reason.contains("moved back"),
        "{reason}"
    );
    let counts = app.store.stage_counts(id, None).await.unwrap();
    assert_eq!(counts.failed, 1, "{counts:?}");
    assert!(
        counts.reverted >= 2,
        "stage 1 and part of stage 2 moved back: {counts:?}"
    );
    assert_eq!(counts.succeeded, 0, "{counts:?}");
    for row in app.store.rollout_tenants(id, None).await.unwrap() {
        if row.stage == 2 {
            assert_eq!(row.status, "pending", "stage 3 untouched: {row:?}");
        }
    }
    for slug in &slugs {
        assert_eq!(tenant_history(&app, slug).await.0, 2, "{slug}");
        assert_eq!(schema_of(&app, slug).await, (false, false), "{slug}");
        let tenant = app.store.tenant_by_slug(slug).await.unwrap().unwrap();
        assert_eq!(tenant.schema_version, Some(2), "{slug}");
    }
    assert_eq!(app.store.released_version().await.unwrap(), Some(2));
    // Over: another rollout may start, and signups still get the released version.
    app.active_tenant("latecomer").await;
    assert_eq!(tenant_history(&app, "latecomer").await.0, 2);
    app.finish().await;
}
