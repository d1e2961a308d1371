//! The dashboard (`/` signed in): today's sales, stock at or below its reorder level, the
//! latest purchases, and where the plan and trial stand.

use axum::response::{IntoResponse as _, Response};
use chrono::{DateTime, Utc};
use control_plane::subscriptions::SubscriptionStatus;
use maud::{Markup, html};
use web::ApiError;

use super::{Signed, money};
use crate::common::db_error;

/// How many low-stock lines and purchases the dashboard lists.
const LISTED: i64 = 8;

struct Today {
    sales: i64,
    total_cents: i64,
}

struct LowStock {
    item: String,
    sku: String,
    branch: String,
    quantity: String,
    reorder_level: String,
}

struct RecentPurchase {
    id: i64,
    supplier: String,
    branch: String,
    reference: Option<String>,
    total_cents: i64,
    received_at: Option<DateTime<Utc>>,
}

async fn read(
    client: &tokio_postgres::Client,
) -> Result<(Today, Vec<LowStock>, Vec<RecentPurchase>), ApiError> {
    // The three reads are independent: sent together, they share one round trip's wait
    // (tokio-postgres pipelines queries polled at the same time on one connection).
    let (today, low, purchases) = tokio::try_join!(
        client.query_one(
            "SELECT count(*), coalesce(sum(total_cents), 0)::bigint FROM sales \
             WHERE status = 'completed' AND sold_at >= date_trunc('day', now())",
            &[],
        ),
        client.query(
            "SELECT i.name, i.sku, b.name AS branch, s.quantity::text AS quantity, \
                    i.reorder_level::text AS reorder_level \
             FROM stock_levels s JOIN items i ON i.id = s.item_id \
             JOIN branches b ON b.id = s.branch_id \
             WHERE i.is_active AND b.is_active AND i.reorder_level > 0 \
               AND s.quantity <= i.reorder_level \
             ORDER BY s.quantity - i.reorder_level, i.name LIMIT $1",
            &[&LISTED],
        ),
        client.query(
            "SELECT p.id, s.name AS supplier, b.name AS branch, p.reference, p.total_cents, \
                    p.received_at \
             FROM purchases p JOIN suppliers s ON s.id = p.supplier_id \
             JOIN branches b ON b.id = p.branch_id \
             ORDER BY p.id DESC LIMIT $1",
            &[&LISTED],
        ),
    )
    .map_err(db_error)?;
    Ok((
        Today {
            sales: today.get(0),
            total_cents: today.get(1),
        },
        low.iter()
            .map(|row| LowStock {
                item: row.get("name"),
                sku: row.get("sku"),
                branch: row.get("branch"),
                quantity: row.get("quantity"),
                reorder_level: row.get("reorder_level"),
            })
            .collect(),
        purchases
            .iter()
            .map(|row| RecentPurchase {
                id: row.get("id"),
                supplier: row.get("supplier"),
                branch: row.get("branch"),
                reference: row.get("reference"),
                total_cents: row.get("total_cents"),
                received_at: row.get("received_at"),
            })
            .collect(),
    ))
}

/// "Trial: 12 days left", "Active", "Payment failed: suspends on …".
fn plan_status(signed: &Signed) -> (String, Option<String>) {
    let entitlements = &signed.0.connection.tenant.entitlements;
    let plan = format!("{} plan", entitlements.plan.name);
    let Some(billing) = &entitlements.billing else {
        return (plan, None);
    };
    let now = Utc::now();
    let detail = match billing.status {
        SubscriptionStatus::Trial => billing.trial_ends_at.map(|ends| {
            let days = (ends - now).num_days().max(0);
            format!("Trial: {days} day{} left", if days == 1 { "" } else { "s" })
        }),
        SubscriptionStatus::Active => match billing.cancel_at {
            Some(at) => Some(format!("Cancels on {}", at.format("%-d %B %Y"))),
            None => Some("Active".to_owned()),
        },
        SubscriptionStatus::PastDue => Some(match billing.grace_ends_at {
            Some(at) => format!(
                "Payment failed: update your payment method before {}",
                at.format("%-d %B %Y")
            ),
            None => "Payment failed: update your payment method".to_owned(),
        }),
        SubscriptionStatus::Suspended => Some("Suspended".to_owned()),
        SubscriptionStatus::Cancelled => Some("Cancelled".to_owned()),
    };
    (plan, detail)
}

fn content(
    signed: &Signed,
    today: &Today,
    low: &[LowStock],
    purchases: &[RecentPurchase],
) -> Markup {
    let (plan, detail) = plan_status(signed);
    html! {
        div class="cards" {
            section class="card" id="today" {
                h2 { "Today's sales" }
                p class="figure" { (money(today.total_cents)) }
                p class="muted" { (today.sales) " sale" @if today.sales != 1 { "s" } }
            }
            section class="card" id="plan" {
                h2 { "Plan" }
                p class="figure" { (plan) }
                @if let Some(detail) = detail { p id="plan-detail" { (detail) } }
            }
        }
        div class="cards" style="margin-top:1rem" {
            section class="card" id="low-stock" {
                h2 { "Low stock" }
                @if low.is_empty() {
                    p class="muted" { "Nothing is at or below its reorder level." }
                } @else {
                    table class="stack" {
                        thead { tr { th { "Item" } th { "Branch" } th class="number" { "On hand" } th class="number" { "Reorder at" } } }
                        tbody {
                            @for line in low {
                                tr {
                                    td data-label="Item" { (line.item) " " span class="muted" { (line.sku) } }
                                    td data-label="Branch" { (line.branch) }
                                    td class="number" data-label="On hand" { (line.quantity) }
                                    td class="number" data-label="Reorder at" { (line.reorder_level) }
                                }
                            }
                        }
                    }
                }
            }
            section class="card" id="recent-purchases" {
                h2 { "Recent purchases" }
                @if purchases.is_empty() {
                    p class="muted" { "No stock received yet." }
                } @else {
                    table class="stack" {
                        thead { tr { th { "#" } th { "Supplier" } th { "Branch" } th class="number" { "Total" } th { "Received" } } }
                        tbody {
                            @for purchase in purchases {
                                tr {
                                    td data-label="#" { (purchase.id) @if let Some(reference) = &purchase.reference { " " span class="muted" { (reference) } } }
                                    td data-label="Supplier" { (purchase.supplier) }
                                    td data-label="Branch" { (purchase.branch) }
                                    td class="number" data-label="Total" { (money(purchase.total_cents)) }
                                    td data-label="Received" { @if let Some(at) = purchase.received_at { (at.format("%-d %b %Y")) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Renders the dashboard for a signed-in user.
pub async fn show(signed: Signed) -> Response {
    let (today, low, purchases) = match read(signed.0.client()).await {
        Ok(read) => read,
        Err(error) => return error.into_response(),
    };
    signed
        .frame()
        .render("Dashboard", "/", content(&signed, &today, &low, &purchases))
}
