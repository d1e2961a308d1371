//! The test harness: one embedded PostgreSQL cluster per test run (shared, made by the same code
//! `silo dev` uses), a fresh control-plane database per test — dropped on success, kept on
//! failure for inspection and swept by a later run — and the application spawned on port 0.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use control_plane::model::{SignupAccepted, SignupStatus, TenantStatus};
use control_plane::settings::Settings;
use control_plane::{Keyring, Store};
use reqwest::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use silo::bootstrap::{Bootstrapped, bootstrap};
use silo::{Application, ApplicationOptions};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Test control-plane databases older than this are from an earlier run and are swept.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// `$TMPDIR/silo-tests-<checkout>`: one folder per checkout, so test runs of two checkouts at
/// once never share (and so never stop) each other's clusters.
pub fn test_root() -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_MANIFEST_DIR").hash(&mut hasher);
    std::env::temp_dir().join(format!("silo-tests-{:08x}", hasher.finish() as u32))
}

/// Stops `cluster` when the test process ends, whichever way it ends, if this process started
/// it. Under cargo-nextest every test is a process of its own sharing the clusters, so there
/// the clusters are left running (and `.ci/run` stops them).
fn stop_at_exit(cluster: EmbeddedPostgres) -> EmbeddedPostgres {
    if cluster.started_here() && std::env::var_os("NEXTEST_RUN_ID").is_none() {
        let watcher = cluster
            .stop_when_this_process_exits()
            .expect("the cluster's exit watcher starts");
        // The pipe must stay open until the process ends; its closing stops the cluster.
        Box::leak(Box::new(watcher));
    }
    cluster
}

/// The shared test cluster, started (or attached to) once per test process.
pub fn cluster() -> &'static EmbeddedPostgres {
    static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = test_root().join("cluster-a");
        stop_at_exit(
            EmbeddedPostgres::start(
                &dir,
                ClusterOptions {
                    ephemeral: true,
                    // Many apps run at once, each with pools, workers and routers.
                    max_connections: 1000,
                },
            )
            .expect("the test PostgreSQL cluster starts (are the server binaries installed?)"),
        )
    })
}

/// A second cluster, for tests where database hosts matter.
pub fn cluster_b() -> &'static EmbeddedPostgres {
    static CLUSTER: OnceLock<EmbeddedPostgres> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        stop_at_exit(
            EmbeddedPostgres::start(
                &test_root().join("cluster-b"),
                ClusterOptions {
                    ephemeral: true,
                    max_connections: 100,
                },
            )
            .expect("the second test cluster starts"),
        )
    })
}

fn start_private(name: &str, max_connections: u32) -> EmbeddedPostgres {
    EmbeddedPostgres::start(
        &test_root().join(format!("cluster-{name}")),
        ClusterOptions {
            ephemeral: true,
            max_connections,
        },
    )
    .expect("a private test cluster starts")
}

/// A cluster of the test's own, which it may stop and restart; made fresh under
/// `cluster-<name>` (the CI script stops any left running).
pub fn private_cluster(name: &str, max_connections: u32) -> &'static EmbeddedPostgres {
    let dir = test_root().join(format!("cluster-{name}"));
    if dir.exists() {
        let _ = start_private(name, max_connections).stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
    Box::leak(Box::new(stop_at_exit(start_private(name, max_connections))))
}

/// Starts a stopped private cluster again, on its old port with its data.
pub async fn restart_private_cluster(name: &'static str, max_connections: u32) -> EmbeddedPostgres {
    tokio::task::spawn_blocking(move || start_private(name, max_connections))
        .await
        .expect("cluster start does not panic")
}

/// A private cluster that speaks only TLS (`ssl = on`, `hostssl`-only `pg_hba.conf`), with a CA
/// and a server certificate (for `localhost` and `127.0.0.1`) made here with rcgen, and a second
/// CA that signed nothing, to be the wrong one.
pub struct TlsCluster {
    pub cluster: &'static EmbeddedPostgres,
    /// The PEM file of the CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// The PEM file of a CA that did not.
    pub wrong_ca_file: PathBuf,
}

impl TlsCluster {
    /// Starts `cluster-<name>` fresh and switches it to TLS only (blocking).
    pub fn start(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

        let cluster = private_cluster(name, 200);
        let dir = test_root().join(format!("cluster-{name}"));
        let pgdata = dir.join("postgres");
        let make_ca = |common_name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let key = KeyPair::generate().unwrap();
            let certificate = params.self_signed(&key).unwrap();
            (certificate.pem(), Issuer::new(params, key))
        };
        let (ca_pem, issuer) = make_ca("Silo test CA");
        let (wrong_ca_pem, _) = make_ca("Some other CA");
        let server_key = KeyPair::generate().unwrap();
        let server_certificate =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap()
                .signed_by(&server_key, &issuer)
                .unwrap();
        let ca_file = dir.join("ca.pem");
        let wrong_ca_file = dir.join("wrong-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        std::fs::write(&wrong_ca_file, wrong_ca_pem).unwrap();

        // The server reads its certificate and key from its data folder, as its own user;
        // the key must be private to that user.
        let owner = std::fs::metadata(&pgdata).unwrap();
        let server_files = [
            ("server.crt", server_certificate.pem()),
            ("server.key", server_key.serialize_pem()),
            (
                "pg_hba.conf",
                "hostssl all all 127.0.0.1/32 scram-sha-256\n".to_owned(),
            ),
        ];
        for (file, contents) in server_files {
            let path = pgdata.join(file);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, b"ssl = on\n").unwrap();
        drop(conf);

        // Reload over a plain connection (still allowed until the reload), then wait until
        // plain text is refused.
        let plain = cluster.superuser_url("postgres");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            connect(&plain)
                .await
                .unwrap()
                .execute("SELECT pg_reload_conf()", &[])
                .await
                .unwrap();
            let plain = SecretString::from(format!("{}?sslmode=disable", plain.expose_secret()));
            let deadline = Instant::now() + Duration::from_secs(10);
            while connect(&plain).await.is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "the cluster still takes plain text"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self {
            cluster,
            ca_file,
            wrong_ca_file,
        }
    }

    /// `sslmode=verify-full&sslrootcert=<ca file>` (or the given mode and CA).
    pub fn parameters(&self, mode: &str, ca_file: &std::path::Path) -> String {
        format!("sslmode={mode}&sslrootcert={}", ca_file.display())
    }

    /// The superuser URL of `database` with `parameters` appended.
    pub fn url(&self, database: &str, parameters: &str) -> SecretString {
        SecretString::from(format!(
            "{}?{parameters}",
            self.cluster.superuser_url(database).expose_secret()
        ))
    }
}

pub fn superuser_url(database: &str) -> SecretString {
    cluster().superuser_url(database)
}

/// A plain tokio-postgres client as the cluster's superuser: the test's view of the truth.
pub async fn superuser_client(database: &str) -> tokio_postgres::Client {
    connect(&superuser_url(database))
        .await
        .expect("superuser connects")
}

/// A plain tokio-postgres client on `url`, with the URL's `sslmode` and `sslrootcert` applied as
/// Silo applies them.
pub async fn connect(url: &SecretString) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let target = control_plane::connect::Target::parse(url).expect("test URLs parse");
    let tls = target
        .tls
        .connector()
        .expect("test TLS settings are usable");
    let (client, connection) = target.config.connect(tls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Drops control-plane test databases (and their tenants' databases and roles) left by runs
/// that ended more than [`STALE_AFTER`] ago.
async fn sweep_stale() {
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT
        .get_or_init(|| async {
            let admin = superuser_client("postgres").await;
            let rows = admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'silo_test_%'",
                    &[],
                )
                .await
                .expect("list test databases");
            let cutoff = unix_seconds().saturating_sub(STALE_AFTER.as_secs());
            for row in rows {
                let name: String = row.get(0);
                let created: u64 = name
                    .split('_')
                    .nth(2)
                    .and_then(|part| part.parse().ok())
                    .unwrap_or(0);
                if created < cutoff {
                    drop_control_plane(&admin, &name).await;
                }
            }
        })
        .await;
}

async fn drop_control_plane(admin: &tokio_postgres::Client, database: &str) {
    if let Ok(control) = connect(&superuser_url(database)).await {
        // Tenant, warm-pool and template databases (templates have no role of their own).
        let tenants = control
            .query(
                "SELECT database_name, role_name FROM tenants \
                 UNION ALL SELECT database_name, role_name FROM warm_databases \
                 UNION ALL SELECT database_name, NULL FROM host_templates",
                &[],
            )
            .await
            .unwrap_or_default();
        drop(control);
        for tenant in tenants {
            if let Some(name) = tenant.get::<_, Option<String>>(0) {
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await;
            }
            if let Some(role) = tenant.get::<_, Option<String>>(1) {
                let _ = admin
                    .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                    .await;
            }
        }
    }
    let _ = admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .await;
}

/// Options a test may change before the app starts.
pub struct TestOptions {
    pub run_workers: bool,
    pub warm_pool: u32,
    pub signups_per_minute: Option<u32>,
    pub keys: Option<SecretString>,
    pub database: Option<String>,
    pub migrations: Option<migrator::MigrationSet>,
    /// Where the control-plane database lives (default: the shared cluster).
    pub control_plane: Option<&'static EmbeddedPostgres>,
    /// Query parameters for the control-plane URL (and so the default host's), e.g. TLS ones.
    pub url_parameters: Option<String>,
    /// Changes to the settings before the app starts.
    pub configure: Option<fn(&mut Settings)>,
    /// Stripe's API base and secret key: a local server of the test's own.
    pub stripe: Option<(String, SecretString)>,
    /// `SILO_SMTP_URL`: an SMTP receiver of the test's own (default: `.eml` files in the
    /// test's own outbox folder).
    pub smtp_url: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            run_workers: true,
            warm_pool: 0,
            signups_per_minute: None,
            keys: None,
            database: None,
            migrations: None,
            control_plane: None,
            url_parameters: None,
            configure: None,
            stripe: None,
            smtp_url: None,
        }
    }
}

/// A running Silo on port 0 with its own control-plane database.
pub struct TestApp {
    pub address: std::net::SocketAddr,
    pub http: reqwest::Client,
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub database: String,
    pub keys: SecretString,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_settings(database: &str, keys: &SecretString) -> Settings {
    let mut settings = Settings {
        database_url: Some(superuser_url(database)),
        master_keys: Some(keys.clone()),
        http_addr: "127.0.0.1:0".parse().expect("a literal address"),
        data_dir: test_root().join("data"),
        ..Settings::default()
    };
    settings.provisioning.retry_backoff = Duration::from_millis(50);
    settings.provisioning.max_attempts = 3;
    settings.provisioning.heartbeat_interval = Duration::from_secs(1);
    // Tests sign up many tenants from one address; the limit has a test of its own.
    settings.signups_per_client_per_minute = 10_000;
    // Routers must learn of changes through LISTEN/NOTIFY, not by waiting out a TTL.
    settings.router.tenant_cache_ttl = Duration::from_secs(3600);
    settings.offboarding.export_dir = Some(test_root().join("exports").join(database));
    settings.offboarding.check_interval = Duration::from_millis(100);
    // Domain verification asks the tests' own DNS server on loopback.
    settings.domains.resolver = Some(crate::test_dns::dns().address);
    settings.domains.lookup_timeout = Duration::from_secs(1);
    // Mails are files in an outbox of this test's own unless it starts an SMTP receiver; a
    // failed send is tried again within a second or two.
    settings.mail.outbox_dir = Some(outbox_dir(database));
    settings.mail.retry_max_backoff = Duration::from_secs(1);
    settings
}

/// Where a test's mails go as `.eml` files when it has no SMTP receiver.
pub fn outbox_dir(database: &str) -> PathBuf {
    test_root().join("mail").join(database)
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        tokio::task::spawn_blocking(cluster)
            .await
            .expect("cluster start does not panic");
        sweep_stale().await;
        let database = options.database.unwrap_or_else(|| {
            format!(
                "silo_test_{}_{}",
                unix_seconds(),
                &Uuid::new_v4().simple().to_string()[..8]
            )
        });
        let keys = options
            .keys
            .unwrap_or_else(|| Keyring::generate_entry("test1"));
        let mut settings = test_settings(&database, &keys);
        if let Some(cluster) = options.control_plane {
            settings.database_url = Some(cluster.superuser_url(&database));
        }
        if let (Some(parameters), Some(url)) = (&options.url_parameters, &settings.database_url) {
            settings.database_url = Some(SecretString::from(format!(
                "{}?{parameters}",
                url.expose_secret()
            )));
        }
        if let Some((base, key)) = options.stripe {
            settings.billing.stripe_api_base = base;
            settings.billing.stripe_secret_key = Some(key);
        }
        if let Some(url) = options.smtp_url {
            settings.mail.smtp_url = Some(SecretString::from(url));
        }
        if let Some(configure) = options.configure {
            configure(&mut settings);
        }
        settings.provisioning.warm_pool = options.warm_pool;
        if let Some(per_minute) = options.signups_per_minute {
            settings.signups_per_client_per_minute = per_minute;
        }
        let Bootstrapped {
            settings,
            store,
            keyring,
            ..
        } = bootstrap(settings, &|_| {})
            .await
            .expect("bootstrap succeeds");
        let application = Application::build(ApplicationOptions {
            settings,
            store: store.clone(),
            keyring: keyring.clone(),
            serve_http: true,
            run_workers: options.run_workers,
            migrations: options
                .migrations
                .unwrap_or_else(migrator::MigrationSet::embedded),
        })
        .await
        .expect("application builds");
        let address = application.address().expect("serving HTTP");
        let (stop, stopped) = oneshot::channel::<()>();
        let running = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            address,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("reqwest client builds"),
            store,
            keyring,
            database,
            keys,
            stop: Some(stop),
            running: Some(running),
        }
    }

    /// A request to `path` with the given Host header (the apex is `localhost`).
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.address))
            .header(reqwest::header::HOST, host)
    }

    pub fn apex_host(&self) -> String {
        format!("localhost:{}", self.address.port())
    }

    pub fn tenant_host(&self, slug: &str) -> String {
        format!("{slug}.localhost:{}", self.address.port())
    }

    pub async fn apex_get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &self.apex_host(), path)
            .send()
            .await
            .expect("apex answers")
    }

    pub async fn tenant_get(&self, slug: &str, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, &self.tenant_host(slug), path)
            .send()
            .await
            .expect("router answers")
    }

    pub async fn signup_raw(&self, body: &Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, &self.apex_host(), "/api/v1/signups")
            .json(body)
            .send()
            .await
            .expect("signup answers")
    }

    /// Signs up `subdomain` with valid fields and asserts the 202 (waiting out `503 busy`: the
    /// tests share one process, whose password hashing is bounded, with a test that floods it).
    pub async fn signup(&self, subdomain: &str) -> SignupAccepted {
        let mut response = self.signup_raw(&signup_body(subdomain)).await;
        for _ in 0..15 {
            if response.status() != StatusCode::SERVICE_UNAVAILABLE {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            response = self.signup_raw(&signup_body(subdomain)).await;
        }
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "signup of {subdomain}"
        );
        response.json().await.expect("signup answer is JSON")
    }

    pub async fn status(&self, accepted: &SignupAccepted) -> SignupStatus {
        let response = self.apex_get(&accepted.status_url).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("status is JSON")
    }

    /// Polls the status URL until the tenant leaves `provisioning` (or 30 s pass).
    pub async fn wait_provisioned(&self, accepted: &SignupAccepted) -> SignupStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status(accepted).await;
            if status.status != TenantStatus::Provisioning {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tenant {} still provisioning: {status:?}",
                accepted.subdomain
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Signs up and waits for `active`.
    pub async fn active_tenant(&self, subdomain: &str) -> SignupAccepted {
        let accepted = self.signup(subdomain).await;
        let status = self.wait_provisioned(&accepted).await;
        assert_eq!(status.status, TenantStatus::Active, "{status:?}");
        accepted
    }

    /// Polls the tenant's health endpoint until it answers the error `code` with `status`; fails
    /// if that takes more than two seconds (routers must learn of changes within a second).
    pub async fn wait_for_error(&self, slug: &str, status: StatusCode, code: &str) {
        let started = Instant::now();
        loop {
            let response = self.tenant_get(slug, "/api/v1/health").await;
            let answered = if response.status().is_success() {
                (response.status(), "served".to_owned())
            } else {
                error_code(response).await
            };
            if answered == (status, code.to_owned()) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{slug} still answers {answered:?}, not {status} {code}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A superuser client on this test's control-plane database.
    /// Gives the default host a wrong admin password (provisioning on it then fails after
    /// placement); returns the good admin URL, to mend it with `set_default_host`.
    pub async fn break_the_default_host(&self) -> SecretString {
        let good = superuser_url(&self.database);
        let broken = SecretString::from(good.expose_secret().replacen(
            "://postgres:",
            "://postgres:wrong",
            1,
        ));
        assert_ne!(broken.expose_secret(), good.expose_secret());
        self.set_default_host(&broken).await;
        good
    }

    /// Points the default host at `admin_url`.
    pub async fn set_default_host(&self, admin_url: &SecretString) {
        self.store
            .upsert_host(&self.keyring, "local", admin_url, 1000, "test")
            .await
            .unwrap();
    }

    /// Runs `silo tenants <args>` against this app's control plane, as an operator would.
    pub async fn silo_tenants(&self, args: &str) -> anyhow::Result<()> {
        use clap::Parser as _;
        let started = silo::bootstrap::Bootstrapped {
            settings: test_settings(&self.database, &self.keys),
            store: self.store.clone(),
            keyring: self.keyring.clone(),
            embedded: None,
        };
        let cli = silo::cli::Cli::try_parse_from(
            ["silo", "tenants"]
                .into_iter()
                .chain(args.split_whitespace()),
        )
        .unwrap_or_else(|error| panic!("`silo tenants {args}` parses: {error}"));
        let silo::cli::Command::Tenants(command) = cli.command else {
            panic!("a tenants command");
        };
        silo::tenants::run(&started, command).await
    }

    pub async fn control_plane(&self) -> tokio_postgres::Client {
        superuser_client(&self.database).await
    }

    /// The opened connection string of a tenant (tests only: to prove what it can and cannot do).
    pub async fn tenant_url(&self, slug: &str) -> SecretString {
        let tenant = self
            .store
            .tenant_by_slug(slug)
            .await
            .expect("store")
            .expect("tenant exists");
        self.keyring
            .open(
                control_plane::Purpose::TenantDatabaseUrl,
                tenant.id,
                tenant.sealed_database_url.as_ref().expect("sealed"),
            )
            .expect("opens")
    }

    /// Stops the app.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("app task joins")
                .expect("app stops cleanly");
        }
    }

    /// Stops the app and drops its databases: call at the end of a passing test.
    pub async fn finish(mut self) {
        self.stop().await;
        self.store.pool().close().await;
        let admin = superuser_client("postgres").await;
        drop_control_plane(&admin, &self.database).await;
        let _ = std::fs::remove_dir_all(test_root().join("exports").join(&self.database));
        let _ = std::fs::remove_dir_all(outbox_dir(&self.database));
    }
}

pub fn signup_body(subdomain: &str) -> Value {
    json!({
        "company_name": format!("{subdomain} Pharmacy"),
        "subdomain": subdomain,
        "admin_email": format!("owner@{subdomain}.test"),
        "admin_password": "violet tram oyster gravel",
    })
}

pub async fn error_code(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.len() > 10),
        "every error carries a sentence: {body}"
    );
    (status, code)
}

/// A provisioning worker in a runtime of its own, so a test can kill it mid-job: dropping the
/// runtime drops every task and closes every connection it held, as a crash would.
pub struct TestWorker {
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestWorker {
    pub fn start(database: &str, keys: &SecretString) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a worker runtime builds");
        let mut settings = test_settings(database, keys);
        settings.provisioning.concurrency = 8;
        runtime.spawn(async move {
            let started = bootstrap(settings, &|_| {})
                .await
                .expect("worker bootstrap");
            let application = Application::build(ApplicationOptions {
                settings: started.settings,
                store: started.store,
                keyring: started.keyring,
                serve_http: false,
                run_workers: true,
                migrations: migrator::MigrationSet::embedded(),
            })
            .await
            .expect("worker builds");
            application.run_until(std::future::pending()).await
        });
        Self {
            runtime: Some(runtime),
        }
    }

    /// Kills the worker without any chance to clean up.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
