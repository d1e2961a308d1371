//! What the sale and purchase screens share: the branches to pick from, and finding the item a
//! person typed on a line (exact SKU or barcode, else the one active item whose name contains
//! it), with its price and the branch's stock.

use web::ApiError;

use crate::common::db_error;

/// A branch to pick in a form.
pub struct Branch {
    pub id: i64,
    pub name: String,
}

/// The active branches, in id order (the main branch first).
pub async fn branches(client: &tokio_postgres::Client) -> Result<Vec<Branch>, ApiError> {
    Ok(client
        .query(
            "SELECT id, name FROM branches WHERE is_active ORDER BY id",
            &[],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| Branch {
            id: row.get(0),
            name: row.get(1),
        })
        .collect())
}

/// An item found from what a person typed.
pub struct Found {
    pub id: i64,
    pub name: String,
    pub sale_price_cents: i64,
    pub cost_price_cents: i64,
    /// At the branch the line is for.
    pub stock: f64,
}

/// Finds the item a person typed: exactly its SKU or barcode, else the one active item whose
/// name contains it.
pub async fn find_item(
    client: &tokio_postgres::Client,
    typed: &str,
    branch_id: i64,
) -> Result<Result<Found, String>, ApiError> {
    let columns = "i.id, i.name, i.sale_price_cents, coalesce(s.quantity, 0)::float8, \
                   i.cost_price_cents \
                   FROM items i LEFT JOIN stock_levels s ON s.item_id = i.id AND s.branch_id = $2";
    let exact = client
        .query(
            &format!(
                "SELECT {columns} WHERE i.is_active \
                 AND (lower(i.sku) = lower($1) OR i.barcode = $1) LIMIT 1"
            ),
            &[&typed, &branch_id],
        )
        .await
        .map_err(db_error)?;
    let rows = if exact.is_empty() {
        let pattern = format!(
            "%{}%",
            typed
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        client
            .query(
                &format!(
                    "SELECT {columns} WHERE i.is_active AND i.name ILIKE $1 ORDER BY i.name LIMIT 4"
                ),
                &[&pattern, &branch_id],
            )
            .await
            .map_err(db_error)?
    } else {
        exact
    };
    Ok(match rows.as_slice() {
        [] => Err("No active item has this name, SKU or barcode".to_owned()),
        [row] => Ok(Found {
            id: row.get(0),
            name: row.get(1),
            sale_price_cents: row.get(2),
            stock: row.get(3),
            cost_price_cents: row.get(4),
        }),
        several => Err(format!(
            "Several items match ({}{}): type more of the name, or the SKU",
            several
                .iter()
                .take(3)
                .map(|row| row.get::<_, String>(1))
                .collect::<Vec<_>>()
                .join(", "),
            if several.len() > 3 { ", …" } else { "" }
        )),
    })
}
