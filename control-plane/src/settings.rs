//! Typed settings in layers: defaults → optional TOML file → `SILO_…` environment variables →
//! command-line flags (applied by the binary). Secrets are `SecretString`s from the start.
//!
//! Invariant: `DATABASE_URL` is never read (it changes how sqlx-based crates build).
//!
//! Longer than 600 lines because every setting lives here three times — the typed field with
//! its default, the file's optional field, the environment variable — and splitting them apart
//! would scatter one setting over several files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer};

/// Everything a Silo process needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The control-plane database. `None`: start or reuse the embedded cluster in `data_dir`.
    pub database_url: Option<SecretString>,
    /// Master keys, newest first (`id:base64key,…`). `None`: use the data dir's key file.
    pub master_keys: Option<SecretString>,
    /// The apex domain; tenants live on `<slug>.<base_domain>`.
    pub base_domain: String,
    pub http_addr: SocketAddr,
    pub http: HttpSettings,
    pub data_dir: PathBuf,
    pub provisioning: ProvisioningSettings,
    pub router: RouterSettings,
    pub offboarding: OffboardingSettings,
    pub billing: BillingSettings,
    pub usage: UsageSettings,
    pub migrations: MigrationSettings,
    pub domains: DomainSettings,
    pub mail: MailSettings,
    pub imports: ImportSettings,
    /// Signups one client address may make per minute (a burst of this many, then refilled
    /// evenly). The client address is the peer's, or the one forwarded by trusted proxies.
    pub signups_per_client_per_minute: u32,
}

/// How long and how many: the HTTP server's limits, so a slow or idle socket ends on time.
/// The defaults suit a reverse proxy in front (whose own keep-alive is shorter than ours).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// How long a client may take to send a request's headers (a slow-loris socket is closed).
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive (408 `request_timeout` after).
    pub body_read_timeout: Duration,
    /// How long a request may take from its headers to its answer (503 `timed_out` after).
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// On SIGTERM, how long requests already being served may take to finish before their
    /// connections are cut and the process goes on to stop.
    pub shutdown_timeout: Duration,
    /// The reverse proxies in front (CIDRs). Only a peer in one of them may say, in `Forwarded`
    /// or `X-Forwarded-For`, whom it forwards for; the client is the rightmost address in that
    /// chain that is not itself a trusted proxy. Empty: forwarding headers are ignored.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            shutdown_timeout: Duration::from_secs(30),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProvisioningSettings {
    /// How many provisioning jobs one worker process runs at once.
    pub concurrency: usize,
    /// Attempts per tenant before it is marked `failed`.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub retry_backoff: Duration,
    /// How often a worker proves it is alive; a job whose worker missed several is resumed elsewhere.
    pub heartbeat_interval: Duration,
    /// How PostgreSQL copies the template into a new tenant database.
    pub create_strategy: CreateStrategy,
    /// Databases each host keeps pre-created for instant signups (0: no warm pool).
    pub warm_pool: u32,
}

/// `CREATE DATABASE … STRATEGY`: `wal_log` copies block by block through the WAL (no checkpoint;
/// fastest for small templates here), `file_copy` copies files and forces a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateStrategy {
    WalLog,
    FileCopy,
}

impl CreateStrategy {
    pub fn sql(self) -> &'static str {
        match self {
            CreateStrategy::WalLog => "WAL_LOG",
            CreateStrategy::FileCopy => "FILE_COPY",
        }
    }
}

/// What happens to a cancelled tenant.
#[derive(Debug, Clone)]
pub struct OffboardingSettings {
    /// Where pg_dump exports go (`None`: `<data-dir>/exports`).
    pub export_dir: Option<PathBuf>,
    /// How long a cancelled tenant's database is kept (already exported) before it is dropped.
    pub grace: Duration,
    /// How often workers look for cancelled tenants to export or drop.
    pub check_interval: Duration,
}

/// Usage metering.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// How often each router adds its request counts to the control plane (one statement).
    pub flush_interval: Duration,
    /// How often a worker samples every tenant's database size and counts.
    pub sample_interval: Duration,
}

/// Mail (`[mail]`): how Silo's mails leave, and what their links point at.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The SMTP server (`SILO_SMTP_URL`): `smtp://user:pass@host:587?tls=required`,
    /// `smtps://…:465`, or `smtp://127.0.0.1:2525` (plain, for a local relay). `None`: every mail
    /// is written as an `.eml` file into [`MailSettings::outbox_dir`] and its path logged.
    pub smtp_url: Option<SecretString>,
    /// The From address (`SILO_MAIL_FROM`), e.g. `Acme <no-reply@acme.example>`. `None`:
    /// `Silo <no-reply@<base domain>>`.
    pub from: Option<String>,
    /// Where mails go as `.eml` files without SMTP (`None`: `<data-dir>/mail`).
    pub outbox_dir: Option<PathBuf>,
    /// The public URL of the apex (`SILO_PUBLIC_URL`), e.g. `https://example.com`: workspace
    /// links in mails are `<scheme>://<slug>.<host>[:port]/`. `None`: `http://<base
    /// domain>:<the HTTP port>` (right for `silo dev`).
    pub public_url: Option<String>,
    /// Attempts per mail before it is given up (each failure waits longer, up to
    /// `retry_max_backoff`).
    pub max_attempts: u32,
    /// The longest wait between two attempts at a mail.
    pub retry_max_backoff: Duration,
    /// Mails one worker process sends at once.
    pub concurrency: usize,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: None,
            outbox_dir: None,
            public_url: None,
            max_attempts: 12,
            retry_max_backoff: Duration::from_secs(10 * 60),
            concurrency: 8,
        }
    }
}

/// CSV item imports (`[imports]`): jobs of one tenant each, run by the workers.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// Imports one worker process runs at once, each of a different tenant (a tenant's imports
    /// run one at a time, so one tenant's files never take every slot).
    pub concurrency: usize,
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self { concurrency: 2 }
    }
}

/// Tenant-schema migrations: how the lint before a rollout judges them (`[migrations]`).
/// The names are squawk's rule names; the migrator checks them when it builds its lint.
#[derive(Debug, Clone, Default)]
pub struct MigrationSettings {
    /// Rules switched off entirely.
    pub lint_allow: Vec<String>,
    /// Rules reported as warnings, which never stop a rollout.
    pub lint_warn: Vec<String>,
}

/// Custom domains (`[domains]`).
#[derive(Debug, Clone)]
pub struct DomainSettings {
    /// How long an unverified claim lasts; after that it blocks nobody and cannot be verified.
    pub claim_ttl: Duration,
    /// The nameserver verification asks for TXT records (`SILO_DNS_RESOLVER`, e.g.
    /// `127.0.0.1:5353`); `None`: the system's resolver configuration.
    pub resolver: Option<SocketAddr>,
    /// How long one DNS query may take (tried twice).
    pub lookup_timeout: Duration,
}

impl Default for DomainSettings {
    fn default() -> Self {
        Self {
            claim_ttl: crate::store::DEFAULT_DOMAIN_CLAIM_TTL,
            resolver: None,
            lookup_timeout: Duration::from_secs(3),
        }
    }
}

/// Subscriptions and Stripe.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// How long a new tenant's trial lasts.
    pub trial: Duration,
    /// How long a past-due subscription is still served (with a warning) before suspension.
    pub past_due_grace: Duration,
    /// How often a worker applies time-based transitions (trial end, grace end, period end).
    pub check_interval: Duration,
    /// Where Stripe's API is (tests point it at a local server).
    pub stripe_api_base: String,
    /// Stripe secret API key (`SILO_STRIPE_SECRET_KEY`); `None`: checkout is not offered.
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe webhook signing secret (`SILO_STRIPE_WEBHOOK_SECRET`); `None`: webhooks refused.
    pub stripe_webhook_secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// How long a resolved tenant is trusted before it is read again.
    pub tenant_cache_ttl: Duration,
    /// A tenant's pool is closed after this long without requests.
    pub pool_idle_timeout: Duration,
    /// Connections per tenant pool.
    pub pool_max_size: usize,
    /// How long a request waits for a tenant database connection.
    pub connect_timeout: Duration,
    /// Connections all router processes together may hold to one database host, over all its
    /// tenants' pools; each live router takes an equal share. `None`: `budget_share` of the
    /// host's `max_connections` (less the superuser reserve), read once per host.
    pub connection_budget: Option<u32>,
    /// The share of a host's `max_connections` the routers take together when no explicit
    /// budget is set (the rest is left to workers, rollouts and people).
    pub budget_share: f64,
    /// How often a router records that it is alive in the control plane and counts the live
    /// routers; one not seen for three intervals is gone and its share goes to the others.
    pub heartbeat_interval: Duration,
    /// How long a request waits for a budget permit before it gets 503 `capacity`.
    pub budget_wait: Duration,
    /// Consecutive connection failures to a host that open its circuit breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker fails that host's tenants fast before trying again.
    pub breaker_cool_down: Duration,
    /// Requests per second one tenant may make on this router (0: unlimited); bursts of twice
    /// that are allowed.
    pub tenant_requests_per_second: u32,
    /// Requests per second one tenant may get without a verified credential (its public pages,
    /// sign-in, requests without credentials), apart from its signed-in users' budget; never
    /// above the tenant's own rate (0: the tenant's rate). Bursts of twice that.
    pub anonymous_requests_per_second: u32,
    /// Requests per second one client address may make to one tenant without a verified
    /// credential (failed credentials count here too). Bursts of twice that.
    pub anonymous_requests_per_client_per_second: u32,
    /// Take the tenant from the forwarded host (`Forwarded: host=` or `X-Forwarded-Host`, as
    /// written by the outermost trusted proxy) instead of `Host`. Needs `http.trusted_proxies`;
    /// off by default, since clients can send anything.
    pub trust_forwarded_host: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            master_keys: None,
            base_domain: "localhost".to_owned(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http: HttpSettings::default(),
            data_dir: PathBuf::from(".silo"),
            provisioning: ProvisioningSettings {
                concurrency: 4,
                max_attempts: 5,
                retry_backoff: Duration::from_millis(500),
                heartbeat_interval: Duration::from_secs(5),
                create_strategy: CreateStrategy::WalLog,
                warm_pool: 0,
            },
            router: RouterSettings {
                tenant_cache_ttl: Duration::from_secs(5),
                pool_idle_timeout: Duration::from_secs(300),
                pool_max_size: 4,
                connect_timeout: Duration::from_secs(5),
                connection_budget: None,
                budget_share: 0.5,
                budget_wait: Duration::from_secs(2),
                heartbeat_interval: Duration::from_secs(5),
                breaker_threshold: 3,
                breaker_cool_down: Duration::from_secs(5),
                tenant_requests_per_second: 200,
                anonymous_requests_per_second: 100,
                anonymous_requests_per_client_per_second: 20,
                trust_forwarded_host: false,
            },
            offboarding: OffboardingSettings {
                export_dir: None,
                grace: Duration::from_secs(30 * 24 * 3600),
                check_interval: Duration::from_secs(10),
            },
            billing: BillingSettings {
                trial: Duration::from_secs(14 * 24 * 3600),
                past_due_grace: Duration::from_secs(7 * 24 * 3600),
                check_interval: Duration::from_secs(60),
                stripe_api_base: "https://api.stripe.com".to_owned(),
                stripe_secret_key: None,
                stripe_webhook_secret: None,
            },
            usage: UsageSettings {
                flush_interval: Duration::from_secs(10),
                sample_interval: Duration::from_secs(3600),
            },
            migrations: MigrationSettings::default(),
            domains: DomainSettings::default(),
            mail: MailSettings::default(),
            imports: ImportSettings::default(),
            signups_per_client_per_minute: 10,
        }
    }
}

/// What went wrong while loading settings. Never echoes a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name} is not valid: {message}")]
    Variable { name: &'static str, message: String },
}

/// The TOML file's shape: every field optional, same names as the settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<SecretString>,
    master_keys: Option<SecretString>,
    base_domain: Option<String>,
    http_addr: Option<SocketAddr>,
    signups_per_client_per_minute: Option<u32>,
    #[serde(default)]
    http: FileHttp,
    #[serde(default)]
    provisioning: FileProvisioning,
    #[serde(default)]
    router: FileRouter,
    #[serde(default)]
    offboarding: FileOffboarding,
    #[serde(default)]
    billing: FileBilling,
    #[serde(default)]
    usage: FileUsage,
    #[serde(default)]
    migrations: FileMigrations,
    #[serde(default)]
    domains: FileDomains,
    #[serde(default)]
    mail: FileMail,
    #[serde(default)]
    imports: FileImports,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileImports {
    concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDomains {
    #[serde(default, with = "humantime_serde")]
    claim_ttl: Option<Duration>,
    resolver: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    lookup_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMail {
    smtp_url: Option<SecretString>,
    from: Option<String>,
    outbox_dir: Option<PathBuf>,
    public_url: Option<String>,
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retry_max_backoff: Option<Duration>,
    concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMigrations {
    lint_allow: Option<Vec<String>>,
    lint_warn: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    #[serde(default, with = "humantime_serde")]
    header_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    body_read_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "deserialize_trusted_proxies")]
    trusted_proxies: Option<Vec<IpNet>>,
}

fn deserialize_trusted_proxies<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<IpNet>>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| parse_trusted_proxy(text))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A trusted proxy as written in settings: a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_trusted_proxy(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("http.trusted_proxies: `{text}` is not a CIDR like 10.0.0.0/8 or an IP address")
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUsage {
    #[serde(default, with = "humantime_serde")]
    flush_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    sample_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBilling {
    #[serde(default, with = "humantime_serde")]
    trial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    past_due_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    check_interval: Option<Duration>,
    stripe_api_base: Option<String>,
    stripe_secret_key: Option<SecretString>,
    stripe_webhook_secret: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOffboarding {
    export_dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    check_interval: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvisioning {
    concurrency: Option<usize>,
    max_attempts: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    retry_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_interval: Option<Duration>,
    create_strategy: Option<CreateStrategy>,
    warm_pool: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRouter {
    #[serde(default, with = "humantime_serde")]
    tenant_cache_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pool_idle_timeout: Option<Duration>,
    pool_max_size: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    connection_budget: Option<u32>,
    budget_share: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    budget_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    heartbeat_interval: Option<Duration>,
    breaker_threshold: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    breaker_cool_down: Option<Duration>,
    tenant_requests_per_second: Option<u32>,
    anonymous_requests_per_second: Option<u32>,
    anonymous_requests_per_client_per_second: Option<u32>,
    trust_forwarded_host: Option<bool>,
}

impl Settings {
    /// Loads defaults, then `config_file` (or `<data_dir>/silo.toml` if present), then the
    /// environment. `lookup` is the environment, injectable for tests.
    pub fn load(
        data_dir: &Path,
        config_file: Option<&Path>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let mut settings = Settings {
            data_dir: data_dir.to_owned(),
            ..Settings::default()
        };
        let default_file = data_dir.join("silo.toml");
        let file_path = match config_file {
            Some(path) => Some(path.to_owned()),
            None => default_file.exists().then_some(default_file),
        };
        if let Some(path) = file_path.clone() {
            let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
                path: path.clone(),
                source,
            })?;
            let file: FileSettings =
                toml::from_str(&text).map_err(|error| SettingsError::File {
                    path: path.clone(),
                    message: error.message().to_owned(),
                })?;
            settings.apply_file(file);
            settings
                .check_router()
                .and_then(|()| settings.check_http())
                .and_then(|()| settings.check_domains())
                .map_err(|message| SettingsError::File {
                    path: path.clone(),
                    message,
                })?;
        }
        settings.apply_environment(lookup)?;
        // Only the file can turn the forwarded host on, so a file was read if it is on.
        if settings.router.trust_forwarded_host && settings.http.trusted_proxies.is_empty() {
            return Err(SettingsError::File {
                path: file_path.unwrap_or_default(),
                message: "router.trust_forwarded_host needs http.trusted_proxies: list the \
                          addresses of the proxies that set the forwarded host"
                    .to_owned(),
            });
        }
        Ok(settings)
    }

    /// The router settings a file can get wrong in ways its types do not catch.
    fn check_router(&self) -> Result<(), String> {
        let r = &self.router;
        if !(r.budget_share > 0.0 && r.budget_share <= 1.0) {
            return Err("router.budget_share must be above 0 and at most 1".to_owned());
        }
        if r.heartbeat_interval.is_zero() {
            return Err("router.heartbeat_interval must be above zero".to_owned());
        }
        if r.connection_budget == Some(0) || r.pool_max_size == 0 {
            return Err(
                "router.connection_budget and router.pool_max_size must be at least 1".to_owned(),
            );
        }
        Ok(())
    }

    /// The domain settings a file can get wrong in ways their types do not catch.
    fn check_domains(&self) -> Result<(), String> {
        if self.domains.claim_ttl.is_zero() || self.domains.lookup_timeout.is_zero() {
            return Err("domains.claim_ttl and domains.lookup_timeout must be above 0".to_owned());
        }
        Ok(())
    }

    /// The HTTP limits a file can get wrong in ways their types do not catch.
    fn check_http(&self) -> Result<(), String> {
        let h = &self.http;
        let timeouts = [
            h.header_read_timeout,
            h.body_read_timeout,
            h.request_timeout,
            h.idle_timeout,
            h.shutdown_timeout,
        ];
        if timeouts.contains(&Duration::ZERO) || h.max_connections == 0 {
            return Err("http timeouts and http.max_connections must be above 0".to_owned());
        }
        Ok(())
    }

    fn apply_file(&mut self, file: FileSettings) {
        if file.database_url.is_some() {
            self.database_url = file.database_url;
        }
        if file.master_keys.is_some() {
            self.master_keys = file.master_keys;
        }
        if let Some(base) = file.base_domain {
            self.base_domain = base;
        }
        if let Some(addr) = file.http_addr {
            self.http_addr = addr;
        }
        if let Some(per_minute) = file.signups_per_client_per_minute {
            self.signups_per_client_per_minute = per_minute;
        }
        let (h, f) = (&mut self.http, &file.http);
        h.header_read_timeout = f.header_read_timeout.unwrap_or(h.header_read_timeout);
        h.body_read_timeout = f.body_read_timeout.unwrap_or(h.body_read_timeout);
        h.request_timeout = f.request_timeout.unwrap_or(h.request_timeout);
        h.idle_timeout = f.idle_timeout.unwrap_or(h.idle_timeout);
        h.max_connections = f.max_connections.unwrap_or(h.max_connections);
        h.shutdown_timeout = f.shutdown_timeout.unwrap_or(h.shutdown_timeout);
        if let Some(proxies) = &f.trusted_proxies {
            h.trusted_proxies = proxies.clone();
        }
        let p = &mut self.provisioning;
        p.concurrency = file.provisioning.concurrency.unwrap_or(p.concurrency);
        p.max_attempts = file.provisioning.max_attempts.unwrap_or(p.max_attempts);
        p.retry_backoff = file.provisioning.retry_backoff.unwrap_or(p.retry_backoff);
        p.heartbeat_interval = file
            .provisioning
            .heartbeat_interval
            .unwrap_or(p.heartbeat_interval);
        p.create_strategy = file
            .provisioning
            .create_strategy
            .unwrap_or(p.create_strategy);
        p.warm_pool = file.provisioning.warm_pool.unwrap_or(p.warm_pool);
        let r = &mut self.router;
        r.tenant_cache_ttl = file.router.tenant_cache_ttl.unwrap_or(r.tenant_cache_ttl);
        r.pool_idle_timeout = file.router.pool_idle_timeout.unwrap_or(r.pool_idle_timeout);
        r.pool_max_size = file.router.pool_max_size.unwrap_or(r.pool_max_size);
        r.connect_timeout = file.router.connect_timeout.unwrap_or(r.connect_timeout);
        let f = file.router;
        r.connection_budget = f.connection_budget.or(r.connection_budget);
        r.budget_share = f.budget_share.unwrap_or(r.budget_share);
        r.budget_wait = f.budget_wait.unwrap_or(r.budget_wait);
        r.heartbeat_interval = f.heartbeat_interval.unwrap_or(r.heartbeat_interval);
        r.breaker_threshold = f.breaker_threshold.unwrap_or(r.breaker_threshold);
        r.breaker_cool_down = f.breaker_cool_down.unwrap_or(r.breaker_cool_down);
        r.tenant_requests_per_second = f
            .tenant_requests_per_second
            .unwrap_or(r.tenant_requests_per_second);
        r.anonymous_requests_per_second = f
            .anonymous_requests_per_second
            .unwrap_or(r.anonymous_requests_per_second);
        r.anonymous_requests_per_client_per_second = f
            .anonymous_requests_per_client_per_second
            .unwrap_or(r.anonymous_requests_per_client_per_second);
        r.trust_forwarded_host = f.trust_forwarded_host.unwrap_or(r.trust_forwarded_host);
        let o = &mut self.offboarding;
        if file.offboarding.export_dir.is_some() {
            o.export_dir = file.offboarding.export_dir;
        }
        o.grace = file.offboarding.grace.unwrap_or(o.grace);
        o.check_interval = file.offboarding.check_interval.unwrap_or(o.check_interval);
        let m = &mut self.migrations;
        if let Some(allow) = file.migrations.lint_allow {
            m.lint_allow = allow;
        }
        if let Some(warn) = file.migrations.lint_warn {
            m.lint_warn = warn;
        }
        let d = &mut self.domains;
        d.claim_ttl = file.domains.claim_ttl.unwrap_or(d.claim_ttl);
        d.resolver = file.domains.resolver.or(d.resolver);
        d.lookup_timeout = file.domains.lookup_timeout.unwrap_or(d.lookup_timeout);
        let (m, f) = (&mut self.mail, file.mail);
        if f.smtp_url.is_some() {
            m.smtp_url = f.smtp_url;
        }
        m.from = f.from.or(m.from.take());
        m.outbox_dir = f.outbox_dir.or(m.outbox_dir.take());
        m.public_url = f.public_url.or(m.public_url.take());
        m.max_attempts = f.max_attempts.unwrap_or(m.max_attempts);
        m.retry_max_backoff = f.retry_max_backoff.unwrap_or(m.retry_max_backoff);
        m.concurrency = f.concurrency.unwrap_or(m.concurrency).max(1);
        let imports = &mut self.imports;
        imports.concurrency = file
            .imports
            .concurrency
            .unwrap_or(imports.concurrency)
            .max(1);
        let u = &mut self.usage;
        u.flush_interval = file.usage.flush_interval.unwrap_or(u.flush_interval);
        u.sample_interval = file.usage.sample_interval.unwrap_or(u.sample_interval);
        let b = &mut self.billing;
        let f = file.billing;
        b.trial = f.trial.unwrap_or(b.trial);
        b.past_due_grace = f.past_due_grace.unwrap_or(b.past_due_grace);
        b.check_interval = f.check_interval.unwrap_or(b.check_interval);
        if let Some(base) = f.stripe_api_base {
            b.stripe_api_base = base;
        }
        // An empty secret in the file is no secret: anyone could sign with it.
        let non_empty = |secret: Option<SecretString>| {
            secret.filter(|secret| !secret.expose_secret().trim().is_empty())
        };
        if let Some(key) = non_empty(f.stripe_secret_key) {
            b.stripe_secret_key = Some(key);
        }
        if let Some(secret) = non_empty(f.stripe_webhook_secret) {
            b.stripe_webhook_secret = Some(secret);
        }
    }

    /// The durations the subscription lifecycle runs on.
    pub fn lifecycle(&self) -> crate::subscriptions::Lifecycle {
        crate::subscriptions::Lifecycle {
            trial: self.billing.trial,
            past_due_grace: self.billing.past_due_grace,
            offboarding_grace: self.offboarding.grace,
        }
    }

    /// Where mails are written as `.eml` files when no SMTP server is set.
    pub fn mail_outbox_dir(&self) -> PathBuf {
        self.mail
            .outbox_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mail"))
    }

    /// The From address of Silo's mails.
    pub fn mail_from(&self) -> String {
        self.mail
            .from
            .clone()
            .unwrap_or_else(|| format!("Silo <no-reply@{}>", self.base_domain))
    }

    /// The folder tenant exports are written to.
    pub fn export_dir(&self) -> PathBuf {
        self.offboarding
            .export_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    fn apply_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), SettingsError> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if let Some(url) = non_empty("SILO_DATABASE_URL") {
            self.database_url = Some(SecretString::from(url));
        }
        if let Some(keys) = non_empty("SILO_MASTER_KEYS") {
            self.master_keys = Some(SecretString::from(keys));
        }
        if let Some(base) = non_empty("SILO_BASE_DOMAIN") {
            self.base_domain = base;
        }
        if let Some(secret) = non_empty("SILO_STRIPE_WEBHOOK_SECRET") {
            self.billing.stripe_webhook_secret = Some(SecretString::from(secret));
        }
        if let Some(key) = non_empty("SILO_STRIPE_SECRET_KEY") {
            self.billing.stripe_secret_key = Some(SecretString::from(key));
        }
        if let Some(base) = non_empty("SILO_STRIPE_API_BASE") {
            self.billing.stripe_api_base = base;
        }
        let base = self
            .billing
            .stripe_api_base
            .trim_end_matches('/')
            .to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(SettingsError::Variable {
                name: "SILO_STRIPE_API_BASE",
                message: format!("`{base}` is not an http(s) URL"),
            });
        }
        self.billing.stripe_api_base = base;
        if let Some(url) = non_empty("SILO_SMTP_URL") {
            self.mail.smtp_url = Some(SecretString::from(url));
        }
        if let Some(from) = non_empty("SILO_MAIL_FROM") {
            self.mail.from = Some(from);
        }
        if let Some(url) = non_empty("SILO_PUBLIC_URL") {
            self.mail.public_url = Some(url);
        }
        if let Some(url) = &self.mail.public_url {
            let url = url.trim().trim_end_matches('/').to_owned();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(SettingsError::Variable {
                    name: "SILO_PUBLIC_URL",
                    message: format!("`{url}` is not an http(s) URL like https://example.com"),
                });
            }
            self.mail.public_url = Some(url);
        }
        if let Some(proxies) = non_empty("SILO_TRUSTED_PROXIES") {
            self.http.trusted_proxies = proxies
                .split(',')
                .filter(|text| !text.trim().is_empty())
                .map(parse_trusted_proxy)
                .collect::<Result<_, _>>()
                .map_err(|message| SettingsError::Variable {
                    name: "SILO_TRUSTED_PROXIES",
                    message,
                })?;
        }
        if let Some(resolver) = non_empty("SILO_DNS_RESOLVER") {
            self.domains.resolver =
                Some(
                    resolver
                        .trim()
                        .parse()
                        .map_err(|_| SettingsError::Variable {
                            name: "SILO_DNS_RESOLVER",
                            message: format!("`{resolver}` is not an address like 127.0.0.1:53"),
                        })?,
                );
        }
        if let Some(addr) = non_empty("SILO_HTTP_ADDR") {
            self.http_addr = addr.parse().map_err(|_| SettingsError::Variable {
                name: "SILO_HTTP_ADDR",
                message: format!("`{addr}` is not an address like 127.0.0.1:8080"),
            })?;
        }
        self.base_domain =
            normalise_base_domain(&self.base_domain).ok_or_else(|| SettingsError::Variable {
                name: "SILO_BASE_DOMAIN",
                message: format!("`{}` is not a domain name", self.base_domain),
            })?;
        Ok(())
    }
}

/// Lower-cases and strips a trailing dot; refuses anything that is not a plausible domain.
fn normalise_base_domain(raw: &str) -> Option<String> {
    let domain = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    valid.then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn environment_overrides_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("silo-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("silo.toml"),
            "base_domain = \"file.example\"\nhttp_addr = \"127.0.0.1:9000\"\n[router]\npool_idle_timeout = \"2m\"\n[offboarding]\ngrace = \"7days\"\n[migrations]\nlint_allow = [\"ban-drop-column\"]\nlint_warn = [\"renaming-column\", \"renaming-table\"]\n",
        )
        .unwrap();
        let settings =
            Settings::load(&dir, None, env(&[("SILO_BASE_DOMAIN", "Env.Example.")])).unwrap();
        assert_eq!(settings.base_domain, "env.example");
        assert_eq!(settings.http_addr.port(), 9000);
        assert_eq!(settings.router.pool_idle_timeout, Duration::from_secs(120));
        assert_eq!(
            settings.offboarding.grace,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(settings.export_dir(), dir.join("exports"));
        assert_eq!(settings.migrations.lint_allow, ["ban-drop-column"]);
        assert_eq!(
            settings.migrations.lint_warn,
            ["renaming-column", "renaming-table"]
        );
        assert!(settings.database_url.is_none());
        let with_url =
            Settings::load(&dir, None, env(&[("SILO_DATABASE_URL", "postgres://x")])).unwrap();
        assert_eq!(
            with_url.database_url.unwrap().expose_secret(),
            "postgres://x"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let dir = std::env::temp_dir();
        let error =
            Settings::load(&dir, Some(Path::new("/nonexistent/silo.toml")), env(&[])).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/silo.toml"));
        let error = Settings::load(&dir, None, env(&[("SILO_HTTP_ADDR", "nope")])).unwrap_err();
        assert!(error.to_string().contains("SILO_HTTP_ADDR"));
        let error =
            Settings::load(&dir, None, env(&[("SILO_BASE_DOMAIN", "bad domain")])).unwrap_err();
        assert!(error.to_string().contains("SILO_BASE_DOMAIN"));
        assert!(
            Settings::load(&dir, None, env(&[("DATABASE_URL", "postgres://ignored")]))
                .unwrap()
                .database_url
                .is_none()
        );
    }
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn the_example_file_loads_and_bad_router_values_are_refused() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/silo.example.toml");
        let dir = std::env::temp_dir().join(format!("silo-settings-{}", uuid::Uuid::new_v4()));
        let settings = Settings::load(&dir, Some(&example), |_| None).unwrap();
        assert_eq!(settings.router.budget_share, 0.5);
        assert_eq!(settings.router.tenant_requests_per_second, 200);
        assert!(!settings.router.trust_forwarded_host);
        assert_eq!(settings.http.header_read_timeout, Duration::from_secs(10));
        assert_eq!(settings.http.max_connections, 10_000);
        assert_eq!(
            settings.domains.claim_ttl,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert_eq!(settings.domains.resolver, None);

        std::fs::create_dir_all(&dir).unwrap();
        // (file, what the refusal mentions)
        for (bad, mentions) in [
            ("[router]\nbudget_share = 0.0\n", "router."),
            ("[router]\nbudget_share = 1.5\n", "router."),
            ("[router]\nconnection_budget = 0\n", "router."),
            ("[http]\nheader_read_timeout = \"0s\"\n", "http"),
            ("[http]\nmax_connections = 0\n", "http"),
            ("[domains]\nclaim_ttl = \"0s\"\n", "domains.claim_ttl"),
            ("[domains]\nresolver = \"dns.example\"\n", "socket address"),
            ("[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "http"),
            ("[http]\ntrusted_proxies = [\"proxy.internal\"]\n", "http"),
            ("[router]\ntrust_forwarded_host = true\n", "router."),
        ] {
            let file = dir.join("bad.toml");
            std::fs::write(&file, bad).unwrap();
            let error = Settings::load(&dir, Some(&file), |_| None).unwrap_err();
            let error = error.to_string();
            assert!(error.contains(mentions), "{bad}: {error}");
        }
        // An empty Stripe secret in the file is none at all (anyone could sign with it).
        let file = dir.join("empty.toml");
        std::fs::write(
            &file,
            "[billing]\nstripe_webhook_secret = \"\"\nstripe_secret_key = \" \"\n",
        )
        .unwrap();
        let settings = Settings::load(&dir, Some(&file), |_| None).unwrap();
        assert!(settings.billing.stripe_webhook_secret.is_none());
        assert!(settings.billing.stripe_secret_key.is_none());
        assert_eq!(settings.billing.trial, Duration::from_secs(14 * 24 * 3600));
        assert_eq!(settings.imports.concurrency, 2);
        // Imports at once: as written, and never none.
        for (written, taken) in [("5", 5), ("0", 1)] {
            let file = dir.join("imports.toml");
            std::fs::write(&file, format!("[imports]\nconcurrency = {written}\n")).unwrap();
            let settings = Settings::load(&dir, Some(&file), |_| None).unwrap();
            assert_eq!(settings.imports.concurrency, taken, "{written}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses_from_the_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("silo-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("proxies.toml");
        std::fs::write(
            &file,
            "[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"fd00::/8\"]\n\
             [router]\ntrust_forwarded_host = true\n",
        )
        .unwrap();
        let settings = Settings::load(&dir, Some(&file), |_| None).unwrap();
        let written: Vec<String> = settings
            .http
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(written, ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]);

        let from_environment = Settings::load(&dir, None, |name| {
            (name == "SILO_TRUSTED_PROXIES").then(|| "127.0.0.0/8, ::1".to_owned())
        })
        .unwrap();
        assert_eq!(from_environment.http.trusted_proxies.len(), 2);
        let error = Settings::load(&dir, None, |name| {
            (name == "SILO_TRUSTED_PROXIES").then(|| "10.0.0.0/8,nonsense".to_owned())
        })
        .unwrap_err();
        assert!(error.to_string().contains("nonsense"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
