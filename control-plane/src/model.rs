//! Types that cross a process or crate boundary: API requests and responses, job payloads and
//! tenant states. Every other crate talks to the control plane through these, never through its
//! internals. (Kept here, behind one module, while it is small; see ARCHITECTURE.md.)

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The apalis queue provisioning jobs travel on; producers and workers must agree on it.
pub const PROVISION_QUEUE: &str = "silo.provision";

/// A tenant's lifecycle state as stored in `tenants.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Provisioning,
    Active,
    Failed,
    Suspended,
    /// Cancelled: no longer served; exported, and dropped after the grace period.
    Cancelled,
    /// Its database and role are gone; the row, its exports and its audit trail remain.
    Deprovisioned,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Provisioning => "provisioning",
            TenantStatus::Active => "active",
            TenantStatus::Failed => "failed",
            TenantStatus::Suspended => "suspended",
            TenantStatus::Cancelled => "cancelled",
            TenantStatus::Deprovisioned => "deprovisioned",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "provisioning" => TenantStatus::Provisioning,
            "active" => TenantStatus::Active,
            "failed" => TenantStatus::Failed,
            "suspended" => TenantStatus::Suspended,
            "cancelled" => TenantStatus::Cancelled,
            "deprovisioned" => TenantStatus::Deprovisioned,
            _ => return None,
        })
    }
}

/// The channel on which every routing-relevant change to a tenant row is published (by a trigger,
/// on commit); the payload is [`TenantChanged`] as JSON.
pub const TENANT_CHANGES_CHANNEL: &str = "silo_tenant_changes";

/// The payload of a [`TENANT_CHANGES_CHANNEL`] notification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantChanged {
    pub id: Uuid,
    pub slug: String,
    /// Set when the change was to one of the tenant's custom domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Set (to the key's prefix) when the change was to one of the tenant's API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Set when sessions of the tenant were ended (sign-out, password reset): routers reload
    /// its ended sessions, and nothing else of the tenant changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_ended: Option<String>,
}

/// The provisioning job. It carries the tenant id explicitly and nothing secret: the admin
/// password is hashed before it is stored, and the job reads it from the tenant row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProvisionTenant {
    pub tenant_id: Uuid,
}

/// `POST /api/v1/signups`.
#[derive(Debug, Clone, Deserialize)]
pub struct SignupRequest {
    pub company_name: String,
    pub subdomain: String,
    pub admin_email: String,
    pub admin_password: secrecy::SecretString,
}

/// `202` answer to a signup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignupAccepted {
    pub tenant_id: Uuid,
    pub subdomain: String,
    pub status: TenantStatus,
    pub status_url: String,
}

/// `GET /api/v1/signups/{tenant_id}`: where provisioning stands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignupStatus {
    pub tenant_id: Uuid,
    pub subdomain: String,
    pub status: TenantStatus,
    /// The last provisioning step completed (`placed`, `role_created`, …).
    pub step: Option<String>,
    /// Why provisioning failed, in words fit for the person who signed up.
    pub reason: Option<String>,
    pub schema_version: Option<i32>,
    /// The tenant's own URL, once it is active.
    pub tenant_url: Option<String>,
    /// Once active, and only for the status URL the signup answered (it carries the signup's
    /// landing key): a link that signs the owner in once, within a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_url: Option<String>,
}

/// `GET /api/v1/health` on a tenant host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantHealth {
    pub tenant: String,
    pub schema_version: i32,
}
