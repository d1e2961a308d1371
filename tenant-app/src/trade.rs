//! Stock: levels per branch and item; purchases (stock in) and sales (stock out), each recorded
//! with its lines and its stock movement in one transaction. Stock takes and the sales report
//! are `stock_takes.rs` and `reports.rs`.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use web::{ApiError, ErrorCode};

use crate::auth::{Authed, Role};
use crate::catalog::check_quantity;
use crate::common::{Body, Id, Page, Paged, Params, db_error, invalid, not_found};
use crate::money::priced_line;

// ---------------------------------------------------------------- stock levels

#[derive(Debug, Serialize)]
pub struct StockLevel {
    branch_id: i64,
    item_id: i64,
    sku: String,
    name: String,
    quantity: f64,
    reorder_level: f64,
    below_reorder_level: bool,
}

#[derive(Debug, Deserialize)]
pub struct StockQuery {
    branch_id: Option<i64>,
    item_id: Option<i64>,
    /// Only levels at or below the item's reorder level.
    low: Option<bool>,
    limit: Option<i64>,
    cursor: Option<i64>,
}

/// `GET /api/v1/stock`: levels, paged by item id.
pub async fn stock_levels(
    authed: Authed,
    Params(query): Params<StockQuery>,
) -> Result<Json<Paged<StockLevel>>, ApiError> {
    authed.require_module("inventory").await?;
    let page = Page {
        limit: query.limit,
        cursor: query.cursor,
    };
    let levels = page
        .fetch_page(
            authed.client(),
            "SELECT s.branch_id, s.item_id, i.sku, i.name, s.quantity::float8 AS quantity, \
                    i.reorder_level::float8 AS reorder_level, s.quantity <= i.reorder_level AS low \
             FROM stock_levels s JOIN items i ON i.id = s.item_id \
             WHERE s.item_id > $1 AND ($3::bigint IS NULL OR s.branch_id = $3) \
               AND ($4::bigint IS NULL OR s.item_id = $4) \
               AND (NOT coalesce($5, false) OR s.quantity <= i.reorder_level) \
             ORDER BY s.item_id, s.branch_id LIMIT $2",
            &[&query.branch_id, &query.item_id, &query.low],
            |row| StockLevel {
                branch_id: row.get("branch_id"),
                item_id: row.get("item_id"),
                sku: row.get("sku"),
                name: row.get("name"),
                quantity: row.get("quantity"),
                reorder_level: row.get("reorder_level"),
                below_reorder_level: row.get("low"),
            },
            |level| level.item_id,
        )
        .await?;
    Ok(Json(levels))
}

// ---------------------------------------------------------------- purchases and sales

#[derive(Debug, Deserialize)]
pub struct PurchaseLineInput {
    pub item_id: i64,
    pub quantity: f64,
    pub unit_cost_cents: i64,
}

#[derive(Debug, Deserialize)]
pub struct NewPurchase {
    pub branch_id: i64,
    pub supplier_id: i64,
    pub reference: Option<String>,
    pub lines: Vec<PurchaseLineInput>,
}

#[derive(Debug, Deserialize)]
pub struct SaleLineInput {
    pub item_id: i64,
    pub quantity: f64,
    /// Defaults to the item's sale price.
    pub unit_price_cents: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct NewSale {
    pub branch_id: i64,
    pub lines: Vec<SaleLineInput>,
}

#[derive(Debug, Serialize)]
pub struct Line {
    item_id: i64,
    quantity: f64,
    unit_cents: i64,
}

/// A purchase or a sale with its lines.
#[derive(Debug, Serialize)]
pub struct Movement {
    pub id: i64,
    pub branch_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub status: String,
    pub total_cents: i64,
    pub by_user: Option<i64>,
    pub at: DateTime<Utc>,
    pub lines: Vec<Line>,
}

const MAX_LINES: usize = 500;

fn check_lines<T>(lines: &[T]) -> Result<(), ApiError> {
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(invalid(
            "lines",
            &format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    Ok(())
}

fn check_cents(field: &str, cents: i64) -> Result<(), ApiError> {
    if (0..=100_000_000_000).contains(&cents) {
        Ok(())
    } else {
        Err(invalid(field, "must be between 0 and 100000000000"))
    }
}

/// `POST /api/v1/purchases`: stock received from a supplier. The purchase, its lines and the
/// stock increase commit together or not at all.
pub async fn create_purchase(
    mut authed: Authed,
    Body(new): Body<NewPurchase>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    authed.require_module("purchases").await?;
    authed.require(Role::Staff)?;
    check_lines(&new.lines)?;
    for (index, line) in new.lines.iter().enumerate() {
        check_quantity(&format!("lines[{index}].quantity"), line.quantity)?;
        check_cents(
            &format!("lines[{index}].unit_cost_cents"),
            line.unit_cost_cents,
        )?;
    }
    if new
        .reference
        .as_ref()
        .is_some_and(|r| r.chars().count() > 200)
    {
        return Err(invalid("reference", "must be at most 200 characters"));
    }
    let user = authed.user_id();
    let transaction = authed
        .connection
        .client
        .transaction()
        .await
        .map_err(db_error)?;
    let purchase = transaction
        .query_one(
            "INSERT INTO purchases (branch_id, supplier_id, reference, status, created_by, received_at) \
             VALUES ($1, $2, $3, 'received', $4, now()) RETURNING id",
            &[&new.branch_id, &new.supplier_id, &new.reference, &user],
        )
        .await
        .map_err(db_error)?
        .get::<_, i64>(0);
    let mut total: i64 = 0;
    for (index, line) in new.lines.iter().enumerate() {
        let line_total = priced_line(
            &format!("lines[{index}].quantity"),
            line.quantity,
            line.unit_cost_cents,
        )?;
        transaction
            .execute(
                "INSERT INTO purchase_lines (purchase_id, item_id, quantity, unit_cost_cents) \
                 VALUES ($1, $2, $3::float8, $4)",
                &[
                    &purchase,
                    &line.item_id,
                    &line.quantity,
                    &line.unit_cost_cents,
                ],
            )
            .await
            .map_err(db_error)?;
        transaction
            .execute(
                "INSERT INTO stock_levels (branch_id, item_id, quantity) VALUES ($1, $2, $3::float8) \
                 ON CONFLICT (branch_id, item_id) DO UPDATE \
                 SET quantity = stock_levels.quantity + excluded.quantity, updated_at = now()",
                &[&new.branch_id, &line.item_id, &line.quantity],
            )
            .await
            .map_err(db_error)?;
        total = total.saturating_add(line_total);
    }
    let movement = finish_movement(transaction, Kind::Purchase, purchase, total).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}

/// Purchases and sales share one shape: a header and lines.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Purchase,
    Sale,
}

impl Kind {
    fn header_sql(self) -> &'static str {
        match self {
            Self::Purchase => {
                "SELECT id, branch_id, supplier_id, reference, status, total_cents, \
                        created_by AS by_user, coalesce(received_at, created_at) AS at \
                 FROM purchases WHERE id = $1"
            }
            Self::Sale => {
                "SELECT id, branch_id, NULL::bigint AS supplier_id, NULL::text AS reference, \
                        status, total_cents, sold_by AS by_user, sold_at AS at \
                 FROM sales WHERE id = $1"
            }
        }
    }

    fn lines_sql(self) -> &'static str {
        match self {
            Self::Purchase => {
                "SELECT item_id, quantity::float8 AS quantity, unit_cost_cents AS unit_cents \
                 FROM purchase_lines WHERE purchase_id = $1 ORDER BY id"
            }
            Self::Sale => {
                "SELECT item_id, quantity::float8 AS quantity, unit_price_cents AS unit_cents \
                 FROM sale_lines WHERE sale_id = $1 ORDER BY id"
            }
        }
    }

    fn total_sql(self) -> &'static str {
        match self {
            Self::Purchase => "UPDATE purchases SET total_cents = $2 WHERE id = $1",
            Self::Sale => "UPDATE sales SET total_cents = $2 WHERE id = $1",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Sale => "sale",
        }
    }
}

/// Records the movement's total, reads it back whole, and commits.
async fn finish_movement(
    transaction: tenant_router::seam::TenantTransaction<'_>,
    kind: Kind,
    id: i64,
    total: i64,
) -> Result<Movement, ApiError> {
    transaction
        .execute(kind.total_sql(), &[&id, &total])
        .await
        .map_err(db_error)?;
    let movement = load_movement(&*transaction, kind, id).await?;
    transaction.commit().await.map_err(db_error)?;
    Ok(movement)
}

async fn load_movement(
    client: &impl tokio_postgres::GenericClient,
    kind: Kind,
    id: i64,
) -> Result<Movement, ApiError> {
    let row = client
        .query_opt(kind.header_sql(), &[&id])
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found(kind.name()))?;
    let lines = client
        .query(kind.lines_sql(), &[&id])
        .await
        .map_err(db_error)?;
    Ok(Movement {
        id: row.get("id"),
        branch_id: row.get("branch_id"),
        supplier_id: row.get("supplier_id"),
        reference: row.get("reference"),
        status: row.get("status"),
        total_cents: row.get("total_cents"),
        by_user: row.get("by_user"),
        at: row.get("at"),
        lines: lines.iter().map(line).collect(),
    })
}

fn line(row: &Row) -> Line {
    Line {
        item_id: row.get("item_id"),
        quantity: row.get("quantity"),
        unit_cents: row.get("unit_cents"),
    }
}

pub async fn get_purchase(authed: Authed, Id(id): Id) -> Result<Json<Movement>, ApiError> {
    authed.require_module("purchases").await?;
    Ok(Json(
        load_movement(authed.client(), Kind::Purchase, id).await?,
    ))
}

/// `POST /api/v1/sales`: stock sold. Every line's stock is locked and checked first; a line
/// with too little stock refuses the whole sale (422 `insufficient_stock`, naming the line) and
/// nothing changes.
pub async fn create_sale(
    mut authed: Authed,
    Body(new): Body<NewSale>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    authed.require_module("sales").await?;
    authed.require(Role::Staff)?;
    check_lines(&new.lines)?;
    for (index, line) in new.lines.iter().enumerate() {
        check_quantity(&format!("lines[{index}].quantity"), line.quantity)?;
        if let Some(cents) = line.unit_price_cents {
            check_cents(&format!("lines[{index}].unit_price_cents"), cents)?;
        }
    }
    let user = authed.user_id();
    let transaction = authed
        .connection
        .client
        .transaction()
        .await
        .map_err(db_error)?;
    // Lock in a stable order (item id) so concurrent sales cannot deadlock.
    let mut wanted: BTreeMap<i64, f64> = BTreeMap::new();
    for line in &new.lines {
        *wanted.entry(line.item_id).or_default() += line.quantity;
    }
    let mut prices: BTreeMap<i64, i64> = BTreeMap::new();
    for (item_id, quantity) in &wanted {
        let row = transaction
            .query_opt(
                "SELECT i.sale_price_cents, i.is_active, coalesce(s.quantity, 0)::float8 AS stock \
                 FROM items i LEFT JOIN stock_levels s ON s.item_id = i.id AND s.branch_id = $2 \
                 WHERE i.id = $1 FOR UPDATE OF i",
                &[item_id, &new.branch_id],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            return Err(invalid(
                &line_field(&new.lines, *item_id, "item_id"),
                "does not exist",
            ));
        };
        if !row.get::<_, bool>("is_active") {
            return Err(invalid(
                &line_field(&new.lines, *item_id, "item_id"),
                "is not active",
            ));
        }
        let stock: f64 = row.get("stock");
        if stock + 1e-9 < *quantity {
            let mut error = invalid(
                &line_field(&new.lines, *item_id, "quantity"),
                &format!("only {stock} in stock at this branch"),
            );
            error.code = ErrorCode::InsufficientStock;
            error.message = "There is not enough stock for this sale; nothing was recorded.".into();
            return Err(error);
        }
        prices.insert(*item_id, row.get("sale_price_cents"));
    }
    let sale = transaction
        .query_one(
            "INSERT INTO sales (branch_id, status, sold_by) VALUES ($1, 'completed', $2) RETURNING id",
            &[&new.branch_id, &user],
        )
        .await
        .map_err(db_error)?
        .get::<_, i64>(0);
    let mut total: i64 = 0;
    for (index, line) in new.lines.iter().enumerate() {
        let price = line
            .unit_price_cents
            .unwrap_or_else(|| prices.get(&line.item_id).copied().unwrap_or(0));
        // Refused here, inside the transaction, drops it: nothing of the sale is recorded.
        let line_total = priced_line(&format!("lines[{index}].quantity"), line.quantity, price)?;
        transaction
            .execute(
                "INSERT INTO sale_lines (sale_id, item_id, quantity, unit_price_cents) \
                 VALUES ($1, $2, $3::float8, $4)",
                &[&sale, &line.item_id, &line.quantity, &price],
            )
            .await
            .map_err(db_error)?;
        transaction
            .execute(
                "UPDATE stock_levels SET quantity = quantity - $3::float8::numeric, updated_at = now() \
                 WHERE branch_id = $1 AND item_id = $2",
                &[&new.branch_id, &line.item_id, &line.quantity],
            )
            .await
            .map_err(db_error)?;
        total = total.saturating_add(line_total);
    }
    let movement = finish_movement(transaction, Kind::Sale, sale, total).await?;
    Ok((StatusCode::CREATED, Json(movement)))
}

/// `lines[i].<field>` of the first line selling `item_id`.
fn line_field(lines: &[SaleLineInput], item_id: i64, field: &str) -> String {
    let index = lines
        .iter()
        .position(|line| line.item_id == item_id)
        .unwrap_or(0);
    format!("lines[{index}].{field}")
}

pub async fn get_sale(authed: Authed, Id(id): Id) -> Result<Json<Movement>, ApiError> {
    authed.require_module("sales").await?;
    Ok(Json(load_movement(authed.client(), Kind::Sale, id).await?))
}

#[derive(Debug, Serialize)]
pub struct SaleSummary {
    id: i64,
    branch_id: i64,
    status: String,
    total_cents: i64,
    sold_at: DateTime<Utc>,
}

pub async fn list_sales(
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<SaleSummary>>, ApiError> {
    authed.require_module("sales").await?;
    let sales = page
        .fetch_page(
            authed.client(),
            "SELECT id, branch_id, status, total_cents, sold_at FROM sales WHERE id > $1 \
             ORDER BY id LIMIT $2",
            &[],
            |row| SaleSummary {
                id: row.get("id"),
                branch_id: row.get("branch_id"),
                status: row.get("status"),
                total_cents: row.get("total_cents"),
                sold_at: row.get("sold_at"),
            },
            |sale| sale.id,
        )
        .await?;
    Ok(Json(sales))
}
