//! Invariant 3 and the sealing requirements: no plaintext connection string in the control-plane
//! database, a ciphertext moved to another row fails, rotation keeps every tenant reachable.

use control_plane::{Keyring, Purpose};
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};

use crate::harness::{TestApp, TestOptions, error_code, superuser_url};

/// Every row of every table in the control-plane database, as text.
pub(crate) async fn dump_control_plane(app: &TestApp) -> String {
    let client = app.control_plane().await;
    let tables = client
        .query(
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
             WHERE table_schema IN ('public', 'apalis') AND table_type = 'BASE TABLE'",
            &[],
        )
        .await
        .unwrap();
    let mut dump = String::new();
    for table in tables {
        let name: String = table.get(0);
        for row in client
            .query(&format!("SELECT t::text FROM {name} t"), &[])
            .await
            .unwrap()
        {
            dump.push_str(&row.get::<_, String>(0));
            dump.push('\n');
        }
    }
    assert!(dump.contains("tenant_"), "the dump sees the tenant rows");
    dump
}

fn password_of(url: &SecretString) -> String {
    let config: tokio_postgres::Config = url.expose_secret().parse().unwrap();
    String::from_utf8(config.get_password().unwrap().to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_string_or_password_is_stored_in_clear() {
    let app = TestApp::spawn().await;
    app.active_tenant("secretive").await;
    let tenant_password = password_of(&app.tenant_url("secretive").await);
    let superuser_password = password_of(&superuser_url("postgres"));
    let dump = dump_control_plane(&app).await;
    for needle in [
        tenant_password.as_str(),
        superuser_password.as_str(),
        "postgres://",
        "postgresql://",
    ] {
        assert!(
            !dump.contains(needle),
            "the control-plane database holds a secret in clear"
        );
    }
    // Nor do the tenant-facing answers.
    let status = app
        .apex_get(&format!(
            "/api/v1/signups/{}",
            app.store
                .tenant_by_slug("secretive")
                .await
                .unwrap()
                .unwrap()
                .id
        ))
        .await;
    let text = status.text().await.unwrap();
    assert!(!text.contains(&tenant_password) && !text.contains("postgres://"));
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_copied_onto_another_tenant_fails_to_open() {
    let app = TestApp::spawn().await;
    app.active_tenant("victim").await;
    app.active_tenant("thief").await;
    let victim = app.store.tenant_by_slug("victim").await.unwrap().unwrap();
    let thief = app.store.tenant_by_slug("thief").await.unwrap().unwrap();
    let control = app.control_plane().await;
    control
        .execute(
            "UPDATE tenants SET sealed_database_url = v.sealed_database_url, database_url_key_id = v.database_url_key_id \
             FROM tenants v WHERE v.id = $1 AND tenants.id = $2",
            &[&victim.id, &thief.id],
        )
        .await
        .unwrap();
    let swapped = app.store.tenant(thief.id).await.unwrap();
    assert!(
        app.keyring
            .open(
                Purpose::TenantDatabaseUrl,
                thief.id,
                swapped.sealed_database_url.as_ref().unwrap()
            )
            .is_err()
    );
    // The thief's host is not served from the victim's database; it is unavailable instead.
    let response = app.tenant_get("thief", "/api/v1/health").await;
    assert_eq!(
        error_code(response).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "tenant_unavailable".to_owned()
        )
    );
    let victim_health = app.tenant_get("victim", "/api/v1/health").await;
    assert_eq!(victim_health.status(), StatusCode::OK);
    drop(control);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_everything_and_old_keys_can_then_go() {
    let old_key = Keyring::generate_entry("old");
    let mut app = TestApp::spawn_with(TestOptions {
        keys: Some(old_key.clone()),
        ..Default::default()
    })
    .await;
    app.active_tenant("rotating").await;
    app.active_tenant("spinning").await;
    app.stop().await;

    let new_key = Keyring::generate_entry("new");
    let both = Keyring::parse(&SecretString::from(format!(
        "{},{}",
        new_key.expose_secret(),
        old_key.expose_secret()
    )))
    .unwrap();
    let report = app.store.reseal_all(&both).await.unwrap();
    assert_eq!((report.tenants, report.hosts), (2, 1));
    // Running it again finds nothing left to do.
    let again = app.store.reseal_all(&both).await.unwrap();
    assert_eq!((again.tenants, again.hosts), (0, 0));
    let control = app.control_plane().await;
    let key_ids: Vec<String> = control
        .query("SELECT database_url_key_id FROM tenants UNION ALL SELECT admin_url_key_id FROM database_hosts", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(key_ids, ["new", "new", "new"]);

    // With only the new key loaded, every tenant is still served and new signups still work.
    let app = TestApp::spawn_with(TestOptions {
        keys: Some(new_key),
        database: Some(app.database.clone()),
        ..Default::default()
    })
    .await;
    for slug in ["rotating", "spinning"] {
        let response = app.tenant_get(slug, "/api/v1/health").await;
        assert_eq!(response.status(), StatusCode::OK, "{slug} after rotation");
    }
    app.active_tenant("afterwards").await;
    drop(control);
    app.finish().await;
}
