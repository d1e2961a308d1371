//! A tenant's white-label settings (`tenant_branding`, migration 0011): display name, logo URL
//! (https only) and primary colour (`#rrggbb`). Each is optional; what is unset falls back to a
//! default. Changes are audited with before and after, and published on the tenant channel so
//! routers, which cache the branding with the resolved tenant, drop it at once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{Store, StoreResult, insert_audit};

/// The colour a tenant without its own is shown in.
pub const DEFAULT_PRIMARY_COLOR: &str = "#2f5d8a";
/// Longest logo URL accepted, in bytes.
pub const MAX_LOGO_URL_LENGTH: usize = 2048;
/// Longest display name accepted, in characters (as a signup's company name).
pub const MAX_DISPLAY_NAME_LENGTH: usize = 200;

/// A tenant's own branding as stored; `None` means "the default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Branding {
    pub display_name: Option<String>,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
}

/// A branding with every default filled in: what pages show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrandingInForce {
    pub display_name: String,
    pub logo_url: Option<String>,
    pub primary_color: String,
}

impl Branding {
    /// These settings with the defaults for what is unset: the tenant's own name
    /// (`tenant_name`, its company name) and [`DEFAULT_PRIMARY_COLOR`]; no logo.
    pub fn in_force(self, tenant_name: &str) -> BrandingInForce {
        BrandingInForce {
            display_name: self.display_name.unwrap_or_else(|| tenant_name.to_owned()),
            logo_url: self.logo_url,
            primary_color: self
                .primary_color
                .unwrap_or_else(|| DEFAULT_PRIMARY_COLOR.to_owned()),
        }
    }
}

/// Validates and normalises branding input (display name trimmed, colour lower-cased).
/// Returns every problem at once, by field name.
pub fn validate_branding(input: &Branding) -> Result<Branding, BTreeMap<String, String>> {
    let mut problems = BTreeMap::new();
    let display_name = input.display_name.as_deref().map(str::trim);
    if let Some(name) = display_name
        && (!(1..=MAX_DISPLAY_NAME_LENGTH).contains(&name.chars().count())
            || name.chars().any(char::is_control))
    {
        problems.insert(
            "display_name".to_owned(),
            format!("must be 1 to {MAX_DISPLAY_NAME_LENGTH} printable characters, or null"),
        );
    }
    let logo_url = input.logo_url.as_deref().map(str::trim);
    if let Some(logo) = logo_url
        && !valid_logo_url(logo)
    {
        problems.insert(
            "logo_url".to_owned(),
            format!("must be an https:// URL of at most {MAX_LOGO_URL_LENGTH} characters, or null"),
        );
    }
    let primary_color = input.primary_color.as_deref().map(str::to_ascii_lowercase);
    if let Some(color) = &primary_color
        && !valid_color(color)
    {
        problems.insert(
            "primary_color".to_owned(),
            "must be a colour as #rrggbb (six hexadecimal digits), or null".to_owned(),
        );
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Branding {
        display_name: display_name.map(str::to_owned),
        logo_url: logo_url.map(str::to_owned),
        primary_color,
    })
}

fn valid_logo_url(logo: &str) -> bool {
    logo.len() <= MAX_LOGO_URL_LENGTH
        && logo.starts_with("https://")
        && !logo.chars().any(|c| c.is_whitespace() || c.is_control())
        && url::Url::parse(logo)
            .is_ok_and(|url| url.scheme() == "https" && url.host_str().is_some())
}

/// `#rrggbb`, lower case.
pub fn valid_color(color: &str) -> bool {
    color.len() == 7
        && color.starts_with('#')
        && color[1..]
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

impl Store {
    /// The tenant's own branding, if it set any.
    pub async fn branding(&self, tenant_id: Uuid) -> StoreResult<Option<Branding>> {
        let branding = sqlx::query_as(
            "SELECT display_name, logo_url, primary_color FROM tenant_branding WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(branding)
    }

    /// Replaces the tenant's branding (already validated) and audits the change with before
    /// and after, in one transaction.
    pub async fn set_branding(
        &self,
        tenant_id: Uuid,
        branding: &Branding,
        actor: &str,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        // Lock the tenant row so concurrent changes record the right `before`.
        sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(tenant_id)
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or(crate::store::StoreError::NotFound)?;
        let before: Option<Branding> = sqlx::query_as(
            "SELECT display_name, logo_url, primary_color FROM tenant_branding WHERE tenant_id = $1",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        sqlx::query(
            "INSERT INTO tenant_branding (tenant_id, display_name, logo_url, primary_color, updated_by) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id) DO UPDATE SET display_name = excluded.display_name, \
             logo_url = excluded.logo_url, primary_color = excluded.primary_color, \
             updated_by = excluded.updated_by, updated_at = now()",
        )
        .bind(tenant_id)
        .bind(&branding.display_name)
        .bind(&branding.logo_url)
        .bind(&branding.primary_color)
        .bind(actor)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            actor,
            "branding.update",
            Some(tenant_id),
            serde_json::json!({"before": before, "after": branding}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: Option<&str>, logo: Option<&str>, color: Option<&str>) -> Branding {
        Branding {
            display_name: name.map(str::to_owned),
            logo_url: logo.map(str::to_owned),
            primary_color: color.map(str::to_owned),
        }
    }

    #[test]
    fn branding_input_is_validated_field_by_field() {
        let long_url = format!("https://example.com/{}", "a".repeat(2048));
        // (input, fields that must be refused; none means accepted)
        let cases: &[(Branding, &[&str])] = &[
            (input(None, None, None), &[]),
            (
                input(
                    Some(" Acme "),
                    Some("https://cdn.acme.test/logo.png"),
                    Some("#A1B2C3"),
                ),
                &[],
            ),
            (input(Some(""), None, None), &["display_name"]),
            (input(Some("a\u{7}b"), None, None), &["display_name"]),
            (
                input(None, Some("http://cdn.acme.test/logo.png"), None),
                &["logo_url"],
            ),
            (
                input(None, Some("javascript:alert(1)"), None),
                &["logo_url"],
            ),
            (input(None, Some(&long_url), None), &["logo_url"]),
            (input(None, None, Some("red")), &["primary_color"]),
            (input(None, None, Some("#12345g")), &["primary_color"]),
            (input(None, None, Some("#1234567")), &["primary_color"]),
            (
                input(Some(""), Some("ftp://x"), Some("#fff")),
                &["display_name", "logo_url", "primary_color"],
            ),
        ];
        for (case, refused) in cases {
            match validate_branding(case) {
                Ok(_) => assert!(refused.is_empty(), "{case:?} was accepted"),
                Err(problems) => {
                    let fields: Vec<&str> = problems.keys().map(String::as_str).collect();
                    assert_eq!(&fields, refused, "{case:?}");
                }
            }
        }
        let valid = validate_branding(&input(Some(" Acme "), None, Some("#A1B2C3"))).unwrap();
        assert_eq!(valid.display_name.as_deref(), Some("Acme"));
        assert_eq!(valid.primary_color.as_deref(), Some("#a1b2c3"));
    }
}
