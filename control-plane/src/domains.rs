//! Custom domains: claimed by a tenant's owner (with a verification token to publish in DNS),
//! verified by looking the token up in DNS, then routed to the tenant.
//!
//! A claim is not ownership: while nobody has verified a domain, several tenants may claim it,
//! each with its own token, and the TXT record at `_silo-challenge.<domain>` — which only the
//! domain's real owner can publish — decides. An unverified claim expires after the
//! `[domains] claim_ttl` setting (7 days by default), so a stale one never blocks anyone. A
//! verified claim is unique and wins: verifying one removes every other tenant's claim on the
//! domain (audited on their trail), and while it stands nobody else can claim the domain. A
//! deprovisioned tenant's domains are released (`Store::mark_deprovisioned`).

use chrono::{DateTime, Utc};
use rand::RngCore as _;
use serde::Serialize;
use uuid::Uuid;

use crate::limits::{Counted, PageRequest, hold_within_limit};
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
    /// When an unverified claim lapses (`None` once verified).
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A `tenant_domains` row as `columns!()` selects it; `verified` follows `verified_at`.
#[derive(Debug, sqlx::FromRow)]
struct DomainRow {
    domain: String,
    tenant_id: Uuid,
    verification_token: String,
    verified_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
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
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

/// The columns every query returns, as a literal so queries stay static strings.
macro_rules! columns {
    () => {
        "domain, tenant_id, verification_token, verified_at, expires_at, created_at"
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
    /// Adds an unverified claim on `domain` for a tenant (audited), expiring after the
    /// store's claim TTL. `DomainTaken` if a tenant has verified the domain, or this tenant
    /// already holds a live claim on it; other tenants' unverified claims do not stand in the
    /// way, and expired ones are cleared here. `PlanLimitReached` if the tenant already has
    /// `limit` domains (claims included).
    pub async fn add_domain(
        &self,
        tenant_id: Uuid,
        domain: &str,
        actor: &str,
        limit: Option<i32>,
    ) -> StoreResult<CustomDomain> {
        let mut token = [0u8; 16];
        rand::rng().fill_bytes(&mut token);
        let token: String = token.iter().map(|byte| format!("{byte:02x}")).collect();
        let mut transaction = self.pool().begin().await?;
        hold_within_limit(&mut transaction, tenant_id, Counted::CustomDomains, limit).await?;
        let expired = sqlx::query(
            "DELETE FROM tenant_domains WHERE domain = $1 AND verified_at IS NULL \
             AND expires_at <= now()",
        )
        .bind(domain)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        let verified: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tenant_domains WHERE domain = $1 AND verified_at IS NOT NULL)",
        )
        .bind(domain)
        .fetch_one(&mut *transaction)
        .await?;
        if verified {
            return Err(StoreError::DomainTaken);
        }
        let row = sqlx::query_as::<_, DomainRow>(concat!(
            "INSERT INTO tenant_domains (domain, tenant_id, verification_token, expires_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (domain, tenant_id) DO NOTHING RETURNING ",
            columns!()
        ))
        .bind(domain)
        .bind(tenant_id)
        .bind(format!("silo-verify-{token}"))
        .bind(self.domain_claim_ttl().as_secs_f64())
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
            serde_json::json!({ "domain": domain, "expires_at": added.expires_at,
                                "expired_claims_cleared": expired }),
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

    /// One page of the tenant's domains, by name: those after `page.after`.
    pub async fn domains_page(
        &self,
        tenant_id: Uuid,
        page: PageRequest<'_>,
    ) -> StoreResult<Vec<CustomDomain>> {
        let rows = sqlx::query_as::<_, DomainRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM tenant_domains WHERE tenant_id = $1 AND ($2::text IS NULL OR domain > $2) \
             ORDER BY domain LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(page.after)
        .bind(page.fetch())
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

    /// Verifies `domain` for the tenant whose live claim's token is among `published` (the TXT
    /// strings found at `_silo-challenge.<domain>`; the oldest such claim, should the owner
    /// have published several), removes every other claim on the domain, and audits both. An
    /// already verified domain is returned as it is. `NotFound` without a claim,
    /// `DomainClaimExpired` when every claim has lapsed, `DomainNotProven` when no live claim's
    /// token is published; each changes nothing.
    pub async fn verify_domain(
        &self,
        domain: &str,
        published: &[String],
        actor: &str,
    ) -> StoreResult<CustomDomain> {
        let mut transaction = self.pool().begin().await?;
        let claims: Vec<CustomDomain> = sqlx::query_as::<_, DomainRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM tenant_domains WHERE domain = $1 ORDER BY created_at, tenant_id FOR UPDATE"
        ))
        .bind(domain)
        .fetch_all(&mut *transaction)
        .await?
        .into_iter()
        .map(CustomDomain::from)
        .collect();
        if let Some(verified) = claims.iter().find(|claim| claim.verified) {
            return Ok(verified.clone());
        }
        let now = Utc::now();
        let live: Vec<&CustomDomain> = claims
            .iter()
            .filter(|claim| claim.expires_at.is_some_and(|at| at > now))
            .collect();
        if claims.is_empty() {
            return Err(StoreError::NotFound);
        }
        if live.is_empty() {
            return Err(StoreError::DomainClaimExpired);
        }
        let winner = live
            .iter()
            .find(|claim| {
                published
                    .iter()
                    .any(|txt| txt.trim() == claim.verification_token)
            })
            .ok_or_else(|| StoreError::DomainNotProven {
                record: format!("{CHALLENGE_LABEL}.{domain}"),
                found: published.len(),
            })?;
        let row = sqlx::query_as::<_, DomainRow>(concat!(
            "UPDATE tenant_domains SET verified_at = now(), expires_at = NULL \
             WHERE domain = $1 AND tenant_id = $2 RETURNING ",
            columns!()
        ))
        .bind(domain)
        .bind(winner.tenant_id)
        .fetch_one(&mut *transaction)
        .await?;
        let verified = CustomDomain::from(row);
        let superseded: Vec<Uuid> = sqlx::query_scalar(
            "DELETE FROM tenant_domains WHERE domain = $1 AND tenant_id <> $2 RETURNING tenant_id",
        )
        .bind(domain)
        .bind(verified.tenant_id)
        .fetch_all(&mut *transaction)
        .await?;
        for loser in &superseded {
            insert_audit(
                &mut transaction,
                actor,
                "domain.claim_superseded",
                Some(*loser),
                serde_json::json!({ "domain": domain, "verified_by": verified.tenant_id }),
            )
            .await?;
        }
        insert_audit(
            &mut transaction,
            actor,
            "domain.verify",
            Some(verified.tenant_id),
            serde_json::json!({ "domain": domain, "record": format!("{CHALLENGE_LABEL}.{domain}"),
                                "superseded_claims": superseded }),
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
