//! Tenant resolution, API key lookups and per-tenant connection pools, all cached in moka, and
//! the per-host connection budgets and circuit breakers the pools share.
//!
//! Misses are cached only briefly, and a tenant's creation is itself published, so a tenant is
//! reachable the moment it is activated. Every change to a tenant row is published by the control-plane database (LISTEN/NOTIFY) and drops that tenant's
//! entries at once; the TTL on hits is only a backstop. After a lost listener connection every
//! entry is marked stale (read again before use), not dropped: if the control-plane database is
//! down, tenants already resolved keep being served from their stale entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_plane::access::Access;
use control_plane::api_keys::StoredApiKey;
use control_plane::branding::Branding;
use control_plane::model::TenantStatus;
use control_plane::plans::Entitlements;
use control_plane::settings::RouterSettings;
use control_plane::store::StoreError;
use control_plane::tenants::TenantRecord;
use control_plane::{Keyring, Sealed, Store};
use moka::future::Cache;
use uuid::Uuid;
use web::RateLimit;
use web::{ApiError, ErrorCode};

use crate::budget::{HostState, TenantPool};
use crate::metrics::{LookupLabels, RouterMetrics};

mod changes;
mod fleet;
mod pools;
mod sessions;
use pools::tenant_unavailable;

/// How long an answer "no such tenant" is reused (unless a notification drops it sooner).
const MISS_TTL: Duration = Duration::from_secs(2);

/// Tenant app sign-in attempts one client address may make per tenant and minute.
const LOGINS_PER_CLIENT_PER_MINUTE: u32 = 10;

/// How long a stale entry's refresh may take before the stale entry is served instead.
const STALE_REFRESH_TIMEOUT: Duration = Duration::from_millis(500);
/// How long stale entries are served without asking a control plane that just failed.
const CONTROL_PLANE_BACK_OFF: Duration = Duration::from_secs(1);

/// A key's `last_used_at` is written at most this often by one router.
const API_KEY_TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// What the router needs to know about a tenant to serve it.
#[derive(Debug, Clone)]
pub struct ResolvedTenant {
    pub id: Uuid,
    pub slug: String,
    /// The name the tenant signed up with (the company name).
    pub display_name: String,
    pub status: TenantStatus,
    pub host_id: Option<Uuid>,
    /// The plan, add-ons and modules the tenant may use.
    pub entitlements: Arc<Entitlements>,
    /// This router's count of the tenant's requests since its last usage flush.
    pub requests: Arc<AtomicU64>,
    /// The tenant's own white-label settings, if it set any (cached here, so the public
    /// branding endpoint and the settings page cost no control-plane read; a change is
    /// published on the tenant channel and drops this entry).
    pub branding: Option<Branding>,
    sealed_database_url: Option<Sealed>,
}

/// `tenant` if it may be served now, else the error its clients should see.
pub(crate) fn admit(tenant: Arc<ResolvedTenant>) -> Result<Arc<ResolvedTenant>, ApiError> {
    match control_plane::access::decide(tenant.status, tenant.entitlements.billing.as_ref()) {
        Access::Serve(_) => Ok(tenant),
        Access::Provisioning => Err(ApiError::new(
            ErrorCode::TenantProvisioning,
            "This workspace is being set up. It will be ready in a few seconds.",
        )
        .retry_after(2)),
        Access::Suspended => Err(ApiError::new(
            ErrorCode::TenantSuspended,
            "This workspace is suspended. Its owner can contact support to reactivate it.",
        )),
        Access::Unavailable => Err(tenant_unavailable()),
        Access::Gone => Err(ApiError::new(
            ErrorCode::TenantCancelled,
            "This workspace was closed. Its owner can ask support for the export of its data.",
        )),
    }
}

impl ResolvedTenant {
    /// The workspace as its error pages show it: its own name, colour and logo, or the defaults.
    pub fn page_brand(&self) -> web::negotiate::PageBrand {
        let in_force = self
            .branding
            .clone()
            .unwrap_or_default()
            .in_force(&self.display_name);
        web::negotiate::PageBrand {
            name: in_force.display_name,
            color: in_force.primary_color,
            logo_url: in_force.logo_url,
        }
    }

    fn new(
        record: TenantRecord,
        entitlements: Entitlements,
        branding: Option<Branding>,
        requests: Arc<AtomicU64>,
    ) -> Self {
        Self {
            requests,
            id: record.id,
            slug: record.slug,
            display_name: record.display_name,
            branding,
            status: record.status,
            host_id: record.host_id,
            entitlements: Arc::new(entitlements),
            sealed_database_url: record.sealed_database_url,
        }
    }
}

/// A resolution and when it was read: it is used without asking the control plane while it is
/// younger than the TTL and no reconnect of the change listener happened since.
/// `value: None` is a miss, kept only briefly ([`MISS_TTL`]) and dropped by the notification of
/// the record's creation, so a flood of unknown hosts does not reach the control plane while a
/// new tenant is still reachable at once.
#[derive(Debug, Clone)]
struct Cached<T> {
    value: Option<T>,
    read_at: Instant,
    epoch: u64,
}

/// A verified custom domain's tenant: (id, slug).
type DomainOwner = (Uuid, String);

/// A tenant's pool and the sealed URL it was built from: a tenant whose credentials or host
/// changed gets a new pool even if its change notification was lost.
#[derive(Clone)]
struct CachedPool {
    pool: TenantPool,
    built_from: Option<Sealed>,
}

/// The router's shared state: the control-plane store, the keyring, the caches, the per-host
/// budgets and breakers, the per-tenant rate limit and the metrics. Cheap to clone.
#[derive(Clone)]
pub struct RouterState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    keyring: Arc<Keyring>,
    settings: RouterSettings,
    base_domain: String,
    tenant_cache: Cache<String, Cached<Arc<ResolvedTenant>>>,
    domain_cache: Cache<String, Cached<DomainOwner>>,
    /// API key prefix → the stored key (`None`: no such prefix). Dropped by the key's change
    /// notification (creation, revocation), so a revoked key is refused at once.
    api_key_cache: Cache<String, Cached<Option<Arc<StoredApiKey>>>>,
    /// Keys whose use this router recorded in the last [`API_KEY_TOUCH_INTERVAL`].
    api_keys_touched: Cache<Uuid, ()>,
    pool_cache: Cache<Uuid, CachedPool>,
    hosts: Mutex<HashMap<Uuid, Arc<HostState>>>,
    /// This router as the control plane's fleet knows it, and how many routers it last counted
    /// (see [`crate::fleet`]).
    identity: control_plane::routers::RouterIdentity,
    routers: std::sync::atomic::AtomicU32,
    /// Tenant sessions ended before their expiry (see `sessions.rs`).
    ended_sessions: std::sync::RwLock<sessions::EndedByTenant>,
    /// Hosts whose first contact failed recently: their tenants fail fast until it expires.
    unreachable_hosts: Cache<Uuid, ()>,
    /// Bumped whenever notifications may have been missed; older entries must be read again.
    epoch: AtomicU64,
    /// Bumped on every change notification: an answer read while one arrived is not cached,
    /// since it may predate the change.
    changes: AtomicU64,
    /// After a failed read of the control plane, stale entries are served without asking it
    /// again until this passes.
    control_plane_down_until: Mutex<Option<Instant>>,
    /// The anonymous and authenticated request budgets (see [`crate::limits`]).
    budgets: crate::limits::RequestBudgets,
    /// Tenant app sign-in attempts per tenant and client address.
    login_limit: RateLimit<(Uuid, std::net::IpAddr)>,
    metrics: RouterMetrics,
    usage: crate::usage::UsageMeter,
}

impl std::fmt::Debug for RouterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterState")
            .field("tenants_cached", &self.inner.tenant_cache.entry_count())
            .field("pools_open", &self.inner.pool_cache.entry_count())
            .finish_non_exhaustive()
    }
}

impl RouterState {
    /// `base_domain`: the apex (tenants are `<slug>.<base>`), which custom domains may not use.
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        settings: RouterSettings,
        base_domain: &str,
    ) -> Self {
        let tenant_cache = Cache::builder()
            .max_capacity(100_000)
            // Entries outlive the TTL (they are re-read, or served stale if the control plane is
            // down); an entry nobody asked for in a day is dropped.
            .time_to_idle(Duration::from_secs(24 * 3600))
            .build();
        let domain_cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(24 * 3600))
            .support_invalidation_closures()
            .build();
        let api_key_cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_idle(Duration::from_secs(24 * 3600))
            .build();
        let api_keys_touched = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(API_KEY_TOUCH_INTERVAL)
            .build();
        let pool_cache = Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(settings.pool_idle_timeout)
            .build();
        let unreachable_hosts = Cache::builder()
            .time_to_live(settings.breaker_cool_down)
            .build();
        let budgets = crate::limits::RequestBudgets::new(&settings);
        Self {
            inner: Arc::new(Inner {
                store,
                keyring,
                settings,
                base_domain: base_domain.to_owned(),
                tenant_cache,
                domain_cache,
                api_key_cache,
                api_keys_touched,
                pool_cache,
                hosts: Mutex::new(HashMap::new()),
                identity: control_plane::routers::RouterIdentity::this_process(),
                routers: std::sync::atomic::AtomicU32::new(1),
                ended_sessions: std::sync::RwLock::default(),
                unreachable_hosts,
                epoch: AtomicU64::new(0),
                changes: AtomicU64::new(0),
                control_plane_down_until: Mutex::new(None),
                budgets,
                login_limit: RateLimit::new(LOGINS_PER_CLIENT_PER_MINUTE),
                metrics: RouterMetrics::default(),
                usage: crate::usage::UsageMeter::default(),
            }),
        }
    }

    pub fn metrics(&self) -> &RouterMetrics {
        &self.inner.metrics
    }

    /// The control-plane store, for the tenant app's tenant-scoped writes (custom domains).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    /// Counts one sign-in attempt; `Err(seconds to wait)` when over the limit.
    pub fn check_login_rate(&self, tenant: Uuid, client: std::net::IpAddr) -> Result<(), u32> {
        self.inner.login_limit.check(&(tenant, client))
    }

    pub fn base_domain(&self) -> &str {
        &self.inner.base_domain
    }

    pub fn settings(&self) -> &RouterSettings {
        &self.inner.settings
    }

    /// The database hosts this process has connected to, with their budgets and breakers.
    pub fn hosts(&self) -> Vec<(Uuid, Arc<HostState>)> {
        self.inner
            .hosts
            .lock()
            .map(|hosts| hosts.iter().map(|(id, host)| (*id, host.clone())).collect())
            .unwrap_or_default()
    }

    /// Adds the requests counted since the last flush to the control plane (one statement);
    /// on failure they are kept for the next flush. Returns how many tenants were flushed.
    pub async fn flush_usage(&self) -> usize {
        let batch = self.inner.usage.take();
        if batch.is_empty() {
            return 0;
        }
        match self.inner.store.add_requests(&batch).await {
            Ok(()) => batch.len(),
            Err(error) => {
                tracing::warn!(%error, tenants = batch.len(), "request counts not flushed; kept for the next flush");
                self.inner.usage.give_back(&batch);
                0
            }
        }
    }

    /// Runs moka's pending expiry work; moka has no thread of its own, so the binary calls this
    /// periodically to close idle pools on time.
    pub async fn run_cache_maintenance(&self) {
        self.inner.tenant_cache.run_pending_tasks().await;
        self.inner.domain_cache.run_pending_tasks().await;
        self.inner.api_key_cache.run_pending_tasks().await;
        self.inner.api_keys_touched.run_pending_tasks().await;
        self.inner.pool_cache.run_pending_tasks().await;
        self.inner.unreachable_hosts.run_pending_tasks().await;
        self.settle_budgets();
        self.prune_ended_sessions();
    }

    /// How many tenant pools are open.
    pub fn open_pools(&self) -> u64 {
        self.inner.pool_cache.entry_count()
    }

    fn control_plane_backing_off(&self) -> bool {
        self.inner
            .control_plane_down_until
            .lock()
            .map(|until| until.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    fn back_off_control_plane(&self) {
        if let Ok(mut until) = self.inner.control_plane_down_until.lock() {
            *until = Some(Instant::now() + CONTROL_PLANE_BACK_OFF);
        }
    }

    fn lookup_if(&self, counted: bool, result: &'static str) {
        if !counted {
            return;
        }
        self.inner
            .metrics
            .tenant_lookups
            .get_or_create(&LookupLabels { result })
            .inc();
    }

    /// The cached answer for `key` if fresh; otherwise `read` from the control plane (bounded in
    /// time when a stale answer exists), caching what it finds (a miss briefly); a stale answer
    /// if the control plane cannot be read.
    async fn read_through<T, F>(
        &self,
        cache: &Cache<String, Cached<T>>,
        key: &str,
        read: F,
    ) -> Result<T, ApiError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<Option<T>, StoreError>>,
    {
        self.read_through_counted(cache, key, read, true).await
    }

    /// [`Self::read_through`]; `counted`: whether the lookup counts in the tenant lookup metric.
    async fn read_through_counted<T, F>(
        &self,
        cache: &Cache<String, Cached<T>>,
        key: &str,
        read: F,
        counted: bool,
    ) -> Result<T, ApiError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<Option<T>, StoreError>>,
    {
        let inner = &self.inner;
        let found = |value: Option<T>| value.ok_or_else(ApiError::tenant_not_found);
        let cached = cache.get(key).await;
        let fresh = cached.as_ref().filter(|entry| {
            let ttl = match entry.value {
                Some(_) => inner.settings.tenant_cache_ttl,
                None => inner.settings.tenant_cache_ttl.min(MISS_TTL),
            };
            entry.epoch == inner.epoch.load(Ordering::SeqCst) && entry.read_at.elapsed() < ttl
        });
        if let Some(entry) = fresh {
            self.lookup_if(counted, "hit");
            return found(entry.value.clone());
        }
        if let Some(entry) = cached.as_ref().filter(|_| self.control_plane_backing_off()) {
            // The control plane failed a moment ago: do not make every request wait for it.
            self.lookup_if(counted, "stale");
            return found(entry.value.clone());
        }
        // Read the epoch and change count first: a change notified while we read makes what we
        // read unfit to cache.
        let epoch = inner.epoch.load(Ordering::SeqCst);
        let changes = inner.changes.load(Ordering::SeqCst);
        // With a stale entry to fall back on, a slow control plane is not waited out.
        let read = match &cached {
            Some(_) => tokio::time::timeout(STALE_REFRESH_TIMEOUT, read)
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))),
            None => read.await,
        };
        match read {
            Ok(value) => {
                self.lookup_if(counted, "miss");
                if inner.changes.load(Ordering::SeqCst) == changes {
                    let entry = Cached {
                        value: value.clone(),
                        read_at: Instant::now(),
                        epoch,
                    };
                    cache.insert(key.to_owned(), entry).await;
                } else {
                    cache.invalidate(key).await;
                }
                found(value)
            }
            Err(error) => {
                self.back_off_control_plane();
                match cached {
                    Some(entry) => {
                        self.lookup_if(counted, "stale");
                        tracing::warn!(%error, "control plane unreachable; serving the last known record");
                        found(entry.value)
                    }
                    None => {
                        tracing::warn!(%error, "control plane unreachable; cannot resolve");
                        Err(ApiError::unavailable())
                    }
                }
            }
        }
    }

    /// The stored API key with `prefix` (revoked or not; `None` if there is none), cached like
    /// tenants: read once per TTL at most, dropped at once by the key's change notification.
    pub async fn api_key(&self, prefix: &str) -> Result<Option<Arc<StoredApiKey>>, ApiError> {
        let store = &self.inner.store;
        // An unknown prefix is cached as `Some(None)`, for the full TTL: a key's creation is
        // itself a notification that drops it. Floods of made-up prefixes are bounded by the
        // tenant's rate limit, which is counted before any key is looked up.
        let read = async { Ok(Some(store.api_key_by_prefix(prefix).await?.map(Arc::new))) };
        self.read_through_counted(&self.inner.api_key_cache, prefix, read, false)
            .await
    }

    /// Forgets a key this router just changed, without waiting for its notification.
    pub async fn forget_api_key(&self, prefix: &str) {
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        self.inner.api_key_cache.invalidate(prefix).await;
    }

    /// Records that a key was used, at most once per [`API_KEY_TOUCH_INTERVAL`] per key and
    /// router (the store skips the write too if another router wrote within the minute), in
    /// the background so the request does not wait for it.
    pub async fn note_api_key_used(&self, key_id: Uuid) {
        let touched = &self.inner.api_keys_touched;
        if touched.contains_key(&key_id) {
            return;
        }
        touched.insert(key_id, ()).await;
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(error) = store.touch_api_key(key_id).await {
                tracing::warn!(%error, %key_id, "cannot record an API key's use");
            }
        });
    }

    /// Resolves a verified custom domain to its tenant, like [`Self::resolve`] a slug.
    pub async fn resolve_domain(&self, domain: &str) -> Result<Arc<ResolvedTenant>, ApiError> {
        let tenant = self.look_up_domain(domain).await?;
        admit(tenant)
    }

    /// Resolves a slug to a tenant that may be served, or the error the client should see.
    pub async fn resolve(&self, slug: &str) -> Result<Arc<ResolvedTenant>, ApiError> {
        let tenant = self.look_up(slug).await?;
        admit(tenant)
    }

    /// The tenant a verified custom domain names, served or not (see [`Self::look_up`]).
    pub(crate) async fn look_up_domain(
        &self,
        domain: &str,
    ) -> Result<Arc<ResolvedTenant>, ApiError> {
        let (_, slug) = self
            .read_through(
                &self.inner.domain_cache,
                domain,
                self.inner.store.tenant_by_domain(domain),
            )
            .await?;
        self.look_up(&slug).await
    }

    /// The tenant a slug names, whatever its state (`tenant_not_found` when none): what its
    /// refusal pages need (its branding) before [`admit`] decides whether it is served.
    pub(crate) async fn look_up(&self, slug: &str) -> Result<Arc<ResolvedTenant>, ApiError> {
        let store = &self.inner.store;
        let read = async {
            let Some(record) = store.tenant_by_slug(slug).await? else {
                return Ok(None);
            };
            let entitlements = store.entitlements(record.id).await?;
            let branding = store.branding(record.id).await?;
            let requests = self.inner.usage.counter(record.id);
            Ok(Some(Arc::new(ResolvedTenant::new(
                record,
                entitlements,
                branding,
                requests,
            ))))
        };
        self.read_through(&self.inner.tenant_cache, slug, read)
            .await
    }

    /// Counts one request against one of the tenant's budgets (see [`crate::limits`]): its
    /// plan's rate, capped by the router's `tenant_requests_per_second` (0 there: no limit at
    /// all), for verified credentials; the anonymous budgets, per tenant and per `client`, for
    /// the rest.
    pub fn check_rate(
        &self,
        tenant: &ResolvedTenant,
        budget: crate::limits::Budget,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        let plan_rate = tenant
            .entitlements
            .plan
            .requests_per_second
            .and_then(|rate| u32::try_from(rate).ok());
        self.inner
            .budgets
            .check(tenant.id, plan_rate, budget, client)
            .map_err(|seconds| {
                self.inner.metrics.rate_limited.inc();
                crate::limits::rate_limited(budget, seconds)
            })
    }

    /// Before a credential is checked: 429 while `client` is penalised for failed ones.
    pub fn check_credential_penalty(
        &self,
        tenant: &ResolvedTenant,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        let Some(client) = client else {
            return Ok(());
        };
        self.inner
            .budgets
            .penalty(tenant.id, client)
            .map_err(|seconds| {
                self.inner.metrics.rate_limited.inc();
                crate::limits::rate_limited(crate::limits::Budget::Anonymous, seconds)
            })
    }

    /// A credential that failed its check: charged to the client's anonymous budget. The
    /// answer is `refusal` (401), or 429 once that budget is spent.
    pub fn credential_refused(
        &self,
        tenant: &ResolvedTenant,
        client: Option<std::net::IpAddr>,
        refusal: ApiError,
    ) -> ApiError {
        let Some(client) = client else {
            return refusal;
        };
        match self.inner.budgets.credential_failed(tenant.id, client) {
            Ok(()) => refusal,
            Err(seconds) => {
                self.inner.metrics.rate_limited.inc();
                crate::limits::rate_limited(crate::limits::Budget::Anonymous, seconds)
            }
        }
    }
}
