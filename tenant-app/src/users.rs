//! The tenant's own users (owner only): list, add with a role, change role or name,
//! deactivate or remove (the same thing). The last active owner can be neither demoted nor deactivated.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use web::{ApiError, ErrorCode};

use crate::auth::{Authed, Role, plan_limit_reached};
use crate::common::{Body, Fields, Id, Page, Paged, Params, db_error, not_found};

#[derive(Debug, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: Option<String>,
    pub role: String,
    pub branch_id: Option<i64>,
    pub is_active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub(super) const USER_COLUMNS: &str =
    "id, email, display_name, role, branch_id, is_active, last_login_at, created_at";

impl User {
    pub(crate) fn id(&self) -> i64 {
        self.id
    }
}

pub(super) fn user(row: &Row) -> User {
    User {
        id: row.get("id"),
        email: row.get("email"),
        display_name: row.get("display_name"),
        role: row.get("role"),
        branch_id: row.get("branch_id"),
        is_active: row.get("is_active"),
        last_login_at: row.get("last_login_at"),
        created_at: row.get("created_at"),
    }
}

#[derive(Debug, Deserialize)]
pub struct NewUser {
    email: String,
    display_name: Option<String>,
    password: SecretString,
    role: String,
    branch_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

pub async fn list_users(
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<User>>, ApiError> {
    users_page(&authed, &page).await.map(Json)
}

/// One page of the workspace's users, by id (owner).
pub async fn users_page(authed: &Authed, page: &Page) -> Result<Paged<User>, ApiError> {
    authed.require(Role::Owner)?;
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
    page.fetch_page(authed.client(), &sql, &[], user, |u| u.id)
        .await
}

pub async fn create_user(
    mut authed: Authed,
    Body(new): Body<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    authed.require(Role::Owner)?;
    let mut fields = Fields::default();
    let email = new.email.trim();
    fields.check(
        email.len() <= 320
            && email
                .split_once('@')
                .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.')),
        "email",
        "must be an email address",
    );
    fields.optional_text("display_name", new.display_name.as_deref(), 200);
    let password_length = new.password.expose_secret().chars().count();
    fields.check(
        (10..=1024).contains(&password_length),
        "password",
        "must be 10 to 1024 characters",
    );
    fields.check(
        Role::parse(&new.role).is_some(),
        "role",
        "must be owner, staff or read_only",
    );
    fields.finish()?;
    let limit = authed.connection.tenant.entitlements.plan.max_users;
    // A cheap refusal before the hash; the count that decides is the locked one below.
    authed
        .check_limit("users", limit, "SELECT count(*) FROM users WHERE is_active")
        .await?;
    let hash = control_plane::passwords::hash_async(new.password).await?;
    let plan = authed.connection.tenant.entitlements.plan.clone();
    let transaction = authed.transaction().await?;
    make_room_for_an_active_user(&transaction, &plan, None).await?;
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO users (email, display_name, password_hash, role, branch_id) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
            ),
            &[&email, &new.display_name, &hash, &new.role, &new.branch_id],
        )
        .await
        .map_err(db_error)?;
    transaction.commit().await.map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(user(&row))))
}

/// Takes the workspace's user-limit lock until `transaction` ends, then refuses with 403
/// `plan_limit_reached` if one more active user would pass the plan's limit. Every path that
/// makes a user active (create, reactivate, an accepted invitation) calls it inside the
/// transaction that does so, so racing requests are counted one after another rather than each
/// against the same stale count. `user_id`: the user about to be made active, if it exists (an
/// already active one takes no new place).
pub(crate) async fn make_room_for_an_active_user(
    transaction: &tokio_postgres::Transaction<'_>,
    plan: &control_plane::plans::Plan,
    user_id: Option<i64>,
) -> Result<(), ApiError> {
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('silo.users.limit'))",
            &[],
        )
        .await
        .map_err(db_error)?;
    let Some(limit) = plan.max_users else {
        return Ok(());
    };
    let row = transaction
        .query_one(
            "SELECT count(*) FILTER (WHERE is_active) AS active, \
                    coalesce(bool_or(is_active AND id = $1), false) AS already_active \
             FROM users",
            &[&user_id.unwrap_or(0)],
        )
        .await
        .map_err(db_error)?;
    let active: i64 = row.get("active");
    let already_active: bool = row.get("already_active");
    if already_active || active < i64::from(limit) {
        return Ok(());
    }
    Err(plan_limit_reached(&plan.name, limit, "users", active))
}

pub async fn update_user(
    mut authed: Authed,
    Id(id): Id,
    Body(change): Body<UserChange>,
) -> Result<Json<User>, ApiError> {
    authed.require(Role::Owner)?;
    let mut fields = Fields::default();
    fields.optional_text("display_name", change.display_name.as_deref(), 200);
    if let Some(role) = &change.role {
        fields.check(
            Role::parse(role).is_some(),
            "role",
            "must be owner, staff or read_only",
        );
    }
    fields.finish()?;
    Ok(Json(change_user(&mut authed, id, &change).await?))
}

/// `DELETE /api/v1/users/{id}` (owner): removes a user from the workspace by deactivating it
/// (its rows stay attributed; its sessions stop at once). The last active owner stays.
pub async fn remove_user(
    axum::extract::State(router): axum::extract::State<tenant_router::RouterState>,
    mut authed: Authed,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    authed.require(Role::Owner)?;
    let change = UserChange {
        display_name: None,
        role: None,
        is_active: Some(false),
    };
    let removed = change_user(&mut authed, id, &change).await?;
    router
        .store()
        .audit(
            &authed.actor(),
            "user.remove",
            Some(authed.connection.tenant.id),
            serde_json::json!({"user_id": removed.id, "email": removed.email,
                               "role": removed.role, "before": "active", "after": "inactive"}),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Applies a validated change to user `id`, refusing (and rolling back) one that would leave
/// the workspace without an active owner: 409 `last_owner`.
async fn change_user(authed: &mut Authed, id: i64, change: &UserChange) -> Result<User, ApiError> {
    let plan = authed.connection.tenant.entitlements.plan.clone();
    let transaction = authed.transaction().await?;
    // Serialise owner changes so two owners cannot demote each other at once.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('silo.users.owners'))",
            &[],
        )
        .await
        .map_err(db_error)?;
    if change.is_active == Some(true) {
        // Reactivating takes a place within the plan's user limit like a new user does.
        make_room_for_an_active_user(&transaction, &plan, Some(id)).await?;
    }
    let row = transaction
        .query_opt(
            &format!(
                "UPDATE users SET display_name = coalesce($2, display_name), \
                 role = coalesce($3, role), is_active = coalesce($4, is_active), \
                 updated_at = now() WHERE id = $1 RETURNING {USER_COLUMNS}"
            ),
            &[&id, &change.display_name, &change.role, &change.is_active],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("user"))?;
    let owners: i64 = transaction
        .query_one(
            "SELECT count(*) FROM users WHERE role = 'owner' AND is_active",
            &[],
        )
        .await
        .map_err(db_error)?
        .get(0);
    if owners == 0 {
        // Dropping the transaction rolls the change back.
        return Err(ApiError::new(
            ErrorCode::LastOwner,
            "This is the workspace's last active owner; make someone else owner first.",
        ));
    }
    transaction.commit().await.map_err(db_error)?;
    Ok(user(&row))
}

/// `GET /api/v1/plan` (owner): the plan, add-ons and modules, and usage against the limits.
pub async fn plan(
    axum::extract::State(router): axum::extract::State<tenant_router::RouterState>,
    authed: Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    plan_of(&router, &authed).await.map(Json)
}

/// The plan, add-ons, modules and usage against the limits, as `GET /api/v1/plan` answers it:
/// what lives in the tenant's database and what the owner keeps in the control plane.
pub async fn plan_of(
    router: &tenant_router::RouterState,
    authed: &Authed,
) -> Result<serde_json::Value, ApiError> {
    use control_plane::limits::Counted;
    authed.require(Role::Owner)?;
    let entitlements = &authed.connection.tenant.entitlements;
    let mut usage = usage_against_limits(authed).await?;
    let stored = router
        .store()
        .stored_counts(authed.connection.tenant.id)
        .await?;
    let plan = &entitlements.plan;
    for (name, used, counted) in [
        (
            "custom_domains",
            stored.custom_domains,
            Counted::CustomDomains,
        ),
        ("api_keys", stored.api_keys, Counted::ApiKeys),
        ("integrations", stored.integrations, Counted::Integrations),
        (
            "pending_invitations",
            stored.pending_invitations,
            Counted::PendingInvitations,
        ),
    ] {
        usage[name] = serde_json::json!({"used": used, "limit": counted.limit(plan)});
    }
    Ok(serde_json::json!({
        "plan": entitlements.plan,
        "add_ons": entitlements.add_ons,
        "modules": entitlements.modules,
        "usage": usage,
    }))
}

/// Branches, active users and items now (read live from the tenant's database), each with the
/// plan's limit.
async fn usage_against_limits(authed: &Authed) -> Result<serde_json::Value, ApiError> {
    let row = authed
        .client()
        .query_one(tenant_schema::USAGE_COUNTS_SQL, &[])
        .await
        .map_err(db_error)?;
    let plan = &authed.connection.tenant.entitlements.plan;
    let usage = |what: &str, limit: Option<i32>| serde_json::json!({"used": row.get::<_, i64>(what), "limit": limit});
    Ok(serde_json::json!({
        "branches": usage("branches", plan.max_branches),
        "users": usage("users", plan.max_users),
        "items": usage("items", plan.max_items),
    }))
}

/// `GET /api/v1/usage` (owner): usage against the plan's limits, requests per day (the last 30
/// days, as flushed by the routers) and the newest sample of the database's size.
pub async fn usage(
    axum::extract::State(router): axum::extract::State<tenant_router::RouterState>,
    authed: Authed,
) -> Result<Json<serde_json::Value>, ApiError> {
    authed.require(Role::Owner)?;
    let limits = usage_against_limits(&authed).await?;
    let metered = router
        .store()
        .tenant_usage(authed.connection.tenant.id, 30)
        .await?;
    Ok(Json(serde_json::json!({
        "limits": limits,
        "requests_today": metered.requests_today,
        "requests": metered.requests,
        "database_bytes": metered.sample.as_ref().and_then(|sample| sample.database_bytes),
        "sampled_at": metered.sample.as_ref().map(|sample| sample.sampled_at),
    })))
}
