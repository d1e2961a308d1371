//! The TXT lookup behind custom-domain verification: a DNS resolver (hickory) asking the
//! system's nameservers, or the one `[domains] resolver` names (tests run their own on
//! loopback). Nothing is cached: verification must see the record as published now.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// Why a TXT lookup could not say what is published (a name without TXT records is not an
/// error: it publishes nothing).
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the DNS resolver cannot be set up: {0}")]
    Setup(String),
    #[error("the DNS lookup of {name} failed: {detail}")]
    Lookup { name: String, detail: String },
}

/// A resolver for TXT records; cheap to clone.
#[derive(Clone)]
pub struct TxtResolver {
    resolver: TokioResolver,
}

impl std::fmt::Debug for TxtResolver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TxtResolver")
    }
}

impl TxtResolver {
    /// Asks `nameserver` over UDP (`None`: the system's resolver configuration), giving up on
    /// a query after `timeout` (tried twice).
    pub fn new(nameserver: Option<SocketAddr>, timeout: Duration) -> Result<Self, DnsError> {
        let mut builder = match nameserver {
            Some(address) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let server = NameServerConfig::new(address.ip(), true, vec![udp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|error| DnsError::Setup(error.to_string()))?,
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 2;
        options.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|error| DnsError::Setup(error.to_string()))?;
        Ok(Self { resolver })
    }

    /// The TXT strings published at `name` (each record's character-strings joined, the way
    /// long TXT values are split); empty when the name has none or does not exist.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let absolute = format!("{}.", name.trim_end_matches('.'));
        match self.resolver.txt_lookup(absolute.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part))
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(error) if error.is_no_records_found() || error.is_nx_domain() => Ok(Vec::new()),
            Err(error) => Err(DnsError::Lookup {
                name: name.to_owned(),
                detail: error.to_string(),
            }),
        }
    }
}
