//! The one way Silo opens a plain (unpooled) PostgreSQL connection, and the one place a URL's
//! TLS parameters become a TLS connector: open the seal, parse, split off `sslmode` and
//! `sslrootcert`, set a connect timeout and an application name, connect through rustls, drive
//! the connection in the background. The migrator, the usage sampler, support access, the
//! provisioner and the CLI use it; the router's pools build on [`config`] and [`Target::tls`].
//!
//! TLS follows libpq's `sslmode`: `disable` never encrypts; `prefer` (the default) tries TLS
//! and falls back to plain text when the server has none, without verifying; `require`
//! encrypts without verifying — unless `sslrootcert` is given, when it verifies like
//! `verify-ca`; `verify-ca` checks the server's chain against `sslrootcert`; `verify-full` also
//! checks that the certificate names the host. tokio-postgres itself knows only the first
//! three, so the two libpq parameters are taken out of the URL here before it sees the rest.
//!
//! Invariant: no error from here contains the URL or its password (parse errors are replaced
//! by a fixed sentence; tokio-postgres's own errors never carry the password). A failed TLS
//! verification names the host and port, which an operator needs, and nothing else.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::Client;
use tokio_postgres::config::{Host, SslMode as WireSslMode};
use tokio_postgres_rustls::MakeRustlsConnect;
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

/// Why a connection could not be opened. Safe to show: never holds the URL or a password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the tenant has no database URL")]
    NoUrl,
    #[error("the tenant's database URL does not open: {0}")]
    Sealing(#[from] SealingError),
    #[error("the database URL does not parse")]
    BadUrl,
    #[error(
        "the database URL's sslmode `{0}` is not one of disable, prefer, require, verify-ca, \
         verify-full"
    )]
    UnknownSslMode(String),
    #[error(
        "sslmode={0} needs a CA certificate: set sslrootcert to a PEM file in the database URL \
         (or put one at ~/.postgresql/root.crt)"
    )]
    NoRootCert(&'static str),
    #[error("the CA certificate file {path} (sslrootcert) is not usable: {detail}")]
    RootCert { path: PathBuf, detail: String },
    #[error("cannot set up TLS: {0}")]
    TlsSetup(String),
    #[error(
        "sslmode=verify-ca (or require with sslrootcert) cannot be kept on the control-plane \
         database: its driver, sqlx, trusts the public root CAs beside sslrootcert, so a publicly \
         trusted certificate for any host name would pass. Use sslmode=verify-full there (tenant \
         and host connections keep verify-ca exactly)"
    )]
    VerifyCaOnControlPlane,
    #[error(
        "TLS with the PostgreSQL server at {server} failed: {detail}; check the URL's sslmode \
         and sslrootcert"
    )]
    Tls { server: String, detail: String },
    #[error("cannot connect to the database: {}", describe_postgres_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
}

/// tokio-postgres prints a server's refusal as just "db error"; the server's sentence (which
/// names the role and database, never a password) says why.
fn describe_postgres_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

impl ConnectError {
    /// A stable, machine-readable name for the failure (for logs and step records).
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::NoUrl => "no_database_url",
            ConnectError::Sealing(_) => "sealing",
            ConnectError::BadUrl => "bad_database_url",
            ConnectError::UnknownSslMode(_) => "unknown_sslmode",
            ConnectError::NoRootCert(_) | ConnectError::RootCert { .. } => "bad_sslrootcert",
            ConnectError::TlsSetup(_) => "tls_setup",
            ConnectError::VerifyCaOnControlPlane => "control_plane_verify_ca",
            ConnectError::Tls { .. } => "tls_failed",
            ConnectError::Postgres(_) => "database_unreachable",
        }
    }

    /// Whether the URL itself is wrong (trying again cannot help).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            ConnectError::BadUrl
                | ConnectError::UnknownSslMode(_)
                | ConnectError::NoRootCert(_)
                | ConnectError::RootCert { .. }
                | ConnectError::VerifyCaOnControlPlane
        )
    }
}

/// libpq's `sslmode`: whether to encrypt and what to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never encrypt.
    Disable,
    /// Encrypt when the server offers TLS, else plain text; verify nothing (libpq's default).
    Prefer,
    /// Always encrypt; verify nothing unless a root certificate is given.
    Require,
    /// Always encrypt; the server's certificate must chain to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The spelling in a URL and in `PGSSLMODE`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, ConnectError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` (plain first, TLS if refused) is not offered: say so.
            other => {
                return Err(ConnectError::UnknownSslMode(
                    other.chars().take(32).collect(),
                ));
            }
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The TLS half of a PostgreSQL URL: its `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// As written (`prefer` when absent, as libpq).
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of one or more CA certificates.
    pub root_cert: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            mode: SslMode::Prefer,
            root_cert: None,
        }
    }
}

impl TlsSettings {
    /// Reads `sslmode` and `sslrootcert` from `url` (the URL form or libpq's `key=value` form).
    pub fn of_url(url: &SecretString) -> Result<Self, ConnectError> {
        split_tls_parameters(url.expose_secret()).map(|(_, tls)| tls)
    }

    /// The mode in force: as libpq, `require` with a root certificate verifies like
    /// `verify-ca`.
    pub fn effective_mode(&self) -> SslMode {
        match (self.mode, &self.root_cert) {
            (SslMode::Require, Some(_)) => SslMode::VerifyCa,
            (mode, _) => mode,
        }
    }

    /// The CA file verification uses: `sslrootcert`, else libpq's `~/.postgresql/root.crt`.
    /// `None` when nothing is verified.
    pub fn root_cert_path(&self) -> Result<Option<PathBuf>, ConnectError> {
        let mode = self.effective_mode();
        if !matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
            return Ok(None);
        }
        if let Some(path) = &self.root_cert {
            return Ok(Some(path.clone()));
        }
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".postgresql/root.crt"))
            .filter(|path| path.is_file())
            .map(Some)
            .ok_or(ConnectError::NoRootCert(mode.as_str()))
    }

    /// What tokio-postgres is told: it only knows whether to ask for TLS.
    fn wire_mode(&self) -> WireSslMode {
        match self.mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        }
    }

    /// The rustls connector that verifies what this mode asks for (with `disable` it is never
    /// used: tokio-postgres does not ask the server for TLS).
    pub fn connector(&self) -> Result<MakeRustlsConnect, ConnectError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.root_cert_path()? {
            None => Arc::new(NameUnchecked {
                roots: None,
                provider: provider.clone(),
            }),
            Some(path) => {
                let roots = Arc::new(load_roots(&path)?);
                if self.effective_mode() == SslMode::VerifyFull {
                    rustls::client::WebPkiServerVerifier::builder_with_provider(
                        roots,
                        provider.clone(),
                    )
                    .build()
                    .map_err(|error| ConnectError::TlsSetup(error.to_string()))?
                } else {
                    Arc::new(NameUnchecked {
                        roots: Some(roots),
                        provider: provider.clone(),
                    })
                }
            }
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| ConnectError::TlsSetup(error.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The environment that gives libpq's tools (`pg_dump`, `pg_restore`, `psql`) the same TLS.
    pub fn libpq_environment(&self) -> Result<Vec<(&'static str, PathBuf)>, ConnectError> {
        let mut environment = vec![("PGSSLMODE", PathBuf::from(self.effective_mode().as_str()))];
        if let Some(path) = self.root_cert_path()? {
            environment.push(("PGSSLROOTCERT", path));
        }
        Ok(environment)
    }
}

/// Reads every certificate of a PEM file into a root store.
fn load_roots(path: &Path) -> Result<RootCertStore, ConnectError> {
    let unusable = |detail: String| ConnectError::RootCert {
        path: path.to_owned(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    for certificate in
        CertificateDer::pem_file_iter(path).map_err(|error| unusable(error.to_string()))?
    {
        let certificate = certificate.map_err(|error| unusable(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| unusable(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("it holds no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// Takes `sslmode` and `sslrootcert` out of a URL (or `key=value` string), returning the rest
/// for tokio-postgres and the TLS settings.
fn split_tls_parameters(url: &str) -> Result<(String, TlsSettings), ConnectError> {
    let mut tls = TlsSettings::default();
    let mut take = |key: &str, value: &str| -> Result<bool, ConnectError> {
        match key {
            "sslmode" => tls.mode = SslMode::parse(value)?,
            "sslrootcert" => tls.root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let value = url::form_urlencoded::parse(format!("v={value}").as_bytes())
                        .next()
                        .map(|(_, value)| value.into_owned())
                        .unwrap_or_default();
                    if !take(key, &value)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        // libpq's `key=value` form; quoted values are left to tokio-postgres.
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let taken = match word.split_once('=') {
                Some((key, value)) => take(key, value)?,
                None => false,
            };
            if !taken {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((rest, tls))
}

/// A parsed PostgreSQL URL: tokio-postgres's settings and the TLS settings it cannot hold.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: TlsSettings,
}

impl fmt::Debug for Target {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The config holds the password: print where, never who with what.
        formatter
            .debug_struct("Target")
            .field("server", &self.server())
            .field("tls", &self.tls)
            .finish()
    }
}

impl Target {
    /// Parses `url`, never echoing it.
    pub fn parse(url: &SecretString) -> Result<Self, ConnectError> {
        let (rest, tls) = split_tls_parameters(url.expose_secret())?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|_| ConnectError::BadUrl)?;
        config.ssl_mode(tls.wire_mode());
        Ok(Self { config, tls })
    }

    /// `host:port` of the first server, for messages (never the user or password).
    pub fn server(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{host}:{port}")
    }

    /// Connects; the connection is driven by a background task until the client drops.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let tls = self.tls.connector()?;
        let (client, connection) = self
            .config
            .connect(tls)
            .await
            .map_err(|error| self.explain(error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "database connection closed");
            }
        });
        Ok(client)
    }

    /// A TLS failure becomes [`ConnectError::Tls`] naming the server; anything else stays.
    pub fn explain(&self, error: tokio_postgres::Error) -> ConnectError {
        match tls_failure(&error) {
            Some(detail) => ConnectError::Tls {
                server: self.server(),
                detail,
            },
            None => ConnectError::Postgres(error),
        }
    }
}

/// What went wrong in TLS, if `error` is a TLS failure: rustls's own error where there is one
/// (an unknown issuer, a name mismatch), else tokio-postgres's sentence (a server without TLS).
fn tls_failure(error: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(rustls_error) = current.downcast_ref::<rustls::Error>() {
            return Some(rustls_error.to_string());
        }
        if let Some(io_error) = current.downcast_ref::<std::io::Error>()
            && let Some(rustls_error) = io_error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(rustls_error.to_string());
        }
        source = current.source();
    }
    // tokio-postgres has no public error kind; its TLS kind is known by its sentence.
    let text = error.to_string();
    text.starts_with("error performing TLS handshake")
        .then_some(text)
}

/// The verifier of the modes that do not check the name: `require`/`prefer` without a root
/// certificate (`roots: None`) encrypt and trust any certificate, as libpq does; `verify-ca`
/// (`roots: Some`) needs the chain to end at one of the roots. Both still check the
/// handshake's signatures.
#[derive(Debug)]
struct NameUnchecked {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for NameUnchecked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let certificate = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &certificate,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The connection settings of `url` with `options` applied.
pub fn config(url: &SecretString, options: ConnectOptions) -> Result<Target, ConnectError> {
    let mut target = Target::parse(url)?;
    target.config.connect_timeout(options.connect_timeout);
    target.config.application_name(options.application_name);
    if let Some(server_options) = options.server_options {
        target.config.options(server_options);
    }
    Ok(target)
}

/// Connects to `url`; the connection is driven by a background task until the client drops.
pub async fn connect_url(
    url: &SecretString,
    options: ConnectOptions,
) -> Result<Client, ConnectError> {
    config(url, options)?.connect().await
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

    fn secret(url: &str) -> SecretString {
        SecretString::from(url.to_owned())
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let url = secret("postgres://role:hunter2@[not-a-host");
        let error = config(&url, ConnectOptions::named("test")).expect_err("does not parse");
        assert!(matches!(error, ConnectError::BadUrl));
        assert!(!error.to_string().contains("hunter2"));
    }

    #[test]
    fn options_are_applied() {
        let url = secret("postgres://role:secret@127.0.0.1:5/db");
        let options = ConnectOptions {
            server_options: Some("-c statement_timeout=5000"),
            ..ConnectOptions::named("silo-test")
        };
        let target = config(&url, options).expect("parses");
        assert_eq!(target.config.get_application_name(), Some("silo-test"));
        assert_eq!(
            target.config.get_options(),
            Some("-c statement_timeout=5000")
        );
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&Duration::from_secs(10))
        );
    }

    #[test]
    fn each_sslmode_parses_to_what_it_asks_of_the_wire_and_of_verification() {
        // (query, mode as written, mode in force, what tokio-postgres is told)
        let cases: &[(&str, SslMode, SslMode, WireSslMode)] = &[
            ("", SslMode::Prefer, SslMode::Prefer, WireSslMode::Prefer),
            (
                "?sslmode=disable",
                SslMode::Disable,
                SslMode::Disable,
                WireSslMode::Disable,
            ),
            (
                "?sslmode=prefer",
                SslMode::Prefer,
                SslMode::Prefer,
                WireSslMode::Prefer,
            ),
            (
                "?sslmode=require",
                SslMode::Require,
                SslMode::Require,
                WireSslMode::Require,
            ),
            (
                "?sslmode=require&sslrootcert=/ca.pem",
                SslMode::Require,
                SslMode::VerifyCa,
                WireSslMode::Require,
            ),
            (
                "?sslmode=verify-ca&sslrootcert=/ca.pem",
                SslMode::VerifyCa,
                SslMode::VerifyCa,
                WireSslMode::Require,
            ),
            (
                "?sslrootcert=%2Fca.pem&sslmode=verify-full&connect_timeout=3",
                SslMode::VerifyFull,
                SslMode::VerifyFull,
                WireSslMode::Require,
            ),
        ];
        for (query, written, effective, wire) in cases {
            let url = secret(&format!("postgres://role:pw@db.example:6432/tenant{query}"));
            let target = Target::parse(&url).unwrap_or_else(|error| panic!("{query}: {error}"));
            assert_eq!(target.tls.mode, *written, "{query}");
            assert_eq!(target.tls.effective_mode(), *effective, "{query}");
            assert_eq!(target.config.get_ssl_mode(), *wire, "{query}");
            assert_eq!(target.config.get_dbname(), Some("tenant"), "{query}");
            assert_eq!(target.server(), "db.example:6432", "{query}");
            if query.contains("sslrootcert") {
                assert_eq!(
                    target.tls.root_cert,
                    Some(PathBuf::from("/ca.pem")),
                    "{query}"
                );
            }
        }
        let target = Target::parse(&secret(
            "postgres://r:p@h/d?sslrootcert=%2Fca.pem&sslmode=verify-full&connect_timeout=3",
        ))
        .expect("parses");
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&Duration::from_secs(3)),
            "other parameters still reach tokio-postgres"
        );
    }

    #[test]
    fn the_key_value_form_carries_tls_settings_too() {
        let target = Target::parse(&secret(
            "host=db.example user=r password=p sslmode=verify-ca sslrootcert=/ca.pem",
        ))
        .expect("parses");
        assert_eq!(target.tls.mode, SslMode::VerifyCa);
        assert_eq!(target.tls.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(target.config.get_user(), Some("r"));
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name_without_echoing_the_url() {
        for mode in ["allow", "VERIFY-FULL", "on", ""] {
            let url = secret(&format!("postgres://role:hunter2@h/d?sslmode={mode}"));
            let error = Target::parse(&url).expect_err(mode);
            assert!(matches!(error, ConnectError::UnknownSslMode(_)), "{mode}");
            assert_eq!(error.code(), "unknown_sslmode");
            let message = error.to_string();
            assert!(message.contains(&format!("`{mode}`")), "{message}");
            assert!(message.contains("verify-full"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn verification_without_a_usable_ca_file_says_what_to_set() {
        let missing = Target::parse(&secret(
            "postgres://r:p@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ))
        .expect("parses");
        let Err(error) = missing.tls.connector() else {
            panic!("no such file")
        };
        assert!(matches!(error, ConnectError::RootCert { .. }), "{error}");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");

        let not_pem = std::env::temp_dir().join(format!("silo-not-pem-{}", Uuid::new_v4()));
        std::fs::write(&not_pem, "not a certificate").expect("temp file");
        let tls = TlsSettings {
            mode: SslMode::VerifyCa,
            root_cert: Some(not_pem.clone()),
        };
        let Err(error) = tls.connector() else {
            panic!("no certificate in it")
        };
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
        let _ = std::fs::remove_file(not_pem);
    }

    #[test]
    fn modes_that_verify_nothing_build_without_a_ca_and_tools_get_the_same_mode() {
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let tls = TlsSettings {
                mode,
                root_cert: None,
            };
            tls.connector().expect("builds");
            let environment = tls.libpq_environment().expect("no CA needed");
            assert_eq!(
                environment,
                vec![("PGSSLMODE", PathBuf::from(mode.as_str()))]
            );
        }
        let tls = TlsSettings {
            mode: SslMode::Require,
            root_cert: Some(PathBuf::from("/ca.pem")),
        };
        assert_eq!(
            tls.libpq_environment().expect("given"),
            vec![
                ("PGSSLMODE", PathBuf::from("verify-ca")),
                ("PGSSLROOTCERT", PathBuf::from("/ca.pem")),
            ]
        );
    }

    #[test]
    fn a_target_prints_its_server_but_never_its_password() {
        let target = Target::parse(&secret("postgres://role:hunter2@db.example/d")).expect("ok");
        let printed = format!("{target:?}");
        assert!(printed.contains("db.example:5432"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
