//! Custom domains: added by a tenant's owner (with a verification token to publish in DNS),
//! verified by an operator, then routed to the tenant.

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::Serialize;
use uuid::Uuid;

use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// The DNS TXT record name under which a domain's token is published.
pub const CHALLENGE_LABEL: &str = "_silo-challenge";

#[derive(Debug, Clone, Serialize)]
pub struct CustomDomain {
    pub domain: String,
    pub tenant_id: Uuid,
    /// Publish as a TXT record at `_silo-challenge.<domain>`; not secret.
    pub verification_token: String,
    pub verified: bool,
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A `tenant_domains` row as `columns!()` selects it; `verified` follows `verified_at`.
#[derive(Debug, sqlx::FromRow)]
struct DomainRow {
    domain: String,
    tenant_id: Uuid,
    verification_token: String,
    verified_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<DomainRow> for CustomDomain {
    fn from(row: DomainRow) -> Self {
        CustomDomain {
            domain: row.domain,
            tenant_id: row.tenant_id,
            verification_token: row.verification_token,
            verified: row.verified_at.is_some(),
            verified_at: row.verified_at,
            created_at: row.created_at,
        }
    }
}

/// The columns every query returns, as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "domain, tenant_id, verification_token, verified_at, created_at"
    };
}

/// Lower-cases and drops one trailing dot; `None` unless it is a host name of at least two
/// labels (letters, digits, inner hyphens), not all-numeric at the end (so no IP addresses).
pub fn normalise_domain(raw: &str) -> Option<String> {
    let lowered = raw.trim().to_ascii_lowercase();
    let domain = lowered.strip_suffix('.').unwrap_or(&lowered);
    let labels: Vec<&str> = domain.split('.').collect();
    let valid = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    valid.then(|| domain.to_owned())
}

impl Store {
    /// Adds an unverified domain to a tenant (audited); `DomainTaken` if any tenant has it.
    pub async fn add_domain(
        &self,
        tenant_id: Uuid,
        domain: &str,
        actor: &str,
    ) -> StoreResult<CustomDomain> {
        let mut token = [0u8; 16];
        rand::rng().fill_bytes(&mut token);
        let token: String = token.iter().map(|byte| format!("{byte:02x}")).collect();
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, DomainRow>(concat!(
            "INSERT INTO tenant_domains (domain, tenant_id, verification_token) VALUES ($1, $2, $3) \
             ON CONFLICT (domain) DO NOTHING RETURNING ",
            columns!()
        ))
        .bind(domain)
        .bind(tenant_id)
        .bind(format!("silo-verify-{token}"))
        .fetch_optional(&mut *transaction)
        .await?;
        let added = match row {
            Some(row) => CustomDomain::from(row),
            None => return Err(StoreError::DomainTaken),
        };
        insert_audit(
            &mut transaction,
            actor,
            "domain.add",
            Some(tenant_id),
            serde_json::json!({ "domain": domain }),
        )
        .await?;
        transaction.commit().await?;
        Ok(added)
    }

    pub async fn domains_of(&self, tenant_id: Uuid) -> StoreResult<Vec<CustomDomain>> {
        let rows = sqlx::query_as::<_, DomainRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM tenant_domains WHERE tenant_id = $1 ORDER BY domain"
        ))
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(CustomDomain::from).collect())
    }

    /// Removes one of the tenant's domains (audited); `NotFound` if it has no such domain.
    pub async fn remove_domain(
        &self,
        tenant_id: Uuid,
        domain: &str,
        actor: &str,
    ) -> StoreResult<()> {
        self.delete_audited(
            "DELETE FROM tenant_domains WHERE tenant_id = $1 AND domain = $2",
            tenant_id,
            domain,
            actor,
            "domain.remove",
            serde_json::json!({ "domain": domain }),
        )
        .await
    }

    /// Marks a domain verified (an operator checked its TXT record), with an audit row.
    pub async fn verify_domain(&self, domain: &str, actor: &str) -> StoreResult<CustomDomain> {
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, DomainRow>(concat!(
            "UPDATE tenant_domains SET verified_at = coalesce(verified_at, now()) \
             WHERE domain = $1 RETURNING ",
            columns!()
        ))
        .bind(domain)
        .fetch_optional(&mut *transaction)
        .await?
        .ok_or(StoreError::NotFound)?;
        let verified = CustomDomain::from(row);
        insert_audit(
            &mut transaction,
            actor,
            "domain.verify",
            Some(verified.tenant_id),
            serde_json::json!({ "domain": domain }),
        )
        .await?;
        transaction.commit().await?;
        Ok(verified)
    }

    /// The tenant a *verified* domain belongs to: (id, slug).
    pub async fn tenant_by_domain(&self, domain: &str) -> StoreResult<Option<(Uuid, String)>> {
        let tenant = sqlx::query_as(
            "SELECT t.id, t.slug FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id \
             WHERE d.domain = $1 AND d.verified_at IS NOT NULL",
        )
        .bind(domain)
        .fetch_optional(self.pool())
        .await?;
        Ok(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::normalise_domain;

    #[test]
    fn domains_are_normalised_or_refused() {
        assert_eq!(
            normalise_domain("Shop.Example.COM.").as_deref(),
            Some("shop.example.com")
        );
        for bad in [
            "localhost",
            "10.0.0.1",
            "-a.example.com",
            "a..example.com",
            "exa mple.com",
            "example.com:8080",
            "",
        ] {
            assert_eq!(normalise_domain(bad), None, "{bad:?}");
        }
    }
}
