//! Stock takes: a count sheet per branch, counts recorded item by item, and completion, which
//! sets stock to the counts in one transaction.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use web::{ApiError, ErrorCode};

use crate::auth::{Authed, Role};
use crate::common::{Body, Id, db_error, invalid, not_found};

#[derive(Debug, Deserialize)]
pub struct NewStockTake {
    pub branch_id: i64,
}

#[derive(Debug, Deserialize)]
pub struct CountInput {
    pub item_id: i64,
    pub counted_quantity: f64,
}

#[derive(Debug, Serialize)]
pub struct Count {
    item_id: i64,
    expected_quantity: f64,
    counted_quantity: f64,
    difference: f64,
}

#[derive(Debug, Serialize)]
pub struct StockTake {
    pub id: i64,
    branch_id: i64,
    status: String,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    counts: Vec<Count>,
}

async fn load_stock_take(
    client: &impl tokio_postgres::GenericClient,
    id: i64,
) -> Result<StockTake, ApiError> {
    let row = client
        .query_opt(
            "SELECT id, branch_id, status, started_at, completed_at FROM stock_take_sessions \
             WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("stock take"))?;
    let counts = client
        .query(
            "SELECT item_id, expected_quantity::float8 AS expected, \
                    counted_quantity::float8 AS counted FROM stock_take_counts \
             WHERE session_id = $1 ORDER BY item_id",
            &[&id],
        )
        .await
        .map_err(db_error)?;
    Ok(StockTake {
        id: row.get("id"),
        branch_id: row.get("branch_id"),
        status: row.get("status"),
        started_at: row.get("started_at"),
        completed_at: row.get("completed_at"),
        counts: counts
            .iter()
            .map(|row| {
                let expected: f64 = row.get("expected");
                let counted: f64 = row.get("counted");
                Count {
                    item_id: row.get("item_id"),
                    expected_quantity: expected,
                    counted_quantity: counted,
                    difference: counted - expected,
                }
            })
            .collect(),
    })
}

/// `POST /api/v1/stock-takes`: opens a counting session for a branch.
pub async fn start_stock_take(
    authed: Authed,
    Body(new): Body<NewStockTake>,
) -> Result<(StatusCode, Json<StockTake>), ApiError> {
    authed.require_module("stock_take").await?;
    authed.require(Role::Staff)?;
    let id: i64 = authed
        .client()
        .query_one(
            "INSERT INTO stock_take_sessions (branch_id, started_by) VALUES ($1, $2) RETURNING id",
            &[&new.branch_id, &authed.user_id()],
        )
        .await
        .map_err(db_error)?
        .get(0);
    Ok((
        StatusCode::CREATED,
        Json(load_stock_take(authed.client(), id).await?),
    ))
}

fn not_open() -> ApiError {
    ApiError::new(ErrorCode::WrongStatus, "This stock take is no longer open.")
}

/// `PUT /api/v1/stock-takes/{id}/counts`: records (or corrects) one item's count; the expected
/// quantity is the branch's stock when the item is first counted.
pub async fn record_count(
    authed: Authed,
    Id(id): Id,
    Body(count): Body<CountInput>,
) -> Result<Json<StockTake>, ApiError> {
    record(&authed, id, &count).await?;
    Ok(Json(load_stock_take(authed.client(), id).await?))
}

/// Records (or corrects) one item's count in the open stock take `id`: the API's one count and
/// the count sheet's many go through here.
pub async fn record(authed: &Authed, id: i64, count: &CountInput) -> Result<(), ApiError> {
    authed.require_module("stock_take").await?;
    authed.require(Role::Staff)?;
    if !(count.counted_quantity.is_finite() && (0.0..1e10).contains(&count.counted_quantity)) {
        return Err(invalid("counted_quantity", "must be a number from 0"));
    }
    let changed = authed
        .client()
        .execute(
            "INSERT INTO stock_take_counts (session_id, item_id, expected_quantity, counted_quantity, counted_by) \
             SELECT t.id, $2, coalesce(s.quantity, 0), $3::float8, $4 \
             FROM stock_take_sessions t \
             LEFT JOIN stock_levels s ON s.branch_id = t.branch_id AND s.item_id = $2 \
             WHERE t.id = $1 AND t.status = 'open' \
             ON CONFLICT (session_id, item_id) DO UPDATE \
             SET counted_quantity = excluded.counted_quantity, counted_by = excluded.counted_by, \
                 counted_at = now()",
            &[&id, &count.item_id, &count.counted_quantity, &authed.user_id()],
        )
        .await
        .map_err(db_error)?;
    if changed == 0 {
        load_stock_take(authed.client(), id).await?;
        return Err(not_open());
    }
    Ok(())
}

/// `POST /api/v1/stock-takes/{id}/complete`: sets every counted item's stock to its count, in
/// one transaction with closing the session.
pub async fn complete_stock_take(
    mut authed: Authed,
    Id(id): Id,
) -> Result<Json<StockTake>, ApiError> {
    authed.require_module("stock_take").await?;
    authed.require(Role::Staff)?;
    let transaction = authed
        .connection
        .client
        .transaction()
        .await
        .map_err(db_error)?;
    let closed = transaction
        .query_opt(
            "UPDATE stock_take_sessions SET status = 'completed', completed_at = now() \
             WHERE id = $1 AND status = 'open' RETURNING branch_id",
            &[&id],
        )
        .await
        .map_err(db_error)?;
    let Some(closed) = closed else {
        load_stock_take(&*transaction, id).await?;
        return Err(not_open());
    };
    let branch_id: i64 = closed.get(0);
    transaction
        .execute(
            "INSERT INTO stock_levels (branch_id, item_id, quantity) \
             SELECT $2, item_id, counted_quantity FROM stock_take_counts WHERE session_id = $1 \
             ON CONFLICT (branch_id, item_id) DO UPDATE \
             SET quantity = excluded.quantity, updated_at = now()",
            &[&id, &branch_id],
        )
        .await
        .map_err(db_error)?;
    let stock_take = load_stock_take(&*transaction, id).await?;
    transaction.commit().await.map_err(db_error)?;
    Ok(Json(stock_take))
}

pub async fn get_stock_take(authed: Authed, Id(id): Id) -> Result<Json<StockTake>, ApiError> {
    authed.require_module("stock_take").await?;
    Ok(Json(load_stock_take(authed.client(), id).await?))
}
