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

/// A host whose server is gone: removal is refused (`host_unreachable`, the record kept, nothing
/// else changed); `?forget=true` removes the record alone and names what was left on the server,
/// and the audit row says it was forgotten, not cleaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_server_is_gone_is_forgotten_naming_what_was_left_on_it() {
    use crate::admin::{admin_call, admin_token};
    let app = TestApp::spawn().await;
    let cluster = crate::harness::private_cluster("gone", 20);
    app.store
        .add_host(
            &app.keyring,
            "gone",
            &cluster.superuser_url("postgres"),
            5,
            "test",
        )
        .await
        .unwrap();
    let host = app.store.host_by_name("gone").await.unwrap().unwrap();
    app.store
        .record_template(host.id, 1, "silo_template_left")
        .await
        .unwrap();
    cluster.stop().unwrap();
    let token = admin_token(&app).await;

    let refused = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/hosts/gone",
        &token,
    )
    .send()
    .await
    .unwrap();
    let (status, code) = error_code(refused).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_GATEWAY, "host_unreachable")
    );
    let kept = app.store.host_by_name("gone").await.unwrap();
    assert!(kept.is_some(), "a refused removal keeps the record");

    let forgotten = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/admin/hosts/gone?forget=true",
        &token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(forgotten.status(), StatusCode::OK);
    let body: serde_json::Value = forgotten.json().await.unwrap();
    assert_eq!(
        body["left_behind"],
        serde_json::json!(["database silo_template_left"])
    );
    assert!(app.store.host_by_name("gone").await.unwrap().is_none());
    let control = app.control_plane().await;
    let detail: serde_json::Value = control
        .query_one(
            "SELECT detail::text FROM audit_log WHERE action = 'host.remove' \
             AND detail->>'host' = 'gone'",
            &[],
        )
        .await
        .map(|row| serde_json::from_str(row.get::<_, &str>(0)).unwrap())
        .unwrap();
    assert_eq!(detail["forgotten"], true, "{detail}");
    app.finish().await;
}
