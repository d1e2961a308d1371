//! The tenant's own users (owner only): list, add with a role, change role or name,
//! deactivate or remove (the same thing). The last active owner can be neither demoted nor deactivated.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use web::{ApiError, ErrorCode};

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields, Id, Page, Paged, Params, db_error, not_found};

#[derive(Debug, Serialize)]
pub struct User {
    id: i64,
    email: String,
    display_name: Option<String>,
    role: String,
    branch_id: Option<i64>,
    is_active: bool,
    last_login_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

pub(super) const USER_COLUMNS: &str =
    "id, email, display_name, role, branch_id, is_active, last_login_at, created_at";

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
    display_name: Option<String>,
    role: Option<String>,
    is_active: Option<bool>,
}

pub async fn list_users(
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<User>>, ApiError> {
    authed.require(Role::Owner)?;
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2");
    let users = page
        .fetch_page(authed.client(), &sql, &[], user, |u| u.id)
        .await?;
    Ok(Json(users))
}

pub async fn create_user(
    authed: Authed,
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
    authed
        .check_limit("users", limit, "SELECT count(*) FROM users WHERE is_active")
        .await?;
    let hash = control_plane::passwords::hash_async(new.password).await?;
    let row = authed
        .client()
        .query_one(
            &format!(
                "INSERT INTO users (email, display_name, password_hash, role, branch_id) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING {USER_COLUMNS}"
            ),
            &[&email, &new.display_name, &hash, &new.role, &new.branch_id],
        )
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(user(&row))))
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
    let transaction = authed
        .connection
        .client
        .transaction()
        .await
        .map_err(db_error)?;
    // Serialise owner changes so two owners cannot demote each other at once.
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(hashtext('silo.users.owners'))",
            &[],
        )
        .await
        .map_err(db_error)?;
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
pub async fn plan(authed: Authed) -> Result<Json<serde_json::Value>, ApiError> {
    authed.require(Role::Owner)?;
    let entitlements = &authed.connection.tenant.entitlements;
    Ok(Json(serde_json::json!({
        "plan": entitlements.plan,
        "add_ons": entitlements.add_ons,
        "modules": entitlements.modules,
        "usage": usage_against_limits(&authed).await?,
    })))
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
