//! What every worker does on a database host, shared by provisioning, templates, warm pools,
//! credential rotation, offboarding and the usage sampler: the error type, connections, names
//! and URLs of tenant databases and roles, and creating a role without its password in clear.

use control_plane::Store;
use control_plane::connect::{self, ConnectError, ConnectOptions};
use control_plane::store::{StoreError, quote_identifier};
use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::Client;

use uuid::Uuid;

/// Why a provisioning attempt failed. `Display` is for operators (recorded per step); it never
/// contains a password or a connection string.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("no active database host has free capacity")]
    NoCapacity,
    #[error("the tenant's database host is not registered")]
    UnknownHost,
    #[error("the tenant database URL could not be built from the host's admin URL")]
    BadHostUrl,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealing(#[from] control_plane::sealing::SealingError),
    #[error("database error: {}", describe_database_error(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("tenant migration failed: {0}")]
    Migration(#[from] migrator::MigrateError),
    #[error(transparent)]
    FailPoint(#[from] crate::failpoints::FailPointError),
    /// A role or database of the generated name exists that Silo did not make for this tenant:
    /// it is never taken over (granted, re-passworded or recorded as done).
    #[error(
        "a {kind} named {name} already exists on the host and was not made by Silo for this tenant; remove or rename it, then retry"
    )]
    NotOurs { kind: &'static str, name: String },
}

impl ProvisionError {
    /// Whether trying again could help.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            ProvisionError::NoCapacity
            | ProvisionError::BadHostUrl
            | ProvisionError::NotOurs { .. } => false,
            ProvisionError::Connect(error) => !error.is_configuration(),
            _ => true,
        }
    }

    /// What the person who signed up is told.
    pub(crate) fn public_reason(&self, step: &str) -> String {
        // The subdomain stays taken by this signup until an operator retries it or removes it
        // (`silo tenants purge-failed`), so the sentence says that, not "sign up again".
        const WHAT_NEXT: &str = "The subdomain stays reserved for this signup until our team \
            either finishes setting it up (this page then links to your workspace) or removes \
            it, after which you can sign up again with the same subdomain.";
        match self {
            ProvisionError::NoCapacity => {
                format!("We have no room for new workspaces right now. {WHAT_NEXT}")
            }
            _ => format!(
                "Setting up your database failed at step `{step}`; our team has been notified. \
                 {WHAT_NEXT}"
            ),
        }
    }
}

/// tokio-postgres prints server errors as just "db error"; operators need the code and message.
/// (Server messages name objects, never passwords: those travel as SCRAM verifiers.)
fn describe_database_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// The schema version new tenants are created at: the released version (the target of the last
/// completed rollout, or the first build's newest), never a newer one a rollout is still taking
/// through the fleet. Capped at what `migrations` knows, should an older build still be running.
pub async fn released_version(
    store: &Store,
    migrations: &migrator::MigrationSet,
) -> Result<i32, StoreError> {
    let known = migrations.latest();
    Ok(match store.released_version().await? {
        Some(released) if released <= known => released,
        Some(released) => {
            tracing::warn!(
                released,
                known,
                "this build predates the released schema version"
            );
            known
        }
        None => known,
    })
}

/// `url` pointing at another database on the same server.
pub(crate) fn with_database(
    url: &SecretString,
    database: &str,
) -> Result<SecretString, ProvisionError> {
    let mut parsed =
        url::Url::parse(url.expose_secret()).map_err(|_| ProvisionError::BadHostUrl)?;
    parsed.set_path(database);
    Ok(SecretString::from(String::from(parsed)))
}

/// Fresh database and role names and a password. Names are random, never derived from input.
pub(crate) fn generate_names() -> (String, String, SecretString) {
    let suffix = Uuid::new_v4().simple().to_string();
    let database_name = format!("tenant_{}", &suffix[..20]);
    let role_name = format!("tenant_{}_owner", &suffix[..20]);
    let password = SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 40));
    (database_name, role_name, password)
}

/// The tenant's URL: the host admin URL's server, with the tenant's role, password and database.
pub(crate) fn tenant_database_url(
    admin_url: &SecretString,
    role: &str,
    password: &SecretString,
    database: &str,
) -> Result<SecretString, ProvisionError> {
    let mut url =
        url::Url::parse(admin_url.expose_secret()).map_err(|_| ProvisionError::BadHostUrl)?;
    url.set_username(role)
        .map_err(|()| ProvisionError::BadHostUrl)?;
    url.set_password(Some(password.expose_secret()))
        .map_err(|()| ProvisionError::BadHostUrl)?;
    with_database(&SecretString::from(String::from(url)), database)
}

/// A connection as the provisioner, honouring the URL's `sslmode` and `sslrootcert`.
pub(crate) async fn connect(url: &SecretString) -> Result<Client, ConnectError> {
    connect::connect_url(url, ConnectOptions::named("silo-provisioner")).await
}

/// Creates the tenant's login role, or resets its password to the sealed one on a retry. The
/// password travels as a SCRAM verifier, so it never reaches the server (or its logs) in clear.
pub(crate) async fn ensure_role(
    admin: &Client,
    role: &str,
    tenant_url: &SecretString,
) -> Result<(), ProvisionError> {
    let verifier = password_verifier(tenant_url)?;
    let existing: Option<Option<String>> = admin
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?
        .map(|row| row.get(0));
    match existing {
        Some(marker) if marker.as_deref() == Some(ROLE_MARKER) => {
            set_role_password(admin, role, &verifier).await
        }
        Some(_) => Err(ProvisionError::NotOurs {
            kind: "role",
            name: role.to_owned(),
        }),
        None => {
            // One simple query is one transaction: the role never exists without its marker.
            // Identifiers cannot be bound as parameters; the role name is generated.
            let statement = format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 NOBYPASSRLS PASSWORD '{}'; COMMENT ON ROLE {role} IS '{ROLE_MARKER}'",
                verifier.replace('\'', "''"),
                role = quote_identifier(role),
            );
            match admin.batch_execute(&statement).await {
                Ok(()) => Ok(()),
                // Another worker created it between our check and our CREATE: check it again.
                Err(error)
                    if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) =>
                {
                    Box::pin(ensure_role(admin, role, tenant_url)).await
                }
                Err(error) => Err(error.into()),
            }
        }
    }
}

/// The comment Silo writes on every role it creates, in the same transaction: a role of a
/// generated name without it was not made by Silo, and is never taken over.
pub const ROLE_MARKER: &str = "made by Silo: the owner of one tenant database";

/// Sets the password of a tenant's role, known to be the tenant's (credential rotation).
pub(crate) async fn set_role_password(
    admin: &Client,
    role: &str,
    verifier: &str,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} PASSWORD '{}'",
            quote_identifier(role),
            verifier.replace('\'', "''")
        ))
        .await?;
    Ok(())
}

/// The SCRAM verifier of the password in `tenant_url`: only the verifier travels to the server.
pub(crate) fn password_verifier(tenant_url: &SecretString) -> Result<String, ProvisionError> {
    let target = connect::Target::parse(tenant_url).map_err(|_| ProvisionError::BadHostUrl)?;
    let password = target
        .config
        .get_password()
        .ok_or(ProvisionError::BadHostUrl)?;
    Ok(postgres_protocol::password::scram_sha_256(password))
}
