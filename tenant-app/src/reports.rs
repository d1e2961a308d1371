//! The sales report: sales per day and best sellers over a date range.

use axum::Json;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use web::ApiError;

use crate::auth::Authed;
use crate::common::{Params, db_error, invalid};

#[derive(Debug, Default, Deserialize)]
pub struct ReportQuery {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub branch_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct DaySales {
    pub day: NaiveDate,
    pub sales: i64,
    pub total_cents: i64,
}

#[derive(Debug, Serialize)]
pub struct TopItem {
    pub item_id: i64,
    pub name: String,
    pub quantity: f64,
    pub total_cents: i64,
}

#[derive(Debug, Serialize)]
pub struct SalesReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub sales: i64,
    pub total_cents: i64,
    pub days: Vec<DaySales>,
    pub top_items: Vec<TopItem>,
}

/// `GET /api/v1/reports/sales?from=&to=&branch_id=`: completed sales per day (UTC) and the ten
/// best-selling items, over at most a year (default: the last 30 days).
pub async fn sales_report(
    authed: Authed,
    Params(query): Params<ReportQuery>,
) -> Result<Json<SalesReport>, ApiError> {
    authed.require_module("reports").await?;
    let to = query.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = query.from.unwrap_or(to - chrono::Days::new(29));
    if from > to {
        return Err(invalid("from", "must not be after `to`"));
    }
    if (to - from).num_days() > 366 {
        return Err(invalid("to", "the range may span at most a year"));
    }
    let days = authed
        .client()
        .query(
            "SELECT (sold_at AT TIME ZONE 'UTC')::date AS day, count(*) AS sales, \
                    coalesce(sum(total_cents), 0)::bigint AS total \
             FROM sales WHERE status = 'completed' \
               AND sold_at >= $1::date AND sold_at < ($2::date + 1) \
               AND ($3::bigint IS NULL OR branch_id = $3) \
             GROUP BY 1 ORDER BY 1",
            &[&from, &to, &query.branch_id],
        )
        .await
        .map_err(db_error)?;
    let top = authed
        .client()
        .query(
            "SELECT l.item_id, i.name, sum(l.quantity)::float8 AS quantity, \
                    round(sum(l.quantity * l.unit_price_cents))::bigint AS total \
             FROM sale_lines l JOIN sales s ON s.id = l.sale_id JOIN items i ON i.id = l.item_id \
             WHERE s.status = 'completed' AND s.sold_at >= $1::date AND s.sold_at < ($2::date + 1) \
               AND ($3::bigint IS NULL OR s.branch_id = $3) \
             GROUP BY l.item_id, i.name ORDER BY total DESC, l.item_id LIMIT 10",
            &[&from, &to, &query.branch_id],
        )
        .await
        .map_err(db_error)?;
    let days: Vec<DaySales> = days
        .iter()
        .map(|row| DaySales {
            day: row.get("day"),
            sales: row.get("sales"),
            total_cents: row.get("total"),
        })
        .collect();
    Ok(Json(SalesReport {
        from,
        to,
        sales: days.iter().map(|day| day.sales).sum(),
        total_cents: days.iter().map(|day| day.total_cents).sum(),
        days,
        top_items: top
            .iter()
            .map(|row| TopItem {
                item_id: row.get("item_id"),
                name: row.get("name"),
                quantity: row.get("quantity"),
                total_cents: row.get("total"),
            })
            .collect(),
    }))
}
