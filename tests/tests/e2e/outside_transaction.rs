//! Migrations marked `-- silo:no-transaction`, rolled out on real tenant databases: a concurrent
//! index is built while a writer keeps committing (the writer is never held up for long), and a
//! concurrent unique index that fails half-way leaves no invalid index behind — neither from the
//! rollout's attempt nor from an earlier, killed one — so a retry after the fix builds it valid.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control_plane::rollouts::{FailureLimit, RolloutState};
use migrator::MigrationSet;

use crate::harness::{TestApp, TestOptions, connect};
use crate::rollouts::{spec, tenant_history, wait_for_state};

/// The embedded schema plus two migrations that must run outside a transaction.
fn concurrent_index_migrations() -> MigrationSet {
    MigrationSet::with_extra(&[
        (
            "V3__items_name_lookup",
            "-- silo:no-transaction\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_lookup_idx ON items (name, sku);",
        ),
        (
            "V4__unique_item_names",
            "-- silo:no-transaction\n\
             CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_name_unique ON items (name);",
        ),
    ])
    .unwrap()
}

/// `(exists, valid)` of an index in the tenant's database.
async fn index_state(app: &TestApp, slug: &str, index: &str) -> Option<bool> {
    connect(&app.tenant_url(slug).await)
        .await
        .unwrap()
        .query_opt(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = $1",
            &[&index],
        )
        .await
        .unwrap()
        .map(|row| row.get(0))
}

/// Gives `slug`'s items two of one name, so a unique index on names cannot be built there.
async fn with_a_duplicate_name(app: &TestApp, slug: &str) -> tokio_postgres::Client {
    let client = connect(&app.tenant_url(slug).await).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO items (sku, name) VALUES ('a-1', 'Aspirin'), ('a-2', 'Aspirin')",
        )
        .await
        .unwrap();
    client
}

/// Rolls out to `target` with no failure allowed; waits for the pause and returns the rollout
/// and its one failed tenant's error.
async fn one_tenant_fails(app: &TestApp, target: i32) -> (uuid::Uuid, String) {
    let id = app
        .store
        .create_rollout(&spec(target, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    wait_for_state(app, id, RolloutState::Paused).await;
    let failed = app.store.rollout_tenants(id, Some("failed")).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    (id, failed[0].error.clone().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_index_is_built_while_a_writer_keeps_committing() {
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(concurrent_index_migrations()),
        ..Default::default()
    })
    .await;
    app.active_tenant("busy").await;
    let url = app.tenant_url("busy").await;
    // Enough rows that building the index takes a while on this machine.
    connect(&url)
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO items (sku, name) \
             SELECT 'bulk-' || g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g",
        )
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = connect(&url).await.unwrap();
        tokio::spawn(async move {
            // (when the commit finished, how long it took)
            let mut commits: Vec<(Instant, Duration)> = Vec::new();
            let mut number = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                number += 1;
                let started = Instant::now();
                client
                    .execute(
                        "INSERT INTO items (sku, name) VALUES ($1, 'written during the build')",
                        &[&format!("live-{number}")],
                    )
                    .await
                    .unwrap();
                commits.push((Instant::now(), started.elapsed()));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            commits
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let id = app
        .store
        .create_rollout(&spec(3, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    wait_for_state(&app, id, RolloutState::Completed).await;
    let finished = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let commits = writer.await.unwrap();

    assert_eq!(
        index_state(&app, "busy", "items_name_lookup_idx").await,
        Some(true)
    );
    assert_eq!(tenant_history(&app, "busy").await, (3, 3, 3));
    let build = finished - started;
    assert!(
        build >= Duration::from_millis(300),
        "the build took only {build:?}: too short to show anything"
    );
    let during: Vec<Duration> = commits
        .iter()
        .filter(|(at, _)| *at > started && *at < finished)
        .map(|(_, took)| *took)
        .collect();
    let slowest = during.iter().max().copied().unwrap_or_default();
    // A plain CREATE INDEX (or one in a transaction) holds writers for the whole build.
    assert!(
        during.len() >= 10,
        "only {} commits during a {build:?} build",
        during.len()
    );
    assert!(
        slowest < build / 3 && slowest < Duration::from_secs(1),
        "a write waited {slowest:?} during a {build:?} build"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_concurrent_index_is_dropped_and_a_retry_builds_it_valid() {
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(concurrent_index_migrations()),
        ..Default::default()
    })
    .await;
    app.active_tenant("clean").await;
    app.active_tenant("dupes").await;
    let dupes = with_a_duplicate_name(&app, "dupes").await;

    let (id, error) = one_tenant_fails(&app, 4).await;
    assert!(
        error.contains("V4")
            && error.contains("could not create unique index")
            && error.contains("dropped the invalid index \"public\".\"items_name_unique\""),
        "{error}"
    );
    // The failed build left nothing: V3 stays applied, V4 is not, and no invalid index remains.
    assert_eq!(index_state(&app, "dupes", "items_name_unique").await, None);
    assert_eq!(tenant_history(&app, "dupes").await, (3, 3, 3));
    assert_eq!(tenant_history(&app, "clean").await, (4, 4, 4));

    // An earlier attempt killed half-way leaves an invalid index of the same name; with
    // `IF NOT EXISTS` PostgreSQL would keep it silently.
    assert!(
        dupes
            .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY items_name_unique ON items (name)")
            .await
            .is_err()
    );
    assert_eq!(
        index_state(&app, "dupes", "items_name_unique").await,
        Some(false)
    );

    dupes
        .batch_execute("DELETE FROM items WHERE sku = 'a-2'")
        .await
        .unwrap();
    assert_eq!(app.store.retry_rollout_failures(id).await.unwrap(), 1);
    wait_for_state(&app, id, RolloutState::Completed).await;
    assert_eq!(
        index_state(&app, "dupes", "items_name_unique").await,
        Some(true)
    );
    assert_eq!(tenant_history(&app, "dupes").await, (4, 4, 4));
    let drift = migrator::drift::detect(&dupes, &concurrent_index_migrations())
        .await
        .unwrap();
    assert!(drift.is_empty(), "{drift:?}");
    app.finish().await;
}

/// An index the script does not name gets a name PostgreSQL chooses (`items_name_idx`): a failed
/// build of it is found and dropped all the same, never kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unnamed_concurrent_index_is_dropped_too() {
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(
            MigrationSet::with_extra(&[(
                "V3__unique_item_names",
                "-- silo:no-transaction\n\
                 CREATE UNIQUE INDEX CONCURRENTLY ON items (name);",
            )])
            .unwrap(),
        ),
        ..Default::default()
    })
    .await;
    app.active_tenant("dupes").await;
    with_a_duplicate_name(&app, "dupes").await;
    let (_, error) = one_tenant_fails(&app, 3).await;
    assert!(
        error.contains("dropped the invalid index \"public\".\"items_name_idx\""),
        "{error}"
    );
    assert_eq!(index_state(&app, "dupes", "items_name_idx").await, None);
    app.finish().await;
}
