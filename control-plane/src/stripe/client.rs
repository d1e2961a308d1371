//! Stripe's API, called with the secret key: customers, checkout and customer-portal sessions, made with reqwest
//! against a configurable API base (a local stand-in in tests).

use secrecy::{ExposeSecret as _, SecretString};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::text;

/// Stripe's API, called with the secret key. Every POST carries an idempotency key, so a retry
/// after a timeout never creates a second customer or session.
#[derive(Debug, Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

/// Why a call to Stripe failed. Never contains the key.
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error("Stripe could not be reached: {0}")]
    Unreachable(String),
    #[error("Stripe refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Stripe's answer had no `{0}`")]
    Unexpected(&'static str),
}

/// A checkout session to send the tenant's owner to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

/// A customer-portal session: where the owner manages payment methods and sees invoices.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PortalSession {
    pub url: String,
}

impl StripeClient {
    /// `None` when no secret key is configured.
    pub fn new(settings: &crate::settings::BillingSettings) -> Option<Self> {
        let key = settings.stripe_secret_key.clone()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        Some(Self {
            http,
            base: settings.stripe_api_base.clone(),
            key,
        })
    }

    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Value, StripeError> {
        let body = serde_urlencoded::to_string(form)
            .map_err(|error| StripeError::Unreachable(error.to_string()))?;
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header("Idempotency-Key", idempotency_key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|error| StripeError::Unreachable(error.without_url().to_string()))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|error| StripeError::Unreachable(error.without_url().to_string()))?;
        if !status.is_success() {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned();
            return Err(StripeError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        Ok(value)
    }

    /// Creates the tenant's Stripe customer (idempotent per tenant).
    pub async fn create_customer(
        &self,
        tenant_id: Uuid,
        slug: &str,
        email: &str,
        name: &str,
    ) -> Result<String, StripeError> {
        let value = self
            .post(
                "/v1/customers",
                &[
                    ("email", email.to_owned()),
                    ("name", name.to_owned()),
                    ("metadata[tenant_id]", tenant_id.to_string()),
                    ("metadata[subdomain]", slug.to_owned()),
                ],
                &format!("silo-customer-{tenant_id}"),
            )
            .await?;
        text(&value, "id")
            .map(str::to_owned)
            .ok_or(StripeError::Unexpected("id"))
    }

    /// A subscription checkout for `plan` at its monthly or yearly price; the tenant id and plan
    /// travel in the session's and the subscription's metadata, so the webhooks find the tenant.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_checkout_session(
        &self,
        tenant_id: Uuid,
        customer: &str,
        plan: &crate::plans::Plan,
        interval: &str,
        success_url: &str,
        cancel_url: &str,
        attempt: Uuid,
    ) -> Result<CheckoutSession, StripeError> {
        let amount = if interval == "year" {
            plan.yearly_price_cents
        } else {
            plan.monthly_price_cents
        };
        let form = [
            ("mode", "subscription".to_owned()),
            ("customer", customer.to_owned()),
            ("client_reference_id", tenant_id.to_string()),
            ("success_url", success_url.to_owned()),
            ("cancel_url", cancel_url.to_owned()),
            ("line_items[0][quantity]", "1".to_owned()),
            ("line_items[0][price_data][currency]", "usd".to_owned()),
            ("line_items[0][price_data][unit_amount]", amount.to_string()),
            (
                "line_items[0][price_data][recurring][interval]",
                interval.to_owned(),
            ),
            (
                "line_items[0][price_data][product_data][name]",
                format!("Silo {}", plan.name),
            ),
            ("metadata[tenant_id]", tenant_id.to_string()),
            ("metadata[plan]", plan.code.clone()),
            ("metadata[interval]", interval.to_owned()),
            (
                "subscription_data[metadata][tenant_id]",
                tenant_id.to_string(),
            ),
            ("subscription_data[metadata][plan]", plan.code.clone()),
            ("subscription_data[metadata][interval]", interval.to_owned()),
        ];
        let value = self
            .post(
                "/v1/checkout/sessions",
                &form,
                &format!("silo-checkout-{attempt}"),
            )
            .await?;
        Ok(CheckoutSession {
            id: text(&value, "id")
                .ok_or(StripeError::Unexpected("id"))?
                .to_owned(),
            url: text(&value, "url")
                .ok_or(StripeError::Unexpected("url"))?
                .to_owned(),
        })
    }

    /// A customer-portal session for `customer`, returning to `return_url` when done.
    pub async fn create_portal_session(
        &self,
        customer: &str,
        return_url: &str,
        attempt: Uuid,
    ) -> Result<PortalSession, StripeError> {
        let value = self
            .post(
                "/v1/billing_portal/sessions",
                &[
                    ("customer", customer.to_owned()),
                    ("return_url", return_url.to_owned()),
                ],
                &format!("silo-portal-{attempt}"),
            )
            .await?;
        Ok(PortalSession {
            url: text(&value, "url")
                .ok_or(StripeError::Unexpected("url"))?
                .to_owned(),
        })
    }
}
