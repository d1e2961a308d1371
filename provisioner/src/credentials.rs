//! Rotating a tenant's database credentials: a new random password for its role, sealed and
//! stored, then set on the server. Routers hear of the new sealed URL (LISTEN/NOTIFY) and build
//! new pools with it; connections already open stay valid until they close (PostgreSQL checks
//! passwords only at connect).
//!
//! The stored URL is the truth and the server is made to match it, as in provisioning: if the
//! process dies between the two, new connections fail until the rotation is run again, which
//! converges.

use control_plane::model::TenantStatus;
use control_plane::store::StoreError;
use control_plane::{Keyring, Purpose, Store};
use uuid::Uuid;

use crate::host_sql::{
    ProvisionError, connect, generate_names, password_verifier, set_role_password,
    tenant_database_url, with_database,
};

/// Gives the tenant's role a new password; `actor` goes into the audit log.
pub async fn rotate_credentials(
    store: &Store,
    keyring: &Keyring,
    tenant_id: Uuid,
    actor: &str,
) -> Result<(), ProvisionError> {
    let tenant = store.tenant(tenant_id).await?;
    let (Some(host_id), Some(role), Some(database)) = (
        tenant.host_id,
        tenant.role_name.as_deref(),
        tenant.database_name.as_deref(),
    ) else {
        return Err(StoreError::WrongStatus(tenant.status.as_str()).into());
    };
    if matches!(
        tenant.status,
        TenantStatus::Provisioning | TenantStatus::Deprovisioned
    ) || tenant.sealed_database_url.is_none()
    {
        return Err(StoreError::WrongStatus(tenant.status.as_str()).into());
    }
    let host = store.host(host_id).await?;
    let admin_url = keyring.open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
    let (_, _, password) = generate_names();
    let url = tenant_database_url(&admin_url, role, &password, database)?;
    let sealed = keyring.seal(Purpose::TenantDatabaseUrl, tenant.id, &url);
    store.replace_tenant_url(tenant.id, &sealed, actor).await?;
    let admin = connect(&with_database(&admin_url, "postgres")?).await?;
    // The tenant's recorded role: rotated whether or not it predates Silo's ownership marker.
    set_role_password(&admin, role, &password_verifier(&url)?).await
}
