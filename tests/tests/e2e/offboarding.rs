//! Offboarding and backups: cancelling stops serving at once (on every router, through
//! LISTEN/NOTIFY), a worker exports the tenant with pg_dump, and after the grace period its
//! database and role are dropped; on-demand export and restore round-trip a tenant's data, and a
//! bad archive changes nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use control_plane::model::TenantStatus;
use control_plane::tenants::{TenantExport, TenantRecord};
use provisioner::offboarding::{OffboardError, export, restore};
use reqwest::StatusCode;

use crate::harness::{TestApp, connect, superuser_client};

/// Polls the control plane until `check` holds for the tenant (or 30 s pass).
async fn wait_until(
    app: &TestApp,
    slug: &str,
    what: &str,
    check: impl Fn(&TenantRecord, usize) -> bool,
) -> TenantRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tenant = app.store.tenant_by_slug(slug).await.unwrap().unwrap();
        let exports = app.store.exports_of(tenant.id).await.unwrap().len();
        if check(&tenant, exports) {
            return tenant;
        }
        assert!(Instant::now() < deadline, "{slug} never {what}: {tenant:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// This test's export folder.
pub(crate) fn export_dir(app: &TestApp) -> std::path::PathBuf {
    crate::harness::test_root()
        .join("exports")
        .join(&app.database)
}

/// An on-demand export of the tenant into [`export_dir`].
pub(crate) async fn export_on_demand(app: &TestApp, tenant: &TenantRecord) -> TenantExport {
    export(
        &app.store,
        &app.keyring,
        tenant,
        "on_demand",
        &export_dir(app),
        None,
    )
    .await
    .unwrap()
}

/// Restores `backup` over the tenant as an operator; the restored schema version.
pub(crate) async fn restore_export(
    app: &TestApp,
    tenant: &TenantRecord,
    backup: &TenantExport,
) -> i32 {
    restore(
        &app.store,
        &app.keyring,
        tenant,
        Path::new(&backup.path),
        "test:operator",
    )
    .await
    .unwrap()
}

async fn exists_on_cluster(kind: &str, name: &str) -> bool {
    let admin = superuser_client("postgres").await;
    let query = match kind {
        "database" => "SELECT count(*) FROM pg_database WHERE datname = $1",
        _ => "SELECT count(*) FROM pg_roles WHERE rolname = $1",
    };
    let count: i64 = admin.query_one(query, &[&name]).await.unwrap().get(0);
    count == 1
}

/// The table names a pg_dump archive holds, read with pg_restore --list.
fn archive_tables(file: &Path) -> Vec<String> {
    let pg_restore = control_plane::embedded_postgres::find_tool("pg_restore").unwrap();
    let output = std::process::Command::new(pg_restore)
        .arg("--list")
        .arg(file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{file:?} is a valid archive");
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| line.contains(" TABLE public "))
        .filter_map(|line| line.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_stops_serving_at_once_then_exports_and_drops_after_the_grace_period() {
    let app = TestApp::spawn().await;
    app.active_tenant("leaving").await;
    app.active_tenant("lingering").await;
    app.active_tenant("staying").await;
    // Served, and therefore cached by the router (for an hour in tests).
    for slug in ["leaving", "lingering", "staying"] {
        assert_eq!(
            app.tenant_get(slug, "/api/v1/health").await.status(),
            StatusCode::OK
        );
    }
    let leaving = app.store.tenant_by_slug("leaving").await.unwrap().unwrap();
    let lingering = app
        .store
        .tenant_by_slug("lingering")
        .await
        .unwrap()
        .unwrap();

    app.store
        .cancel_tenant(leaving.id, Duration::ZERO, "test:operator")
        .await
        .unwrap();
    app.store
        .cancel_tenant(lingering.id, Duration::from_secs(3600), "test:operator")
        .await
        .unwrap();
    app.wait_for_error("leaving", StatusCode::GONE, "tenant_cancelled")
        .await;
    app.wait_for_error("lingering", StatusCode::GONE, "tenant_cancelled")
        .await;

    // Cancelling twice is refused and changes nothing.
    let again = app
        .store
        .cancel_tenant(lingering.id, Duration::ZERO, "test:operator")
        .await
        .unwrap_err();
    assert!(again.to_string().contains("cancelled"), "{again}");

    // Past its (zero) grace period: exported, then dropped, then deprovisioned.
    let gone = wait_until(&app, "leaving", "deprovisioned", |tenant, _| {
        tenant.status == TenantStatus::Deprovisioned
    })
    .await;
    assert!(
        gone.sealed_database_url.is_none(),
        "no connection string kept"
    );
    assert!(gone.host_id.is_none(), "no longer counts against its host");
    let database = leaving.database_name.clone().unwrap();
    let role = leaving.role_name.clone().unwrap();
    assert!(!exists_on_cluster("database", &database).await);
    assert!(!exists_on_cluster("role", &role).await);
    let exports = app.store.exports_of(leaving.id).await.unwrap();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].reason, "offboarding");
    let file = Path::new(&exports[0].path);
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o777,
        0o600,
        "exports are private"
    );
    assert!(exports[0].bytes > 0);
    let tables = archive_tables(file);
    for table in ["users", "items", "sales", "branches"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
    let actions: Vec<String> = app
        .store
        .audit_of(leaving.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, action, _)| action.starts_with("tenant."))
        .map(|(actor, action, _)| format!("{actor} {action}"))
        .collect();
    assert_eq!(
        actions,
        [
            "test:operator tenant.cancel",
            "system:offboarding tenant.deprovision"
        ]
    );
    assert_eq!(
        app.tenant_get("leaving", "/api/v1/health").await.status(),
        StatusCode::GONE
    );

    // Within its grace period: exported, but its database is kept.
    let kept = wait_until(&app, "lingering", "exported", |_, exports| exports == 1).await;
    assert_eq!(kept.status, TenantStatus::Cancelled);
    assert!(exists_on_cluster("database", &lingering.database_name.clone().unwrap()).await);

    // Others are untouched, and the host counts only tenants that still have a database.
    assert_eq!(
        app.tenant_get("staying", "/api/v1/health").await.status(),
        StatusCode::OK
    );
    assert_eq!(app.store.hosts().await.unwrap()[0].tenant_count, 2);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_restore_round_trip_and_a_bad_archive_changes_nothing() {
    let app = TestApp::spawn().await;
    app.active_tenant("backed").await;
    let tenant = app.store.tenant_by_slug("backed").await.unwrap().unwrap();
    let url = app.tenant_url("backed").await;
    let client = connect(&url).await.unwrap();
    client
        .batch_execute("INSERT INTO branches (code, name) VALUES ('KEEP', 'Kept branch')")
        .await
        .unwrap();
    let backup = export_on_demand(&app, &tenant).await;
    let dir = export_dir(&app);
    assert_eq!(
        app.store.exports_of(tenant.id).await.unwrap()[0].reason,
        "on_demand"
    );
    client
        .batch_execute(
            "DELETE FROM branches WHERE code = 'KEEP'; \
             INSERT INTO branches (code, name) VALUES ('LATER', 'Made after the backup')",
        )
        .await
        .unwrap();
    let codes = |client: tokio_postgres::Client| async move {
        let rows = client
            .query(
                "SELECT code FROM branches WHERE code IN ('KEEP', 'LATER') ORDER BY code",
                &[],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
    };

    // A file that is not an archive: refused before anything is touched.
    let garbage = dir.join("garbage.dump");
    std::fs::write(&garbage, b"not a pg_dump archive").unwrap();
    let refused = restore(&app.store, &app.keyring, &tenant, &garbage, "test:operator")
        .await
        .unwrap_err();
    assert!(
        matches!(refused, OffboardError::InvalidBackup(..)),
        "{refused}"
    );
    assert_eq!(codes(connect(&url).await.unwrap()).await, ["LATER"]);

    // The real archive: the data is back as it was, owned by the tenant's role, served again.
    let version = restore_export(&app, &tenant, &backup).await;
    assert_eq!(version, tenant_schema::latest_version());
    // Its old connections were ended; a fresh one, as the tenant's own role, sees the backup.
    assert_eq!(codes(connect(&url).await.unwrap()).await, ["KEEP"]);
    let health: serde_json::Value = app
        .tenant_get("backed", "/api/v1/health")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(health["schema_version"], version);
    let admin = superuser_client("postgres").await;
    let leftovers: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'silo_restore_%' \
             OR datname LIKE 'silo_replaced_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    let audit = app.store.audit_of(tenant.id).await.unwrap();
    assert_eq!(audit.last().unwrap().1, "tenant.restore");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_archive_runs_with_the_tenants_privileges_only() {
    let app = TestApp::spawn().await;
    app.active_tenant("crafted").await;
    let tenant = app.store.tenant_by_slug("crafted").await.unwrap().unwrap();
    let url = app.tenant_url("crafted").await;
    let padding = "X".repeat(120);
    connect(&url)
        .await
        .unwrap()
        .batch_execute(&format!(
            "COMMENT ON TABLE branches IS '{padding}'; \
             INSERT INTO branches (code, name) VALUES ('KEEP', 'Kept branch')"
        ))
        .await
        .unwrap();
    let backup = export_on_demand(&app, &tenant).await;
    // The archive's table of contents holds each entry's SQL as plain text: rewrite the
    // comment's, keeping its length, into statements that leave the restoring role.
    let escaped_role = format!("silo_escaped_{}", std::process::id());
    let payload = format!("';RESET ROLE;CREATE ROLE {escaped_role} SUPERUSER;--");
    let payload = format!("{payload:X<width$}", width = padding.len());
    let mut archive = std::fs::read(&backup.path).unwrap();
    let at = archive
        .windows(padding.len())
        .position(|window| window == padding.as_bytes())
        .expect("the comment is in the archive's table of contents");
    archive[at..at + padding.len()].copy_from_slice(payload.as_bytes());
    let crafted = export_dir(&app).join("crafted.dump");
    std::fs::write(&crafted, &archive).unwrap();

    let refused = restore(&app.store, &app.keyring, &tenant, &crafted, "test:operator").await;
    assert!(
        refused.is_err(),
        "restored as a role that may create superusers"
    );
    assert!(
        !exists_on_cluster("role", &escaped_role).await,
        "the archive left the tenant's role"
    );
    // Nothing changed: the tenant's data is as it was.
    let kept: i64 = connect(&url)
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM branches WHERE code = 'KEEP'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1);
    app.finish().await;
}
