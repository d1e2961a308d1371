//! TLS to PostgreSQL: with the control-plane database and the tenant host on a cluster that
//! takes TLS only (`hostssl`), and every URL saying `sslmode=verify-full` with the test's own CA,
//! signup, routing, a rollout, and export and restore (pg_dump/pg_restore) all work; a wrong CA
//! fails with an error naming the server, plain text is refused, and `verify-ca` is the one
//! that forgives a certificate naming another host.

use control_plane::Store;
use control_plane::connect::{ConnectError, ConnectOptions, connect_url};
use control_plane::rollouts::{FailureLimit, RolloutState};
use control_plane::store::StoreError;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;

use crate::harness::{TestApp, TestOptions, TlsCluster, connect};
use crate::offboarding::{export_dir, export_on_demand, restore_export};
use crate::rollouts::{extra_migrations, spec, tenant_history, wait_for_state};
use crate::session::Session;

/// Whether `client`'s own connection is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn tls_cluster(name: &'static str) -> TlsCluster {
    tokio::task::spawn_blocking(move || TlsCluster::start(name))
        .await
        .expect("the TLS cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_routing_rollouts_export_and_restore_work_over_verified_tls() {
    let tls = tls_cluster("tls-flow").await;
    let verify_full = tls.parameters("verify-full", &tls.ca_file);
    let mut app = TestApp::spawn_with(TestOptions {
        control_plane: Some(tls.cluster),
        url_parameters: Some(verify_full.clone()),
        migrations: Some(extra_migrations()),
        ..Default::default()
    })
    .await;

    // The default host is the TLS cluster, and tenants inherit its TLS parameters.
    app.active_tenant("secure").await;
    let tenant_url = app.tenant_url("secure").await;
    assert!(
        tenant_url
            .expose_secret()
            .ends_with(&format!("?{verify_full}")),
        "the tenant URL carries the host's sslmode and sslrootcert"
    );
    let tenant_client = connect(&tenant_url).await.unwrap();
    assert!(encrypted(&tenant_client).await);

    // Routed requests: through the router's pool to the tenant's database, over TLS.
    let owner = Session::owner(&app, "secure").await;
    owner
        .expect(
            Method::POST,
            "/api/v1/suppliers",
            Some(serde_json::json!({"name": "Encrypted Supplies"})),
            StatusCode::CREATED,
        )
        .await;
    let suppliers = owner
        .expect(Method::GET, "/api/v1/suppliers", None, StatusCode::OK)
        .await;
    assert!(
        suppliers.to_string().contains("Encrypted Supplies"),
        "{suppliers}"
    );
    let router_connections: i64 = tenant_client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity JOIN pg_stat_ssl USING (pid) \
             WHERE application_name = 'silo-router' AND ssl",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        router_connections >= 1,
        "the router's pool holds TLS connections"
    );

    // A rollout, driven by the app's own workers.
    let rollout = app
        .store
        .create_rollout(&spec(3, &[100], FailureLimit::Count(0)))
        .await
        .unwrap();
    wait_for_state(&app, rollout, RolloutState::Completed).await;
    assert_eq!(tenant_history(&app, "secure").await, (3, 3, 3));

    // Export and restore: pg_dump and pg_restore reach the hostssl-only server too.
    let tenant = app.store.tenant_by_slug("secure").await.unwrap().unwrap();
    let backup = export_on_demand(&app, &tenant).await;
    tenant_client
        .batch_execute("DELETE FROM suppliers WHERE name = 'Encrypted Supplies'")
        .await
        .unwrap();
    assert_eq!(restore_export(&app, &tenant, &backup).await, 3);
    let suppliers = owner
        .expect(Method::GET, "/api/v1/suppliers", None, StatusCode::OK)
        .await;
    assert!(
        suppliers.to_string().contains("Encrypted Supplies"),
        "the restored database is served: {suppliers}"
    );

    app.stop().await;
    let _ = std::fs::remove_dir_all(export_dir(&app));
    tls.cluster.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_names_the_server_and_plain_text_is_refused() {
    let tls = tls_cluster("tls-refusals").await;
    let port = tls.cluster.port();
    let options = ConnectOptions::named("silo-test");

    // The wrong CA under verify-full: refused by us, naming the server, never the password.
    let wrong = tls.url(
        "postgres",
        &tls.parameters("verify-full", &tls.wrong_ca_file),
    );
    let error = connect_url(&wrong, options).await.unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    assert_eq!(error.code(), "tls_failed");
    let message = error.to_string();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
    let password = tls.cluster.superuser_url("postgres");
    let password = password
        .expose_secret()
        .split([':', '@'])
        .nth(2)
        .unwrap()
        .to_owned();
    assert!(!message.contains(&password), "{message}");

    // The same on the control-plane store's side (sqlx).
    let store_error = Store::connect(&wrong, 1).await.unwrap_err();
    assert!(
        matches!(store_error, StoreError::Connect(ConnectError::Tls { .. })),
        "{store_error}"
    );
    assert!(
        store_error
            .to_string()
            .contains(&format!("127.0.0.1:{port}")),
        "{store_error}"
    );

    // The right CA: verify-full and verify-ca connect; require and prefer encrypt unverified.
    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let url = tls.url("postgres", &tls.parameters(mode, &tls.ca_file));
        let client = connect_url(&url, options)
            .await
            .unwrap_or_else(|error| panic!("{mode}: {error}"));
        assert!(encrypted(&client).await, "{mode}");
    }
    let store = Store::connect(
        &tls.url(
            "silo_tls_store",
            &tls.parameters("verify-full", &tls.ca_file),
        ),
        1,
    )
    .await
    .unwrap();
    assert!(store.ping().await);
    store.pool().close().await;
    // On the control-plane store, verify-ca (and require with a CA) is refused before any
    // connection: sqlx would trust the public CAs beside the given one for any host name.
    for mode in ["verify-ca", "require"] {
        let url = tls.url("silo_tls_store", &tls.parameters(mode, &tls.ca_file));
        let refused = Store::connect(&url, 1).await.unwrap_err();
        assert!(
            matches!(
                refused,
                StoreError::Connect(ConnectError::VerifyCaOnControlPlane)
            ),
            "{mode}: {refused}"
        );
        assert!(refused.to_string().contains("verify-full"), "{refused}");
    }

    // A certificate that does not name the host: verify-full refuses, verify-ca does not check
    // names. (TCP to 127.0.0.1, TLS name `db.invalid`.)
    let renamed = |mode: &str| {
        let url = tls.url(
            "postgres",
            &format!("hostaddr=127.0.0.1&{}", tls.parameters(mode, &tls.ca_file)),
        );
        secrecy::SecretString::from(url.expose_secret().replace("@127.0.0.1:", "@db.invalid:"))
    };
    let error = connect_url(&renamed("verify-full"), options)
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    assert!(error.to_string().contains("db.invalid"), "{error}");
    connect_url(&renamed("verify-ca"), options)
        .await
        .expect("verify-ca does not check the name");

    // Plain text: the server's hostssl-only pg_hba.conf refuses it.
    let plain = tls.url("postgres", "sslmode=disable");
    let error = connect_url(&plain, options).await.unwrap_err();
    let ConnectError::Postgres(refusal) = &error else {
        panic!("refused by the server, not by us: {error}")
    };
    assert_eq!(
        refusal.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION),
        "{error}"
    );
    assert!(error.to_string().contains("no encryption"), "{error}");
    let store_error = Store::connect(&plain, 1).await.unwrap_err();
    assert!(
        store_error.to_string().contains("no encryption"),
        "{store_error}"
    );

    // An sslmode nobody knows: a clear error before any connection.
    let unknown = tls.url("postgres", "sslmode=verify_full");
    let error = Store::connect(&unknown, 1).await.unwrap_err();
    assert!(error.to_string().contains("`verify_full`"), "{error}");
    tls.cluster.stop().unwrap();
}
