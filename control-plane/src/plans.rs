//! Plans, modules and what a tenant is entitled to: its plan's modules and limits plus any
//! add-on modules (which may expire). The router enforces them; super-admins change them
//! (audited, and published to the routers by the tables' triggers).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// Every module a plan or an add-on can switch on.
pub const MODULES: [&str; 9] = [
    "inventory",
    "sales",
    "purchases",
    "reports",
    "stock_take",
    "multi_branch",
    "api_access",
    "advanced_reports",
    "custom_branding",
];

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Plan {
    pub code: String,
    pub name: String,
    pub monthly_price_cents: i64,
    pub yearly_price_cents: i64,
    /// `None`: unlimited.
    pub max_branches: Option<i32>,
    pub max_users: Option<i32>,
    pub max_items: Option<i32>,
    pub requests_per_second: Option<i32>,
    pub modules: Vec<String>,
    /// Count limits on what the owner stores in the control plane (see `limits`).
    pub max_custom_domains: Option<i32>,
    pub max_api_keys: Option<i32>,
    pub max_integrations: Option<i32>,
    pub max_pending_invitations: Option<i32>,
}

/// A tenant's plan and its subscription's billing columns (all `None` without a subscription).
#[derive(Debug, sqlx::FromRow)]
struct EntitlementRow {
    #[sqlx(flatten)]
    plan: Plan,
    subscription_status: Option<String>,
    grace_ends_at: Option<DateTime<Utc>>,
    cancel_at: Option<DateTime<Utc>>,
    trial_ends_at: Option<DateTime<Utc>>,
}

/// An add-on module of one tenant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AddOn {
    pub module: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a tenant may use now.
#[derive(Debug, Clone, Serialize)]
pub struct Entitlements {
    pub plan: Plan,
    pub add_ons: Vec<AddOn>,
    /// The plan's modules and the unexpired add-ons.
    pub modules: BTreeSet<String>,
    /// Where billing stands (`None`: a tenant without a subscription row).
    pub billing: Option<Billing>,
}

/// The parts of the subscription the router acts on.
#[derive(Debug, Clone, Serialize)]
pub struct Billing {
    pub status: crate::subscriptions::SubscriptionStatus,
    /// Past due: when it will be suspended unless paid.
    pub grace_ends_at: Option<DateTime<Utc>>,
    /// A cancellation scheduled for the end of the period.
    pub cancel_at: Option<DateTime<Utc>>,
    pub trial_ends_at: Option<DateTime<Utc>>,
}

impl Entitlements {
    pub fn has(&self, module: &str) -> bool {
        self.modules.contains(module)
    }
}

impl Store {
    /// Every plan, cheapest first.
    pub async fn plans(&self) -> StoreResult<Vec<Plan>> {
        let plans = sqlx::query_as("SELECT * FROM plans ORDER BY position")
            .fetch_all(self.pool())
            .await?;
        Ok(plans)
    }

    /// The tenant's plan, add-ons and the modules they give it now.
    pub async fn entitlements(&self, tenant_id: Uuid) -> StoreResult<Entitlements> {
        let row = sqlx::query_as::<_, EntitlementRow>(
            "SELECT p.*, s.status AS subscription_status, s.grace_ends_at, s.cancel_at, \
             s.trial_ends_at FROM tenants t JOIN plans p ON p.code = t.plan_code \
             LEFT JOIN subscriptions s ON s.tenant_id = t.id WHERE t.id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        let plan = row.plan;
        let billing = row
            .subscription_status
            .as_deref()
            .and_then(crate::subscriptions::SubscriptionStatus::parse)
            .map(|status| Billing {
                status,
                grace_ends_at: row.grace_ends_at,
                cancel_at: row.cancel_at,
                trial_ends_at: row.trial_ends_at,
            });
        let add_ons: Vec<AddOn> = sqlx::query_as(
            "SELECT module, expires_at FROM tenant_modules WHERE tenant_id = $1 ORDER BY module",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        let now = Utc::now();
        let modules = plan
            .modules
            .iter()
            .cloned()
            .chain(
                add_ons
                    .iter()
                    .filter(|add_on| add_on.expires_at.is_none_or(|expires| expires > now))
                    .map(|add_on| add_on.module.clone()),
            )
            .collect();
        Ok(Entitlements {
            plan,
            add_ons,
            modules,
            billing,
        })
    }

    /// Moves a tenant to another plan, audited with before and after.
    pub async fn set_plan(&self, tenant_id: Uuid, plan: &str, actor: &str) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT plan_code FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let before = before.ok_or(StoreError::NotFound)?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plans WHERE code = $1)")
                .bind(plan)
                .fetch_one(&mut *transaction)
                .await?;
        if !exists {
            return Err(StoreError::UnknownPlan);
        }
        sqlx::query("UPDATE tenants SET plan_code = $2, updated_at = now() WHERE id = $1")
            .bind(tenant_id)
            .bind(plan)
            .execute(&mut *transaction)
            .await?;
        insert_audit(
            &mut transaction,
            actor,
            "tenant.change_plan",
            Some(tenant_id),
            serde_json::json!({"before": before, "after": plan}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Switches an add-on module on (until `expires_at`, if given) or off, audited.
    pub async fn set_add_on(
        &self,
        tenant_id: Uuid,
        module: &str,
        enabled: bool,
        expires_at: Option<DateTime<Utc>>,
        actor: &str,
    ) -> StoreResult<()> {
        if !MODULES.contains(&module) {
            return Err(StoreError::UnknownModule);
        }
        let mut transaction = self.pool().begin().await?;
        let before: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "SELECT expires_at FROM tenant_modules WHERE tenant_id = $1 AND module = $2",
        )
        .bind(tenant_id)
        .bind(module)
        .fetch_optional(&mut *transaction)
        .await?;
        if enabled {
            sqlx::query(
                "INSERT INTO tenant_modules (tenant_id, module, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, module) DO UPDATE SET expires_at = excluded.expires_at",
            )
            .bind(tenant_id)
            .bind(module)
            .bind(expires_at)
            .execute(&mut *transaction)
            .await?;
        } else {
            sqlx::query("DELETE FROM tenant_modules WHERE tenant_id = $1 AND module = $2")
                .bind(tenant_id)
                .bind(module)
                .execute(&mut *transaction)
                .await?;
        }
        insert_audit(
            &mut transaction,
            actor,
            "tenant.set_module",
            Some(tenant_id),
            serde_json::json!({
                "module": module,
                "before": before.map(|expires| serde_json::json!({"enabled": true, "expires_at": expires}))
                    .unwrap_or(serde_json::json!({"enabled": false})),
                "after": {"enabled": enabled, "expires_at": if enabled { expires_at } else { None }},
            }),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}
