//! Many database hosts: placement by free capacity across two real PostgreSQL servers, draining,
//! refusing a full fleet at signup, and refusing to remove a host that holds tenants.

use reqwest::StatusCode;

use crate::harness::{TestApp, cluster_b, connect, error_code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_spread_over_hosts_and_a_full_or_drained_fleet_takes_no_more() {
    let app = TestApp::spawn().await;
    let b_admin_url = cluster_b().superuser_url("postgres");
    app.store
        .add_host(&app.keyring, "b", &b_admin_url, 2, "test")
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
    app.store
        .set_host_status("b", "draining", "test")
        .await
        .unwrap();
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
    let error = provisioner::remove_host(&app.store, &app.keyring, &b, "test")
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
    provisioner::remove_host(&app.store, &app.keyring, &b, "test")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_commands_from_the_cli_are_audited_like_the_admin_api() {
    use clap::Parser as _;
    let app = TestApp::spawn().await;
    let started = silo::bootstrap::Bootstrapped {
        settings: crate::harness::test_settings(&app.database, &app.keys),
        store: app.store.clone(),
        keyring: app.keyring.clone(),
        embedded: None,
    };
    let admin_url = cluster_b().superuser_url("postgres");
    let run = |args: Vec<String>| {
        let cli = silo::cli::Cli::try_parse_from(
            ["silo".to_owned(), "hosts".to_owned()]
                .into_iter()
                .chain(args),
        )
        .unwrap_or_else(|error| panic!("`silo hosts` parses: {error}"));
        let silo::cli::Command::Hosts(command) = cli.command else {
            panic!("a hosts command");
        };
        silo::hosts::run(&started, command)
    };
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut add = words("add --name spare --capacity 5 --admin-url");
    add.push(secrecy::ExposeSecret::expose_secret(&admin_url).to_owned());
    run(add).await.unwrap();
    run(words("drain spare")).await.unwrap();
    run(words("activate spare")).await.unwrap();
    // Refused, changing nothing and auditing nothing: an unknown host.
    assert!(run(words("drain nowhere")).await.is_err());
    run(words("remove spare")).await.unwrap();
    assert!(app.store.host_by_name("spare").await.unwrap().is_none());

    let control = app.control_plane().await;
    let rows = control
        .query(
            "SELECT actor, action, detail::text FROM audit_log \
             WHERE action LIKE 'host.%' AND detail->>'host' = 'spare' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let audit: Vec<(String, String, serde_json::Value)> = rows
        .iter()
        .map(|row| {
            let detail: String = row.get(2);
            (
                row.get(0),
                row.get(1),
                serde_json::from_str(&detail).unwrap(),
            )
        })
        .collect();
    let actions: Vec<&str> = audit.iter().map(|(_, action, _)| action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "host.add",
            "host.set_status",
            "host.set_status",
            // Removal of an active host stops refills first, then deletes the record.
            "host.set_status",
            "host.remove"
        ],
        "{audit:?}"
    );
    for (actor, _, detail) in &audit {
        assert!(actor.starts_with("cli:"), "{actor}");
        assert_eq!(detail["host"], "spare");
        assert!(
            !detail.to_string().contains("postgres://"),
            "no URL in the audit log: {detail}"
        );
    }
    assert_eq!(audit[1].2["before"], "active");
    assert_eq!(audit[1].2["after"], "draining");
    assert_eq!(audit[2].2["after"], "active");
}
