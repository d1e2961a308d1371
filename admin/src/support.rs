//! Support access: a super-admin reads a tenant's users (email, role, whether active — never a
//! password hash) and a few counts from the tenant's own database, read-only and audited.
//!
//! Invariant: the audit row `tenant.support_access` (the admin's name, the channel, the reason)
//! is committed before the tenant database is opened, so no data is shown without a record of
//! who saw it; if the audit write fails, nothing is read.
//! Invariant: the session is read-only twice over: the connection starts with
//! `default_transaction_read_only=on`, and all reads run inside `START TRANSACTION READ ONLY`
//! whose snapshot is taken at once — after that PostgreSQL refuses both writes and
//! `SET TRANSACTION READ WRITE`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use control_plane::Keyring;
use control_plane::connect::{self, ConnectError, ConnectOptions};
use control_plane::tenants::TenantRecord;
use maud::html;
use serde::{Deserialize, Serialize};
use serde_json::json;
use web::{ApiError, ErrorCode};

use crate::AdminState;
use crate::auth::Admin;
use crate::dashboard::{error_page, page, to_login};

/// At most this many users are listed (the counts are exact).
const MAX_USERS: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// The tenant's database does not exist (yet, or any more).
    #[error("the tenant has no database to read (it is {0})")]
    NoDatabase(&'static str),
    #[error("the tenant's connection string cannot be opened: {0}")]
    Sealing(#[from] control_plane::sealing::SealingError),
    #[error("the tenant's connection string does not parse")]
    BadUrl,
    /// A refused or failed query or connection (a write in a read-only session lands here).
    #[error("tenant database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The URL's TLS settings are unusable, or TLS with the tenant's server failed.
    #[error("tenant database: {0}")]
    Connect(ConnectError),
}

impl SupportError {
    /// The SQLSTATE of a refused query, if PostgreSQL sent one.
    pub fn sql_state(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            SupportError::Database(error) => error.code(),
            _ => None,
        }
    }
}

impl From<SupportError> for ApiError {
    fn from(error: SupportError) -> Self {
        match error {
            SupportError::NoDatabase(status) => ApiError::new(
                ErrorCode::NoDatabase,
                format!(
                    "The tenant is {status} and has no database to read; support access needs a provisioned tenant."
                ),
            ),
            other => {
                tracing::warn!(error = %other, "support access to a tenant database failed");
                ApiError::new(
                    ErrorCode::TenantUnavailable,
                    "The tenant's database cannot be read right now; try again in a moment.",
                )
                .retry_after(5)
            }
        }
    }
}

/// One of the tenant's users as support sees them.
#[derive(Debug, Clone, Serialize)]
pub struct SupportUser {
    pub email: String,
    pub display_name: Option<String>,
    pub role: String,
    pub active: bool,
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Exact counts from the tenant's database.
#[derive(Debug, Clone, Serialize)]
pub struct SupportCounts {
    pub users: i64,
    pub active_users: i64,
    pub branches: i64,
    pub items: i64,
    pub sales: i64,
}

/// What support access shows.
#[derive(Debug, Clone, Serialize)]
pub struct SupportSnapshot {
    pub users: Vec<SupportUser>,
    pub counts: SupportCounts,
}

/// A read-only session on one tenant's database, opened with the tenant's own credentials.
pub struct SupportSession {
    client: tokio_postgres::Client,
}

impl SupportSession {
    /// Connects with the tenant's sealed URL and starts the read-only transaction.
    pub async fn open(keyring: &Keyring, tenant: &TenantRecord) -> Result<Self, SupportError> {
        let sealed = tenant
            .sealed_database_url
            .as_ref()
            .ok_or(SupportError::NoDatabase(tenant.status.as_str()))?;
        let options = ConnectOptions {
            connect_timeout: Duration::from_secs(5),
            server_options: Some("-c default_transaction_read_only=on -c statement_timeout=5000"),
            ..ConnectOptions::named("silo-support")
        };
        let client = connect::connect_tenant(keyring, tenant.id, Some(sealed), options)
            .await
            .map_err(|error| match error {
                ConnectError::NoUrl => SupportError::NoDatabase(tenant.status.as_str()),
                ConnectError::Sealing(error) => SupportError::Sealing(error),
                ConnectError::BadUrl => SupportError::BadUrl,
                ConnectError::Postgres(error) => SupportError::Database(error),
                other => SupportError::Connect(other),
            })?;
        // Taking the snapshot at once (the SELECT) fixes the transaction as read-only for good.
        client
            .batch_execute(
                "START TRANSACTION READ ONLY ISOLATION LEVEL REPEATABLE READ; \
                 SELECT 1",
            )
            .await?;
        Ok(Self { client })
    }

    /// Runs one statement inside the read-only transaction (fixed SQL only, never user input).
    pub async fn query(&self, sql: &str) -> Result<Vec<tokio_postgres::Row>, SupportError> {
        Ok(self.client.query(sql, &[]).await?)
    }

    /// The tenant's users and counts, from one consistent snapshot.
    pub async fn snapshot(&self) -> Result<SupportSnapshot, SupportError> {
        let users = self
            .client
            .query(
                "SELECT email, display_name, role, is_active, last_login_at FROM users \
                 ORDER BY lower(email) LIMIT $1",
                &[&MAX_USERS],
            )
            .await?
            .iter()
            .map(|row| SupportUser {
                email: row.get("email"),
                display_name: row.get("display_name"),
                role: row.get("role"),
                active: row.get("is_active"),
                last_login_at: row.get("last_login_at"),
            })
            .collect();
        let row = self
            .client
            .query_one(
                "SELECT (SELECT count(*) FROM users) AS users, \
                        (SELECT count(*) FROM users WHERE is_active) AS active_users, \
                        (SELECT count(*) FROM branches) AS branches, \
                        (SELECT count(*) FROM items) AS items, \
                        (SELECT count(*) FROM sales) AS sales",
                &[],
            )
            .await?;
        Ok(SupportSnapshot {
            users,
            counts: SupportCounts {
                users: row.get("users"),
                active_users: row.get("active_users"),
                branches: row.get("branches"),
                items: row.get("items"),
                sales: row.get("sales"),
            },
        })
    }

    /// Ends the transaction (nothing to keep) and the connection.
    pub async fn close(self) {
        let _ = self.client.batch_execute("ROLLBACK").await;
    }
}

/// Why the admin looks (optional, recorded in the audit row).
#[derive(Debug, Default, Deserialize)]
pub struct SupportQuery {
    reason: Option<String>,
}

/// Audits the access, then reads. `via` says which door was used (`console` or `api`).
async fn access(
    state: &AdminState,
    admin: &Admin,
    slug: &str,
    reason: Option<&str>,
    via: &str,
) -> Result<(TenantRecord, SupportSnapshot), ApiError> {
    let tenant = state.tenant(slug).await?;
    if tenant.sealed_database_url.is_none() {
        return Err(SupportError::NoDatabase(tenant.status.as_str()).into());
    }
    let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
    if reason.is_some_and(|reason| reason.chars().count() > 500) {
        return Err(ApiError::validation(
            [(
                "reason".to_owned(),
                "Keep the reason under 500 characters.".to_owned(),
            )]
            .into_iter()
            .collect(),
        ));
    }
    state
        .store
        .audit(
            &admin.actor(),
            "tenant.support_access",
            Some(tenant.id),
            json!({"via": via, "reason": reason, "read_only": true}),
        )
        .await?;
    let session = SupportSession::open(&state.keyring, &tenant).await?;
    let snapshot = session.snapshot().await;
    session.close().await;
    Ok((tenant, snapshot?))
}

/// `GET /api/v1/admin/tenants/{slug}/support?reason=…`: the tenant's users and counts, read-only
/// and audited (`tenant.support_access`) before anything is read.
pub async fn support_json(
    admin: Admin,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    Query(query): Query<SupportQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (tenant, snapshot) = access(&state, &admin, &slug, query.reason.as_deref(), "api").await?;
    Ok(Json(json!({
        "tenant": tenant.slug,
        "read_only": true,
        "users": snapshot.users,
        "counts": snapshot.counts,
    })))
}

/// `GET /admin/tenants/{slug}/support`: the same as a page.
pub async fn support_page(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path(slug): Path<String>,
    Query(query): Query<SupportQuery>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let (tenant, snapshot) =
        match access(&state, &admin, &slug, query.reason.as_deref(), "console").await {
            Ok(found) => found,
            Err(error) => return error_page(&admin, &error),
        };
    let counts = &snapshot.counts;
    let body = html! {
        p { a href=(format!("/admin/tenants/{}", tenant.slug)) { "← " (tenant.slug) } }
        h1 { "Support view of " (tenant.display_name) }
        p.notice id="read-only" { "Read-only. This access was recorded in the tenant's audit trail under your name." }
        table id="support-counts" {
            tr { th { "users" } th { "active users" } th { "branches" } th { "items" } th { "sales" } }
            tr {
                td id="count-users" { (counts.users) } td { (counts.active_users) }
                td id="count-branches" { (counts.branches) } td id="count-items" { (counts.items) }
                td id="count-sales" { (counts.sales) }
            }
        }
        h2 { "Users" }
        table id="support-users" {
            tr { th { "email" } th { "name" } th { "role" } th { "active" } th { "last login" } }
            @for user in &snapshot.users {
                tr {
                    td { (user.email) } td { (user.display_name.as_deref().unwrap_or("")) }
                    td { (user.role) } td { (if user.active { "yes" } else { "no" }) }
                    td { (user.last_login_at.map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()) }
                }
            }
        }
    };
    page("Support view", Some(&admin), body).into_response()
}
