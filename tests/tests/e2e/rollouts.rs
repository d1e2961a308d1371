//! Staged rollouts over tenant databases on two real servers: canaries first, a stage pausing at
//! its failure limit with later tenants untouched, retry after a fix, the target released only on
//! completion (signups meanwhile get the released version), a killed engine resuming without
//! applying anything twice, a lock held by a long transaction failing its tenant fast, a no-op
//! rollout that connects to nobody, drift reported, and `--verify` reading each database's own
//! history where the control plane's record is wrong.

use std::time::{Duration, Instant};

use control_plane::rollouts::{
    FailureLimit, OnFailure, RolloutDirection, RolloutSpec, RolloutState,
};
use migrator::MigrationSet;
use migrator::rollout::Engine;
use uuid::Uuid;

use crate::harness::{TestApp, TestOptions, cluster_b, connect};

/// The embedded schema plus V3 (a new table) and V4 (which refuses tenants holding a branch
/// coded BROKEN, and sleeps a little so an engine can be killed mid-stage).
pub(crate) fn extra_migrations() -> MigrationSet {
    MigrationSet::with_extra(&[
        (
            "V3__loyalty_cards",
            "CREATE TABLE loyalty_cards (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code text NOT NULL);",
        ),
        (
            "V4__item_points",
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM branches WHERE code = 'BROKEN') THEN \
               RAISE EXCEPTION 'branch BROKEN blocks this migration'; END IF; END $$; \
             SELECT pg_sleep(0.05); \
             ALTER TABLE items ADD COLUMN loyalty_points integer NOT NULL DEFAULT 0;",
        ),
    ])
    .unwrap()
}

pub(crate) fn spec(target: i32, stages: &[i32], failure_limit: FailureLimit) -> RolloutSpec {
    RolloutSpec {
        target_version: target,
        stages: stages.to_vec(),
        concurrency_per_host: 2,
        failure_limit,
        bake: Duration::ZERO,
        manual_approval: false,
        verify: false,
        direction: RolloutDirection::Forward,
        on_failure: OnFailure::Pause,
        accepted_risks: Vec::new(),
        created_by: "test:sre".to_owned(),
    }
}

pub(crate) async fn wait_for_state(app: &TestApp, id: Uuid, wanted: RolloutState) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rollout = app.store.rollout(id).await.unwrap();
        if rollout.state == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rollout never became {wanted:?}: {rollout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (applied version, history rows, distinct versions) read from the tenant's own database.
pub(crate) async fn tenant_history(app: &TestApp, slug: &str) -> (i32, i64, i64) {
    let client = connect(&app.tenant_url(slug).await).await.unwrap();
    let version = migrator::applied_version(&client).await.unwrap();
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT version) FROM silo_schema_history",
            &[],
        )
        .await
        .unwrap();
    (version, row.get(0), row.get(1))
}

/// Runs an engine on `id` in a runtime of its own and kills it once two tenants are done and
/// some are still pending.
pub(crate) async fn kill_an_engine_mid_rollout(app: &TestApp, set: &MigrationSet, id: Uuid) {
    let (store, keyring, engine_set) = (app.store.clone(), app.keyring.clone(), set.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        let _ = Engine::new(store, keyring, engine_set)
            .drive_if_free(id)
            .await;
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = app.store.stage_counts(id, None).await.unwrap();
        if counts.succeeded >= 2 && counts.pending > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the engine never got going: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    runtime.shutdown_background();
}

/// Drives `id` with a fresh engine once the killed one's lock is gone; the state it ends in.
pub(crate) async fn resume_with_a_new_engine(
    app: &TestApp,
    set: &MigrationSet,
    id: Uuid,
) -> RolloutState {
    let engine = Engine::new(app.store.clone(), app.keyring.clone(), set.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(state) = engine.drive_if_free(id).await.unwrap() {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "the dead engine's lock was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn two_host_fleet(app: &TestApp, slugs: &[&str]) {
    app.store
        .add_host(
            &app.keyring,
            "b",
            &cluster_b().superuser_url("postgres"),
            1000,
            "test",
        )
        .await
        .unwrap();
    for slug in slugs {
        app.active_tenant(slug).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_rollout_pauses_at_its_failure_limit_then_completes_after_retry() {
    let set = extra_migrations();
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(set.clone()),
        ..Default::default()
    })
    .await;
    let slugs = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    ];
    two_host_fleet(&app, &slugs).await;
    let hosts = app.store.hosts().await.unwrap();
    assert!(hosts.iter().all(|host| host.tenant_count >= 4), "{hosts:?}");
    assert_eq!(app.store.released_version().await.unwrap(), Some(2));

    // Canaries go first; the plan is stable.
    let canary = app.store.tenant_by_slug("juliet").await.unwrap().unwrap();
    app.store.set_canary(canary.id, true).await.unwrap();
    let plan = app.store.plan(&[10, 50, 100]).await.unwrap();
    assert_eq!(plan[0].slug, "juliet");
    assert_eq!(plan[0].stage, 0);
    assert_eq!(plan.iter().filter(|t| t.stage == 0).count(), 1);
    assert_eq!(plan.iter().filter(|t| t.stage <= 1).count(), 5);
    let again: Vec<String> = app
        .store
        .plan(&[10, 50, 100])
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.slug)
        .collect();
    assert_eq!(
        plan.iter().map(|t| t.slug.clone()).collect::<Vec<_>>(),
        again
    );

    // Two tenants of stage 2 cannot take V4.
    let stage_two: Vec<&str> = plan
        .iter()
        .filter(|t| t.stage == 1)
        .map(|t| t.slug.as_str())
        .collect();
    let broken = [stage_two[0], stage_two[1]];
    for slug in broken {
        connect(&app.tenant_url(slug).await)
            .await
            .unwrap()
            .batch_execute("INSERT INTO branches (code, name) VALUES ('BROKEN', 'Blocks V4')")
            .await
            .unwrap();
    }

    let id = app
        .store
        .create_rollout(&spec(4, &[10, 50, 100], FailureLimit::Count(1)))
        .await
        .unwrap();
    // A second open rollout is refused.
    assert!(
        app.store
            .create_rollout(&spec(3, &[100], FailureLimit::Count(0)))
            .await
            .is_err()
    );
    wait_for_state(&app, id, RolloutState::Paused).await;
    let rollout = app.store.rollout(id).await.unwrap();
    assert_eq!(rollout.current_stage, 1, "paused in stage 2");
    assert!(rollout.pause_reason.unwrap().contains("failed"));
    let failed = app.store.rollout_tenants(id, Some("failed")).await.unwrap();
    let mut failed_slugs: Vec<&str> = failed.iter().map(|t| t.slug.as_str()).collect();
    failed_slugs.sort_unstable();
    let mut expected = broken.to_vec();
    expected.sort_unstable();
    assert_eq!(failed_slugs, expected);
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .contains("branch BROKEN blocks"),
        "{failed:?}"
    );
    // Stage 3 was never touched, and nothing is released yet.
    for tenant in plan.iter().filter(|t| t.stage == 2) {
        assert_eq!(
            tenant_history(&app, &tenant.slug).await.0,
            2,
            "{} untouched",
            tenant.slug
        );
    }
    assert_eq!(app.store.released_version().await.unwrap(), Some(2));
    // A signup now gets the released version, not the one being rolled out.
    app.active_tenant("latecomer").await;
    assert_eq!(tenant_history(&app, "latecomer").await.0, 2);

    // Fix the two tenants, retry: the rest of the fleet (and the latecomer) follows.
    for slug in broken {
        connect(&app.tenant_url(slug).await)
            .await
            .unwrap()
            .batch_execute("DELETE FROM branches WHERE code = 'BROKEN'")
            .await
            .unwrap();
    }
    assert_eq!(app.store.retry_rollout_failures(id).await.unwrap(), 2);
    wait_for_state(&app, id, RolloutState::Completed).await;
    assert_eq!(app.store.released_version().await.unwrap(), Some(4));
    for slug in slugs.iter().chain(std::iter::once(&"latecomer")) {
        let (version, rows, distinct) = tenant_history(&app, slug).await;
        assert_eq!(
            (version, rows, distinct),
            (4, 4, 4),
            "{slug}: each migration once"
        );
        let record = app.store.tenant_by_slug(slug).await.unwrap().unwrap();
        assert_eq!(record.schema_version, Some(4));
    }
    let counts = app.store.stage_counts(id, None).await.unwrap();
    assert_eq!((counts.succeeded, counts.failed, counts.total), (11, 0, 11));

    // Nothing pending: a rollout to the same version skips everyone without connecting.
    let noop = app
        .store
        .create_rollout(&spec(4, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    wait_for_state(&app, noop, RolloutState::Completed).await;
    let rows = app.store.rollout_tenants(noop, None).await.unwrap();
    assert_eq!(rows.len(), 11);
    assert!(
        rows.iter()
            .all(|t| t.status == "skipped" && t.attempts == 0),
        "{rows:?}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_resumes_without_applying_twice() {
    let set = extra_migrations();
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(set.clone()),
        ..Default::default()
    })
    .await;
    let slugs: Vec<String> = (0..8).map(|i| format!("tenant-{i}")).collect();
    for slug in &slugs {
        app.active_tenant(slug).await;
    }
    // From here on only the engines below drive rollouts.
    app.stop().await;
    let id = app
        .store
        .create_rollout(&spec(4, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();

    kill_an_engine_mid_rollout(&app, &set, id).await;
    let interrupted = app.store.stage_counts(id, None).await.unwrap();
    assert!(interrupted.pending > 0, "killed mid-stage: {interrupted:?}");

    // A new engine takes over (the dead one's lock died with its connection) and finishes.
    let state = resume_with_a_new_engine(&app, &set, id).await;
    assert_eq!(state, RolloutState::Completed);
    for slug in &slugs {
        assert_eq!(tenant_history(&app, slug).await, (4, 4, 4), "{slug}");
    }
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_locked_by_a_long_transaction_fails_fast_and_drift_is_reported() {
    let set = extra_migrations();
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(set.clone()),
        ..Default::default()
    })
    .await;
    app.active_tenant("busy").await;
    app.active_tenant("calm").await;
    app.stop().await;
    // The tenant's application holds a lock on items in an open transaction.
    let busy = connect(&app.tenant_url("busy").await).await.unwrap();
    busy.batch_execute("BEGIN; LOCK TABLE items IN ACCESS SHARE MODE;")
        .await
        .unwrap();
    let id = app
        .store
        .create_rollout(&spec(4, &[100], FailureLimit::Percent(60.0)))
        .await
        .unwrap();
    let mut engine = Engine::new(app.store.clone(), app.keyring.clone(), set.clone());
    engine.limits.lock_timeout = Duration::from_millis(300);
    let started = Instant::now();
    let state = engine.drive_if_free(id).await.unwrap().unwrap();
    // The lock is held until the ROLLBACK below: without the lock timeout the rollout would
    // wait forever. 30 s leaves room for a machine busy with the whole suite (1.7 s alone).
    assert!(started.elapsed() < Duration::from_secs(30), "failed fast");
    assert_eq!(
        state,
        RolloutState::Completed,
        "one failure in two is within 60 %"
    );
    let failed = app.store.rollout_tenants(id, Some("failed")).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].slug, "busy");
    assert!(
        failed[0].error.as_deref().unwrap().contains("lock timeout"),
        "{failed:?}"
    );
    busy.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        tenant_history(&app, "busy").await.0,
        3,
        "V3 applied, V4 rolled back"
    );
    assert_eq!(tenant_history(&app, "calm").await.0, 4);

    // Drift: an edited checksum and an unknown migration are reported, not repaired.
    let calm = connect(&app.tenant_url("calm").await).await.unwrap();
    assert!(
        migrator::drift::detect(&calm, &set)
            .await
            .unwrap()
            .is_empty()
    );
    calm.batch_execute(
        "UPDATE silo_schema_history SET checksum = '1' WHERE version = 3; \
         INSERT INTO silo_schema_history (version, name, applied_on, checksum) \
         VALUES (9, 'hand_made', now()::text, '42');",
    )
    .await
    .unwrap();
    let drift = migrator::drift::detect(&calm, &set).await.unwrap();
    assert_eq!(drift.changed, [3]);
    assert_eq!(drift.extra, [9]);
    assert!(drift.missing.is_empty());
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_rollout_reads_each_tenants_own_history_instead_of_the_record() {
    let set = extra_migrations();
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(set.clone()),
        ..Default::default()
    })
    .await;
    app.active_tenant("honest").await;
    app.active_tenant("misrecorded").await;
    app.stop().await;
    // The control plane believes "misrecorded" is at V4; its database is really at V2.
    app.control_plane()
        .await
        .execute(
            "UPDATE tenants SET schema_version = 4 WHERE slug = 'misrecorded'",
            &[],
        )
        .await
        .unwrap();
    let engine = Engine::new(app.store.clone(), app.keyring.clone(), set);

    // Trusting the record, the tenant is skipped without being touched.
    let trusting = app
        .store
        .create_rollout(&spec(3, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    let state = engine.drive_if_free(trusting).await.unwrap().unwrap();
    assert_eq!(state, RolloutState::Completed);
    let skipped = app
        .store
        .rollout_tenants(trusting, Some("skipped"))
        .await
        .unwrap();
    assert_eq!(
        skipped.iter().map(|t| t.slug.as_str()).collect::<Vec<_>>(),
        ["misrecorded"]
    );
    assert_eq!(tenant_history(&app, "misrecorded").await.0, 2);
    assert_eq!(tenant_history(&app, "honest").await.0, 3);

    // --verify reads each database's own history: the misrecorded tenant is brought up to V4
    // and its record corrected.
    let verifying = app
        .store
        .create_rollout(&RolloutSpec {
            verify: true,
            ..spec(4, &[100], FailureLimit::Count(0))
        })
        .await
        .unwrap();
    assert!(app.store.rollout(verifying).await.unwrap().verify);
    let state = engine.drive_if_free(verifying).await.unwrap().unwrap();
    assert_eq!(state, RolloutState::Completed);
    let succeeded = app
        .store
        .rollout_tenants(verifying, Some("succeeded"))
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 2, "{succeeded:?}");
    assert_eq!(tenant_history(&app, "misrecorded").await, (4, 4, 4));
    assert_eq!(tenant_history(&app, "honest").await, (4, 4, 4));
    let recorded = app
        .store
        .tenant_by_slug("misrecorded")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.schema_version, Some(4));
    app.finish().await;
}

/// One stage holding the whole fleet on one host, `concurrency` tenants at a time, no failure
/// allowed, and the first tenant of the plan unable to take V4: once its failure is recorded, no
/// tenant may start; only the `concurrency - 1` already running may finish.
async fn the_failure_limit_stops_the_stage_at_once(concurrency: i32) {
    let set = extra_migrations();
    let app = TestApp::spawn_with(TestOptions {
        migrations: Some(set),
        ..Default::default()
    })
    .await;
    let slugs = [
        "kilo", "lima", "mike", "november", "oscar", "papa", "quebec",
    ];
    for slug in slugs {
        app.active_tenant(slug).await;
    }
    let plan = app.store.plan(&[100]).await.unwrap();
    connect(&app.tenant_url(&plan[0].slug).await)
        .await
        .unwrap()
        .batch_execute("INSERT INTO branches (code, name) VALUES ('BROKEN', 'Blocks V4')")
        .await
        .unwrap();
    let id = app
        .store
        .create_rollout(&RolloutSpec {
            concurrency_per_host: concurrency,
            ..spec(4, &[100], FailureLimit::Count(0))
        })
        .await
        .unwrap();
    wait_for_state(&app, id, RolloutState::Paused).await;
    let counts = app.store.stage_counts(id, None).await.unwrap();
    let started = counts.succeeded + counts.failed;
    let limit = i64::from(concurrency);
    assert_eq!(counts.failed, 1, "{counts:?}");
    assert!(
        started <= limit,
        "at most the {limit} tenants running when the first failed were started: {counts:?}"
    );
    assert_eq!(counts.pending, counts.total - started, "{counts:?}");
    // The pause holds: nothing starts afterwards either.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = app.store.stage_counts(id, None).await.unwrap();
    assert_eq!(
        (later.pending, later.running, later.succeeded, later.failed),
        (counts.pending, 0, counts.succeeded, counts.failed)
    );
    let mut untouched = 0;
    for tenant in &plan {
        if tenant_history(&app, &tenant.slug).await.0 == 2 {
            untouched += 1;
        }
    }
    // Every tenant still pending is untouched in its own database (the failed one took V3).
    assert_eq!(untouched, counts.pending);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_failure_allowed_nothing_starts_after_the_first_failure() {
    the_failure_limit_stops_the_stage_at_once(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_concurrency_only_the_tenants_already_running_finish_after_a_failure() {
    the_failure_limit_stops_the_stage_at_once(3).await;
}
