//! Keeps tenant roles out of a database host's shared databases. PostgreSQL grants PUBLIC
//! `CONNECT` and `TEMPORARY` on every new database, so without this a tenant's role could enter
//! the host's maintenance database and — when the control plane shares the server, as in
//! `silo dev` — the control-plane database, where it could `LISTEN` to the routers' change
//! channel (every tenant's id, slug and domains) or `NOTIFY` on it. Run when a host is
//! registered and by `silo hosts check`.
//!
//! The databases closed: `postgres`, the admin URL's own database, and the control-plane
//! database if the host has one of that name. Silo's own roles keep what they need: the admin
//! role and the control plane's role are granted `CONNECT` explicitly first (the control
//! plane's also `TEMPORARY` on its database). Superusers are not affected by either.

use secrecy::SecretString;

use crate::connect::{ConnectError, ConnectOptions, connect_url};
use crate::store::{Store, StoreResult, quote_identifier};

/// Why a host could not be closed. Safe to show: never holds the URL or a password.
#[derive(Debug, thiserror::Error)]
pub enum HostPrivilegesError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot read the host's databases: {0}")]
    Query(String),
    #[error(
        "the host's admin role cannot revoke PUBLIC's CONNECT and TEMPORARY on {databases}, so \
         tenant roles could enter them; run these statements as their owner or a superuser, \
         then `silo hosts check NAME`:\n{statements}"
    )]
    Refused {
        databases: String,
        statements: String,
    },
}

/// Where the control plane lives: its database's name and the role it connects as.
#[derive(Debug, Clone)]
pub struct ControlPlaneIdentity {
    pub database: String,
    pub role: String,
}

impl Store {
    /// The control-plane database's name and this process's role in it.
    pub async fn control_plane_identity(&self) -> StoreResult<ControlPlaneIdentity> {
        let (database, role): (String, String) =
            sqlx::query_as("SELECT current_database()::text, current_user::text")
                .fetch_one(self.pool())
                .await?;
        Ok(ControlPlaneIdentity { database, role })
    }
}

/// Revokes PUBLIC's `CONNECT` and `TEMPORARY` on the host's shared databases (see the module
/// docs); the names of the databases now closed. Idempotent. Refuses, with the exact
/// statements to run, when the admin role may not do it.
pub async fn close_shared_databases(
    admin_url: &SecretString,
    control_plane: &ControlPlaneIdentity,
) -> Result<Vec<String>, HostPrivilegesError> {
    let client = connect_url(admin_url, ConnectOptions::named("silo-hosts-check")).await?;
    let query_error = |error: tokio_postgres::Error| HostPrivilegesError::Query(error.to_string());
    let rows = client
        .query(
            "SELECT datname::text, current_user::text, \
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $2) \
             FROM pg_database \
             WHERE datallowconn AND datname IN ('postgres', current_database(), $1) \
             ORDER BY datname",
            &[&control_plane.database, &control_plane.role],
        )
        .await
        .map_err(query_error)?;
    let mut statements = Vec::new();
    let mut databases = Vec::new();
    for row in &rows {
        let (database, admin_role, control_plane_role_here): (String, String, bool) =
            (row.get(0), row.get(1), row.get(2));
        let quoted = quote_identifier(&database);
        statements.push(format!(
            "GRANT CONNECT ON DATABASE {quoted} TO {};",
            quote_identifier(&admin_role)
        ));
        if control_plane_role_here {
            let privileges = if database == control_plane.database {
                "CONNECT, TEMPORARY"
            } else {
                "CONNECT"
            };
            statements.push(format!(
                "GRANT {privileges} ON DATABASE {quoted} TO {};",
                quote_identifier(&control_plane.role)
            ));
        }
        statements.push(format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {quoted} FROM PUBLIC;"
        ));
        databases.push(database);
    }
    for statement in &statements {
        // A role without the right gets an error or only a warning; what counts is checked below.
        if let Err(error) = client.batch_execute(statement).await {
            tracing::debug!(%error, "a host privilege statement was refused");
        }
    }
    let still_open: Vec<String> = client
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datname = ANY($1) AND (datacl IS NULL OR EXISTS ( \
                 SELECT 1 FROM aclexplode(datacl) AS acl \
                 WHERE acl.grantee = 0 AND acl.privilege_type IN ('CONNECT', 'TEMPORARY'))) \
             ORDER BY datname",
            &[&databases],
        )
        .await
        .map_err(query_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    if still_open.is_empty() {
        return Ok(databases);
    }
    let needed: Vec<&String> = statements
        .iter()
        .filter(|statement| {
            still_open
                .iter()
                .any(|database| statement.contains(&quote_identifier(database)))
        })
        .collect();
    Err(HostPrivilegesError::Refused {
        databases: still_open.join(", "),
        statements: needed
            .iter()
            .map(|statement| format!("  {statement}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}
