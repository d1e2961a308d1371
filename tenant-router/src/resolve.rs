//! Tenant resolution and per-tenant connection pools, both cached in moka.
//!
//! Misses are not cached, so a tenant is reachable the moment it is activated. Every change to a
//! tenant row is published by the control-plane database (LISTEN/NOTIFY) and drops that tenant's
//! entries at once; the TTL on hits is only a backstop.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use control_plane::model::{TENANT_CHANGES_CHANNEL, TenantChanged, TenantStatus};
use control_plane::settings::RouterSettings;
use control_plane::store::TenantRecord;
use control_plane::{ApiError, Keyring, Purpose, Sealed, Store};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use moka::future::Cache;
use secrecy::ExposeSecret as _;
use uuid::Uuid;

/// What the router needs to know about a tenant to serve it.
#[derive(Debug, Clone)]
pub struct ResolvedTenant {
    pub id: Uuid,
    pub slug: String,
    pub status: TenantStatus,
    sealed_database_url: Option<Sealed>,
}

impl From<TenantRecord> for ResolvedTenant {
    fn from(record: TenantRecord) -> Self {
        Self {
            id: record.id,
            slug: record.slug,
            status: record.status,
            sealed_database_url: record.sealed_database_url,
        }
    }
}

/// The router's shared state: the control-plane store, the keyring, and the two caches.
#[derive(Debug, Clone)]
pub struct RouterState {
    store: Store,
    keyring: Arc<Keyring>,
    settings: RouterSettings,
    tenant_cache: Cache<String, Arc<ResolvedTenant>>,
    pool_cache: Cache<Uuid, Pool>,
}

impl RouterState {
    pub fn new(store: Store, keyring: Arc<Keyring>, settings: RouterSettings) -> Self {
        let tenant_cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.tenant_cache_ttl)
            .build();
        let pool_cache = Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(settings.pool_idle_timeout)
            .build();
        Self {
            store,
            keyring,
            settings,
            tenant_cache,
            pool_cache,
        }
    }

    /// Runs moka's pending expiry work; moka has no thread of its own, so the binary calls this
    /// periodically to close idle pools on time.
    pub async fn run_cache_maintenance(&self) {
        self.tenant_cache.run_pending_tasks().await;
        self.pool_cache.run_pending_tasks().await;
    }

    /// Forgets one tenant: its resolution and its pool. A pool in use by a request stays alive
    /// (deadpool pools are reference-counted) until that request returns its connection.
    pub async fn invalidate(&self, changed: &TenantChanged) {
        self.tenant_cache.invalidate(&changed.slug).await;
        self.pool_cache.invalidate(&changed.id).await;
    }

    /// Forgets every tenant; used when change notifications may have been missed.
    pub fn invalidate_all(&self) {
        self.tenant_cache.invalidate_all();
        self.pool_cache.invalidate_all();
    }

    /// Listens for tenant changes and drops the affected cache entries until `shutdown`
    /// resolves. After a lost connection it clears both caches before trusting them again, since
    /// notifications sent meanwhile are lost.
    pub async fn follow_changes(&self, shutdown: impl Future<Output = ()>) {
        let follow = async {
            loop {
                let mut listener = match self.store.listen(TENANT_CHANGES_CHANNEL).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for tenant changes; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                // Anything cached before listening may already be stale.
                self.invalidate_all();
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            match serde_json::from_str::<TenantChanged>(notification.payload()) {
                                Ok(changed) => self.invalidate(&changed).await,
                                Err(_) => self.invalidate_all(),
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "tenant change listener lost its connection; resynchronising"
                            );
                            self.invalidate_all();
                        }
                        Err(error) => {
                            tracing::warn!(%error, "tenant change listener failed; reconnecting");
                            self.invalidate_all();
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            break;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = follow => {},
            () = shutdown => {},
        }
    }

    /// How many tenant pools are open.
    pub fn open_pools(&self) -> u64 {
        self.pool_cache.entry_count()
    }

    /// Resolves a slug to a tenant that may be served, or the error the client should see.
    pub async fn resolve(&self, slug: &str) -> Result<Arc<ResolvedTenant>, ApiError> {
        let tenant = match self.tenant_cache.get(slug).await {
            Some(tenant) => tenant,
            None => {
                let record = self
                    .store
                    .tenant_by_slug(slug)
                    .await?
                    .ok_or_else(ApiError::tenant_not_found)?;
                let tenant = Arc::new(ResolvedTenant::from(record));
                self.tenant_cache
                    .insert(slug.to_owned(), tenant.clone())
                    .await;
                tenant
            }
        };
        match tenant.status {
            TenantStatus::Active => Ok(tenant),
            TenantStatus::Provisioning => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant_provisioning",
                "This workspace is being set up. It will be ready in a few seconds.",
            )
            .retry_after(2)),
            TenantStatus::Suspended => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_suspended",
                "This workspace is suspended. Its owner can contact support to reactivate it.",
            )),
            TenantStatus::Failed => Err(tenant_unavailable()),
            TenantStatus::Cancelled | TenantStatus::Deprovisioned => Err(ApiError::new(
                StatusCode::GONE,
                "tenant_cancelled",
                "This workspace was closed. Its owner can ask support for the export of its data.",
            )),
        }
    }

    /// A connection to the tenant's own database from its cached pool.
    pub async fn connection(
        &self,
        tenant: &ResolvedTenant,
    ) -> Result<deadpool_postgres::Object, ApiError> {
        let pool = self
            .pool_cache
            .try_get_with(tenant.id, async { self.build_pool(tenant) })
            .await
            .map_err(|error: Arc<ApiError>| (*error).clone())?;
        pool.get().await.map_err(|error| {
            tracing::warn!(tenant = %tenant.slug, %error, "cannot get a tenant database connection");
            tenant_unavailable()
        })
    }

    fn build_pool(&self, tenant: &ResolvedTenant) -> Result<Pool, ApiError> {
        let sealed = tenant
            .sealed_database_url
            .as_ref()
            .ok_or_else(tenant_unavailable)?;
        let url = self
            .keyring
            .open(Purpose::TenantDatabaseUrl, tenant.id, sealed)
            .map_err(|error| {
                tracing::error!(tenant = %tenant.slug, %error, "cannot open the tenant's connection string");
                tenant_unavailable()
            })?;
        let mut config: tokio_postgres::Config = url.expose_secret().parse().map_err(|_| {
            tracing::error!(tenant = %tenant.slug, "the tenant's connection string does not parse");
            tenant_unavailable()
        })?;
        config.connect_timeout(self.settings.connect_timeout);
        config.application_name("silo-router");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                // Reset session state between requests so nothing leaks from one to the next.
                recycling_method: RecyclingMethod::Clean,
            },
        );
        Pool::builder(manager)
            .max_size(self.settings.pool_max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.settings.connect_timeout))
            .create_timeout(Some(self.settings.connect_timeout))
            .build()
            .map_err(|_| ApiError::internal())
    }
}

fn tenant_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "tenant_unavailable",
        "This workspace's database cannot be reached right now. Try again shortly.",
    )
    .retry_after(5)
}
