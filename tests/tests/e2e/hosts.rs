//! Many database hosts: placement by free capacity across two real PostgreSQL servers, draining,
//! refusing a full fleet at signup, and refusing to remove a host that holds tenants.

use reqwest::StatusCode;

use crate::harness::{TestApp, cluster_b, connect, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_spread_over_hosts_and_a_full_or_drained_fleet_takes_no_more() {
    let app = TestApp::spawn().await;
    let b_admin_url = cluster_b().superuser_url("postgres");
    app.store
        .add_host(&app.keyring, "b", &b_admin_url, 2)
        .await
        .unwrap();
    let control = app.control_plane().await;
    control
        .execute("UPDATE database_hosts SET capacity = 2", &[])
        .await
        .unwrap();

    for slug in ["one", "two", "three", "four"] {
        app.active_tenant(slug).await;
    }
    let per_host: Vec<(String, i64)> = app
        .store
        .hosts()
        .await
        .unwrap()
        .iter()
        .map(|host| (host.name.clone(), host.tenant_count))
        .collect();
    assert_eq!(
        per_host,
        [("b".to_owned(), 2), ("local".to_owned(), 2)],
        "placed on the host with most room"
    );

    // Tenants on host b live in cluster b, and are served from there.
    let b = app.store.host_by_name("b").await.unwrap().unwrap();
    let b_server = connect(&b_admin_url).await.unwrap();
    for tenant in app
        .store
        .tenants()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.host_id == Some(b.id))
    {
        let found: i64 = b_server
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&tenant.database_name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, 1, "{} lives on cluster b", tenant.slug);
        let health = app.tenant_get(&tenant.slug, "/api/v1/health").await;
        assert_eq!(health.status(), StatusCode::OK);
    }

    // A full fleet: refused at signup with a clear error, nothing stored.
    let refused = app.signup_raw(&crate::harness::signup_body("five")).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(refused).await,
        (StatusCode::SERVICE_UNAVAILABLE, "no_capacity".to_owned())
    );
    assert!(app.store.tenant_by_slug("five").await.unwrap().is_none());

    // Room again, but b is draining: new tenants go to local only, until it is full too.
    control
        .execute("UPDATE database_hosts SET capacity = 3", &[])
        .await
        .unwrap();
    app.store.set_host_status("b", "draining").await.unwrap();
    app.active_tenant("five").await;
    let five = app.store.tenant_by_slug("five").await.unwrap().unwrap();
    assert_ne!(
        five.host_id,
        Some(b.id),
        "a draining host takes no new tenants"
    );
    let refused = app.signup_raw(&crate::harness::signup_body("six")).await;
    assert_eq!(error_code(refused).await.1, "no_capacity");

    // A host with tenants cannot be removed; its tenants keep being served.
    let b = app.store.host_by_name("b").await.unwrap().unwrap();
    let error = provisioner::remove_host(&app.store, &app.keyring, &b)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("still holds 2 tenants"),
        "{error}"
    );
    assert!(app.store.host_by_name("b").await.unwrap().is_some());

    // Clean up cluster b's databases (the harness only sweeps the first cluster).
    for tenant in app
        .store
        .tenants()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.host_id == Some(b.id))
    {
        let name = tenant.database_name.clone().unwrap();
        b_server
            .batch_execute(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .await
            .unwrap();
        b_server
            .batch_execute(&format!(
                "DROP ROLE \"{}\"",
                tenant.role_name.clone().unwrap()
            ))
            .await
            .unwrap();
    }
    control
        .execute("DELETE FROM tenants WHERE host_id = $1", &[&b.id])
        .await
        .unwrap();
    let b = app.store.host_by_name("b").await.unwrap().unwrap();
    provisioner::remove_host(&app.store, &app.keyring, &b)
        .await
        .unwrap();
    let templates_left: i64 = b_server
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE $1",
            // Only this host's: other tests build templates on cluster b at the same time.
            &[&format!(
                "silo_template_{}_%",
                &b.id.simple().to_string()[..12]
            )],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(templates_left, 0, "removing a host drops its templates");
    drop((control, b_server));
    app.finish().await;
}
