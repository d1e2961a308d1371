//! Provisioning converges: concurrent runs make one database, failures end `failed` with a
//! reason after the last attempt, and a retry after the cause is fixed activates the tenant.

use std::sync::Arc;

use control_plane::model::TenantStatus;
use provisioner::Provisioner;

use crate::harness::{TestApp, TestOptions, superuser_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_provisioners_converge_on_one_database() {
    let app = TestApp::spawn_with(TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    let accepted = app.signup("twice").await;
    let settings = crate::harness::test_settings(&app.database, &app.keys).provisioning;
    let runs = (0..3).map(|_| {
        let provisioner = Arc::new(Provisioner::new(
            app.store.clone(),
            app.keyring.clone(),
            settings.clone(),
        ));
        let id = accepted.tenant_id;
        tokio::spawn(async move { provisioner.provision(id).await })
    });
    for run in futures::future::join_all(runs).await {
        run.unwrap().unwrap();
    }
    let status = app.wait_provisioned(&accepted).await;
    assert_eq!(status.status, TenantStatus::Active, "{status:?}");
    let record = app.store.tenant(accepted.tenant_id).await.unwrap();
    let admin = superuser_client("postgres").await;
    let databases: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&record.database_name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(databases, 1);
    let tenant_db = superuser_client(record.database_name.as_deref().unwrap()).await;
    let users: i64 = tenant_db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1, "the admin is seeded once");
    let applied: i64 = tenant_db
        .query_one("SELECT count(*) FROM silo_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        applied,
        i64::from(tenant_schema::latest_version()),
        "each migration applied once"
    );
    let response = app.tenant_get("twice", "/api/v1/health").await;
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    drop((admin, tenant_db));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_host_ends_failed_with_a_reason_and_retry_recovers() {
    let app = TestApp::spawn().await;
    // Break the only host's admin credentials.
    let good = app.break_the_default_host().await;

    let accepted = app.signup("unlucky").await;
    let status = app.wait_provisioned(&accepted).await;
    assert_eq!(status.status, TenantStatus::Failed, "{status:?}");
    let reason = status.reason.expect("a failed tenant says why");
    let control = app.control_plane().await;
    let events: Vec<String> = control
        .query(
            "SELECT step || ': ' || coalesce(error, outcome) FROM provisioning_events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(reason.contains("role_created"), "{reason} after {events:?}");
    assert!(
        !reason.contains("postgres://") && !reason.contains("password"),
        "{reason}"
    );
    let failures: i64 = control
        .query_one(
            "SELECT count(*) FROM provisioning_events WHERE tenant_id = $1 AND outcome = 'failed'",
            &[&accepted.tenant_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(failures, 3, "one failed step per attempt, max_attempts = 3");
    let response = app.tenant_get("unlucky", "/api/v1/health").await;
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);

    // Fix the host and retry: the same placement is reused and the tenant activates.
    app.set_default_host(&good).await;
    let placed_database = app
        .store
        .tenant(accepted.tenant_id)
        .await
        .unwrap()
        .database_name;
    app.store
        .retry_provisioning(accepted.tenant_id, "test")
        .await
        .unwrap();
    // The retry is audited in the same transaction as the change.
    let audit = app.store.audit_of(accepted.tenant_id).await.unwrap();
    assert!(
        audit
            .iter()
            .any(|(actor, action, _)| actor == "test" && action == "tenant.retry_provisioning"),
        "{audit:?}"
    );
    let status = app.wait_provisioned(&accepted).await;
    assert_eq!(status.status, TenantStatus::Active, "{status:?}");
    assert_eq!(
        app.store
            .tenant(accepted.tenant_id)
            .await
            .unwrap()
            .database_name,
        placed_database
    );
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_any_step_is_resumed_by_another_and_converges() {
    use provisioner::failpoints::{FailAction, arm};
    use std::time::Duration;

    let app = TestApp::spawn_with(TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    let steps = [
        "placed",
        "role_created",
        "database_created",
        "migrated",
        "admin_seeded",
    ];
    let mut crashes = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let accepted = app.signup(&format!("crash-{index}")).await;
        let point = arm(
            &format!("after_{step}"),
            Some(accepted.tenant_id),
            FailAction::Pause,
        );
        crashes.push((accepted, point));
    }
    let first = crate::harness::TestWorker::start(&app.database, &app.keys);
    for (accepted, point) in &crashes {
        tokio::time::timeout(Duration::from_secs(30), point.reached())
            .await
            .unwrap_or_else(|_| panic!("{} never reached its fail point", accepted.subdomain));
    }
    let mut placements = Vec::new();
    for (accepted, _) in &crashes {
        let tenant = app.store.tenant(accepted.tenant_id).await.unwrap();
        assert_eq!(
            tenant.status,
            TenantStatus::Provisioning,
            "paused mid-way: visible as provisioning"
        );
        placements.push((
            tenant.database_name.clone().unwrap(),
            tenant.role_name.clone().unwrap(),
        ));
    }
    first.kill();

    let second = crate::harness::TestWorker::start(&app.database, &app.keys);
    let admin = superuser_client("postgres").await;
    let control = app.control_plane().await;
    for ((accepted, _), (database, role)) in crashes.iter().zip(&placements) {
        let status = app.wait_provisioned(accepted).await;
        assert_eq!(status.status, TenantStatus::Active, "{status:?}");
        let tenant = app.store.tenant(accepted.tenant_id).await.unwrap();
        assert_eq!(
            (tenant.database_name.as_ref(), tenant.role_name.as_ref()),
            (Some(database), Some(role)),
            "the placement is reused, not remade"
        );
        let exists: i64 = admin
            .query_one(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
                &[database, role],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(exists, 2);
        let placed: i64 = control
            .query_one(
                "SELECT count(*) FROM provisioning_events WHERE tenant_id = $1 AND step = 'placed' AND outcome = 'succeeded'",
                &[&accepted.tenant_id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(placed, 1, "placed once");
        let tenant_db = superuser_client(database).await;
        let users: i64 = tenant_db
            .query_one("SELECT count(*) FROM users", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(users, 1);
        let applied: i64 = tenant_db
            .query_one("SELECT count(*) FROM silo_schema_history", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(applied, i64::from(tenant_schema::latest_version()));
        let health = app.tenant_get(&accepted.subdomain, "/api/v1/health").await;
        assert_eq!(health.status(), reqwest::StatusCode::OK);
    }
    second.kill();
    drop((admin, control));
    app.finish().await;
}

/// Polls the warm pool of the only host until `done` says it is in the wanted state.
async fn wait_for_warm_pool(
    app: &TestApp,
    what: &str,
    done: impl Fn(&[control_plane::hosts::WarmDatabase]) -> bool,
) -> Vec<control_plane::hosts::WarmDatabase> {
    let host = app.store.hosts().await.unwrap().remove(0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let pool = app.store.warm_databases(host.id).await.unwrap();
        if done(&pool) {
            return pool;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "warm pool never reached: {what}; it is {pool:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signup_claims_a_warm_database_and_the_pool_refills() {
    let app = TestApp::spawn_with(TestOptions {
        warm_pool: 2,
        ..Default::default()
    })
    .await;
    let two_ready = |pool: &[control_plane::hosts::WarmDatabase]| {
        pool.len() == 2 && pool.iter().all(|warm| warm.ready)
    };
    let pool = wait_for_warm_pool(&app, "two ready", two_ready).await;
    let warm_names: Vec<String> = pool.iter().map(|warm| warm.database_name.clone()).collect();

    let accepted = app.active_tenant("instant").await;
    let tenant = app.store.tenant(accepted.tenant_id).await.unwrap();
    let claimed = tenant.database_name.clone().unwrap();
    assert!(
        warm_names.contains(&claimed),
        "{claimed} came from the warm pool {warm_names:?}"
    );
    let control = app.control_plane().await;
    let steps: Vec<String> = control
        .query(
            "SELECT step FROM provisioning_events WHERE tenant_id = $1 AND outcome = 'succeeded' ORDER BY id",
            &[&accepted.tenant_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        steps,
        ["placed", "admin_seeded", "activated"],
        "a claim skips creating anything"
    );
    let health = app.tenant_get("instant", "/api/v1/health").await;
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    // The claimed URL was re-sealed to the tenant: it opens as the tenant's, and the role works.
    let tenant_client = crate::harness::connect(&app.tenant_url("instant").await)
        .await
        .unwrap();
    let users: i64 = tenant_client
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 1);

    let refilled = wait_for_warm_pool(&app, "refilled to two", two_ready).await;
    assert!(refilled.iter().all(|warm| warm.database_name != claimed));

    // A warm database at an old schema version is replaced, never handed out.
    let stale = refilled[0].database_name.clone();
    control
        .execute(
            "UPDATE warm_databases SET schema_version = 1 WHERE database_name = $1",
            &[&stale],
        )
        .await
        .unwrap();
    wait_for_warm_pool(&app, "stale one replaced", |pool| {
        two_ready(pool) && pool.iter().all(|warm| warm.database_name != stale)
    })
    .await;
    let admin = superuser_client("postgres").await;
    let stale_exists: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&stale],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stale_exists, 0, "the stale warm database was dropped");
    drop((control, admin, tenant_client));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_or_database_of_the_generated_name_that_silo_did_not_make_is_never_taken_over() {
    use provisioner::failpoints::{FailAction, arm};
    use std::time::Duration;

    let app = TestApp::spawn_with(TestOptions {
        run_workers: false,
        ..Default::default()
    })
    .await;
    // Two signups stop once placed: their names are chosen, nothing is made yet.
    let squatted_role = app.signup("squat-role").await;
    let squatted_database = app.signup("squat-db").await;
    let points = [&squatted_role, &squatted_database]
        .map(|accepted| arm("after_placed", Some(accepted.tenant_id), FailAction::Pause));
    let first = crate::harness::TestWorker::start(&app.database, &app.keys);
    for point in &points {
        tokio::time::timeout(Duration::from_secs(30), point.reached())
            .await
            .expect("placed");
    }
    first.kill();
    // Someone else makes a role, and a database, under the names Silo chose.
    let admin = superuser_client("postgres").await;
    let role = app
        .store
        .tenant(squatted_role.tenant_id)
        .await
        .unwrap()
        .role_name
        .unwrap();
    let database = app
        .store
        .tenant(squatted_database.tenant_id)
        .await
        .unwrap()
        .database_name
        .unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" NOLOGIN"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE \"{database}\""))
        .await
        .unwrap();

    let second = crate::harness::TestWorker::start(&app.database, &app.keys);
    for (accepted, kind, name) in [
        (&squatted_role, "role", &role),
        (&squatted_database, "database", &database),
    ] {
        let status = app.wait_provisioned(accepted).await;
        assert_eq!(status.status, TenantStatus::Failed, "{status:?}");
        let error: String = app
            .control_plane()
            .await
            .query_one(
                "SELECT error FROM provisioning_events \
                 WHERE tenant_id = $1 AND outcome = 'failed' ORDER BY id DESC LIMIT 1",
                &[&accepted.tenant_id],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            error.contains(&format!("a {kind} named {name} already exists")),
            "{error}"
        );
    }
    // Neither was touched: the role still cannot log in, the database is still the squatter's.
    let untouched: bool = admin
        .query_one(
            "SELECT NOT r.rolcanlogin AND pg_get_userbyid(d.datdba) = 'postgres' \
             FROM pg_roles r, pg_database d WHERE r.rolname = $1 AND d.datname = $2",
            &[&role, &database],
        )
        .await
        .unwrap()
        .get(0);
    assert!(untouched, "a squatter's role or database was taken over");
    second.kill();
    admin
        .batch_execute(&format!("DROP DATABASE \"{database}\""))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
    app.finish().await;
}
