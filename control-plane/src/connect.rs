//! The one way Silo opens a plain (unpooled) connection to a tenant's database from its sealed
//! URL: open the seal, parse, set a connect timeout and an application name, connect, drive the
//! connection in the background. The migrator, the usage sampler, support access and the CLI
//! use it; the router's pools build on [`config`].
//!
//! Invariant: no error from here contains the URL or its password (parse errors are replaced
//! by a fixed sentence; tokio-postgres's own errors never carry the password).

use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::sealing::{Keyring, Purpose, Sealed, SealingError};

/// How a connection presents itself and how long it may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// `application_name`, so `pg_stat_activity` says who holds the connection.
    pub application_name: &'static str,
    pub connect_timeout: Duration,
    /// Server settings sent at start-up (`-c name=value …`), if any.
    pub server_options: Option<&'static str>,
}

impl ConnectOptions {
    /// Ten seconds to connect, no server settings.
    pub const fn named(application_name: &'static str) -> Self {
        Self {
            application_name,
            connect_timeout: Duration::from_secs(10),
            server_options: None,
        }
    }
}

/// Why a tenant connection could not be opened. Safe to show: never holds the URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the tenant has no database URL")]
    NoUrl,
    #[error("the tenant's database URL does not open: {0}")]
    Sealing(#[from] SealingError),
    #[error("the tenant's database URL does not parse")]
    BadUrl,
    #[error("cannot connect to the tenant database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// The connection settings of `url` with `options` applied.
pub fn config(
    url: &SecretString,
    options: ConnectOptions,
) -> Result<tokio_postgres::Config, ConnectError> {
    let mut config: tokio_postgres::Config = url
        .expose_secret()
        .parse()
        .map_err(|_| ConnectError::BadUrl)?;
    config.connect_timeout(options.connect_timeout);
    config.application_name(options.application_name);
    if let Some(server_options) = options.server_options {
        config.options(server_options);
    }
    Ok(config)
}

/// Connects to `url`; the connection is driven by a background task until the client drops.
pub async fn connect_url(
    url: &SecretString,
    options: ConnectOptions,
) -> Result<Client, ConnectError> {
    let (client, connection) = config(url, options)?.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "tenant connection closed");
        }
    });
    Ok(client)
}

/// Opens the tenant's sealed URL (bound to `tenant_id`) and connects to its database.
pub async fn connect_tenant(
    keyring: &Keyring,
    tenant_id: Uuid,
    sealed: Option<&Sealed>,
    options: ConnectOptions,
) -> Result<Client, ConnectError> {
    let sealed = sealed.ok_or(ConnectError::NoUrl)?;
    let url = keyring.open(Purpose::TenantDatabaseUrl, tenant_id, sealed)?;
    connect_url(&url, options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let url = SecretString::from("postgres://role:hunter2@[not-a-host".to_owned());
        let error = config(&url, ConnectOptions::named("test")).expect_err("does not parse");
        assert!(matches!(error, ConnectError::BadUrl));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn options_are_applied() {
        let url = SecretString::from("postgres://role:secret@127.0.0.1:5/db".to_owned());
        let options = ConnectOptions {
            server_options: Some("-c statement_timeout=5000"),
            ..ConnectOptions::named("silo-test")
        };
        let config = config(&url, options).expect("parses");
        assert_eq!(config.get_application_name(), Some("silo-test"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=5000"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(10)));
    }
}
