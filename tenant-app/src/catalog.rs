//! Branches, suppliers and items: list (paged), read, create, change. Owners manage branches;
//! owners and staff manage suppliers and items; everyone signed in reads.

use axum::Json;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Body, Fields, Id, Page, Paged, Params, db_error, invalid, not_found};

// ---------------------------------------------------------------- branches

#[derive(Debug, Serialize)]
pub struct Branch {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub address: Option<String>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

const BRANCH_COLUMNS: &str = "id, code, name, address, is_active, created_at";

fn branch(row: &Row) -> Branch {
    Branch {
        id: row.get("id"),
        code: row.get("code"),
        name: row.get("name"),
        address: row.get("address"),
        is_active: row.get("is_active"),
        created_at: row.get("created_at"),
    }
}

#[derive(Debug, Deserialize)]
pub struct NewBranch {
    pub code: String,
    pub name: String,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BranchChange {
    pub name: Option<String>,
    pub address: Option<String>,
    pub is_active: Option<bool>,
}

pub async fn list_branches(
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<Branch>>, ApiError> {
    branches_page(&authed, &page).await.map(Json)
}

/// One page of the branches, by id.
pub async fn branches_page(authed: &Authed, page: &Page) -> Result<Paged<Branch>, ApiError> {
    let sql = format!("SELECT {BRANCH_COLUMNS} FROM branches WHERE id > $1 ORDER BY id LIMIT $2");
    page.fetch_page(authed.client(), &sql, &[], branch, |b| b.id)
        .await
}

pub async fn get_branch(authed: Authed, Id(id): Id) -> Result<Json<Branch>, ApiError> {
    let row = authed
        .client()
        .query_opt(
            &format!("SELECT {BRANCH_COLUMNS} FROM branches WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("branch"))?;
    Ok(Json(branch(&row)))
}

pub async fn create_branch(
    authed: Authed,
    Body(new): Body<NewBranch>,
) -> Result<(StatusCode, Json<Branch>), ApiError> {
    authed.require(Role::Owner)?;
    let mut fields = Fields::default();
    fields.text("code", &new.code, 32);
    fields.text("name", &new.name, 200);
    fields.optional_text("address", new.address.as_deref(), 500);
    fields.finish()?;
    let limit = authed.connection.tenant.entitlements.plan.max_branches;
    authed
        .check_limit("branches", limit, "SELECT count(*) FROM branches")
        .await?;
    let row = authed
        .client()
        .query_one(
            &format!(
                "INSERT INTO branches (code, name, address) VALUES ($1, $2, $3) \
                 RETURNING {BRANCH_COLUMNS}"
            ),
            &[&new.code.trim(), &new.name.trim(), &new.address],
        )
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(branch(&row))))
}

pub async fn update_branch(
    authed: Authed,
    Id(id): Id,
    Body(change): Body<BranchChange>,
) -> Result<Json<Branch>, ApiError> {
    authed.require(Role::Owner)?;
    let mut fields = Fields::default();
    if let Some(name) = &change.name {
        fields.text("name", name, 200);
    }
    fields.optional_text("address", change.address.as_deref(), 500);
    if change.is_active == Some(false) {
        // Sales, purchases and stock takes need an open branch: the last one stays open.
        let others_open: bool = authed
            .client()
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM branches WHERE is_active AND id <> $1)",
                &[&id],
            )
            .await
            .map_err(db_error)?
            .get(0);
        fields.check(
            others_open,
            "is_active",
            "the last open branch cannot be closed",
        );
    }
    fields.finish()?;
    let row = authed
        .client()
        .query_opt(
            &format!(
                "UPDATE branches SET name = coalesce($2, name), address = coalesce($3, address), \
                 is_active = coalesce($4, is_active), updated_at = now() WHERE id = $1 \
                 RETURNING {BRANCH_COLUMNS}"
            ),
            &[
                &id,
                &change.name.as_deref().map(str::trim),
                &change.address,
                &change.is_active,
            ],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("branch"))?;
    Ok(Json(branch(&row)))
}

// ---------------------------------------------------------------- suppliers

#[derive(Debug, Serialize)]
pub struct Supplier {
    pub id: i64,
    pub name: String,
    pub contact_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub created_at: DateTime<Utc>,
}

const SUPPLIER_COLUMNS: &str = "id, name, contact_name, email, phone, created_at";

fn supplier(row: &Row) -> Supplier {
    Supplier {
        id: row.get("id"),
        name: row.get("name"),
        contact_name: row.get("contact_name"),
        email: row.get("email"),
        phone: row.get("phone"),
        created_at: row.get("created_at"),
    }
}

/// A new supplier, or (all fields optional) a change to one.
#[derive(Debug, Default, Deserialize)]
pub struct SupplierFields {
    pub name: Option<String>,
    pub contact_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl SupplierFields {
    /// What is wrong with these fields (all of it, in one 422); `creating` requires the name.
    pub fn validate(&self, creating: bool) -> Result<(), ApiError> {
        let mut fields = Fields::default();
        match &self.name {
            Some(name) => fields.text("name", name, 200),
            None => fields.check(!creating, "name", "is required"),
        }
        fields.optional_text("contact_name", self.contact_name.as_deref(), 200);
        fields.optional_text("phone", self.phone.as_deref(), 50);
        // An empty email clears it (on a change; a new supplier's empty fields are left out).
        if let Some(email) = self.email.as_deref().filter(|email| !email.is_empty()) {
            fields.check(
                email.contains('@') && email.len() <= 320,
                "email",
                "must be an email address",
            );
        }
        fields.finish()
    }
}

pub async fn list_suppliers(
    authed: Authed,
    Params(page): Params<Page>,
) -> Result<Json<Paged<Supplier>>, ApiError> {
    authed.require_module("inventory").await?;
    let sql =
        format!("SELECT {SUPPLIER_COLUMNS} FROM suppliers WHERE id > $1 ORDER BY id LIMIT $2");
    let suppliers = page
        .fetch_page(authed.client(), &sql, &[], supplier, |s| s.id)
        .await?;
    Ok(Json(suppliers))
}

pub async fn get_supplier(authed: Authed, Id(id): Id) -> Result<Json<Supplier>, ApiError> {
    authed.require_module("inventory").await?;
    let row = authed
        .client()
        .query_opt(
            &format!("SELECT {SUPPLIER_COLUMNS} FROM suppliers WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("supplier"))?;
    Ok(Json(supplier(&row)))
}

pub async fn create_supplier(
    authed: Authed,
    Body(new): Body<SupplierFields>,
) -> Result<(StatusCode, Json<Supplier>), ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    new.validate(true)?;
    let row = authed
        .client()
        .query_one(
            &format!(
                "INSERT INTO suppliers (name, contact_name, email, phone) VALUES ($1, $2, $3, $4) \
                 RETURNING {SUPPLIER_COLUMNS}"
            ),
            &[
                &new.name.as_deref().map(str::trim),
                &new.contact_name,
                &new.email,
                &new.phone,
            ],
        )
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(supplier(&row))))
}

pub async fn update_supplier(
    authed: Authed,
    Id(id): Id,
    Body(change): Body<SupplierFields>,
) -> Result<Json<Supplier>, ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    change.validate(false)?;
    let row = authed
        .client()
        .query_opt(
            &format!(
                "UPDATE suppliers SET name = coalesce($2, name), \
                 contact_name = nullif(coalesce($3, contact_name), ''), \
                 email = nullif(coalesce($4, email), ''), \
                 phone = nullif(coalesce($5, phone), ''), updated_at = now() WHERE id = $1 \
                 RETURNING {SUPPLIER_COLUMNS}"
            ),
            &[
                &id,
                &change.name.as_deref().map(str::trim),
                &change.contact_name,
                &change.email,
                &change.phone,
            ],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("supplier"))?;
    Ok(Json(supplier(&row)))
}

// ---------------------------------------------------------------- items

#[derive(Debug, Serialize)]
pub struct Item {
    pub id: i64,
    pub sku: String,
    pub barcode: Option<String>,
    pub name: String,
    pub unit: String,
    pub cost_price_cents: i64,
    pub sale_price_cents: i64,
    pub requires_prescription: bool,
    pub default_supplier_id: Option<i64>,
    pub reorder_level: f64,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

const ITEM_COLUMNS: &str = "id, sku, barcode, name, unit, cost_price_cents, sale_price_cents, \
     requires_prescription, default_supplier_id, reorder_level::float8 AS reorder_level, \
     is_active, created_at";

fn item(row: &Row) -> Item {
    Item {
        id: row.get("id"),
        sku: row.get("sku"),
        barcode: row.get("barcode"),
        name: row.get("name"),
        unit: row.get("unit"),
        cost_price_cents: row.get("cost_price_cents"),
        sale_price_cents: row.get("sale_price_cents"),
        requires_prescription: row.get("requires_prescription"),
        default_supplier_id: row.get("default_supplier_id"),
        reorder_level: row.get("reorder_level"),
        is_active: row.get("is_active"),
        created_at: row.get("created_at"),
    }
}

/// A new item, or (all fields optional) a change to one.
#[derive(Debug, Default, Deserialize)]
pub struct ItemFields {
    pub sku: Option<String>,
    pub barcode: Option<String>,
    pub name: Option<String>,
    pub unit: Option<String>,
    pub cost_price_cents: Option<i64>,
    pub sale_price_cents: Option<i64>,
    pub requires_prescription: Option<bool>,
    pub default_supplier_id: Option<i64>,
    pub reorder_level: Option<f64>,
    pub is_active: Option<bool>,
}

impl ItemFields {
    /// What is wrong with these fields (all of it, in one 422); `creating` requires SKU and name.
    pub fn validate(&self, creating: bool) -> Result<(), ApiError> {
        let mut fields = Fields::default();
        match &self.sku {
            Some(sku) => fields.text("sku", sku, 64),
            None => fields.check(!creating, "sku", "is required"),
        }
        match &self.name {
            Some(name) => fields.text("name", name, 200),
            None => fields.check(!creating, "name", "is required"),
        }
        if let Some(unit) = &self.unit {
            fields.text("unit", unit, 32);
        }
        fields.optional_text("barcode", self.barcode.as_deref(), 64);
        for (field, cents) in [
            ("cost_price_cents", self.cost_price_cents),
            ("sale_price_cents", self.sale_price_cents),
        ] {
            fields.check(
                cents.is_none_or(|cents| (0..=100_000_000_000).contains(&cents)),
                field,
                "must be between 0 and 100000000000",
            );
        }
        fields.check(
            self.reorder_level
                .is_none_or(|level| level.is_finite() && (0.0..1e10).contains(&level)),
            "reorder_level",
            "must be a number from 0",
        );
        fields.finish()
    }
}

/// `?q=&limit=&cursor=` (serde's `flatten` cannot parse numbers from a query string, so the
/// page's fields are repeated here).
#[derive(Debug, Default, Deserialize)]
pub struct ItemQuery {
    pub limit: Option<i64>,
    pub cursor: Option<i64>,
    /// Matches name, SKU or barcode (case-insensitive substring).
    pub q: Option<String>,
}

pub async fn list_items(
    authed: Authed,
    Params(query): Params<ItemQuery>,
) -> Result<Json<Paged<Item>>, ApiError> {
    authed.require_module("inventory").await?;
    let page = Page {
        limit: query.limit,
        cursor: query.cursor,
    };
    let pattern = query.q.map(|q| {
        format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    });
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM items WHERE id > $1 AND ($3::text IS NULL \
         OR name ILIKE $3 OR sku ILIKE $3 OR barcode ILIKE $3) ORDER BY id LIMIT $2"
    );
    let items = page
        .fetch_page(authed.client(), &sql, &[&pattern], item, |i| i.id)
        .await?;
    Ok(Json(items))
}

pub async fn get_item(authed: Authed, Id(id): Id) -> Result<Json<Item>, ApiError> {
    authed.require_module("inventory").await?;
    let row = authed
        .client()
        .query_opt(
            &format!("SELECT {ITEM_COLUMNS} FROM items WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("item"))?;
    Ok(Json(item(&row)))
}

pub async fn create_item(
    authed: Authed,
    Body(new): Body<ItemFields>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    new.validate(true)?;
    let limit = authed.connection.tenant.entitlements.plan.max_items;
    authed
        .check_limit("items", limit, "SELECT count(*) FROM items")
        .await?;
    let params: [&(dyn ToSql + Sync); 9] = [
        &new.sku.as_deref().map(str::trim),
        &new.barcode,
        &new.name.as_deref().map(str::trim),
        &new.unit.as_deref().unwrap_or("each"),
        &new.cost_price_cents.unwrap_or(0),
        &new.sale_price_cents.unwrap_or(0),
        &new.requires_prescription.unwrap_or(false),
        &new.default_supplier_id,
        &new.reorder_level.unwrap_or(0.0),
    ];
    let row = authed
        .client()
        .query_one(
            &format!(
                "INSERT INTO items (sku, barcode, name, unit, cost_price_cents, sale_price_cents, \
                 requires_prescription, default_supplier_id, reorder_level) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::float8) RETURNING {ITEM_COLUMNS}"
            ),
            &params,
        )
        .await
        .map_err(db_error)?;
    Ok((StatusCode::CREATED, Json(item(&row))))
}

pub async fn update_item(
    authed: Authed,
    Id(id): Id,
    Body(change): Body<ItemFields>,
) -> Result<Json<Item>, ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    change.validate(false)?;
    let params: [&(dyn ToSql + Sync); 11] = [
        &id,
        &change.sku.as_deref().map(str::trim),
        &change.barcode,
        &change.name.as_deref().map(str::trim),
        &change.unit,
        &change.cost_price_cents,
        &change.sale_price_cents,
        &change.requires_prescription,
        &change.default_supplier_id,
        &change.reorder_level,
        &change.is_active,
    ];
    let row = authed
        .client()
        .query_opt(
            &format!(
                "UPDATE items SET sku = coalesce($2, sku), barcode = coalesce($3, barcode), \
                 name = coalesce($4, name), unit = coalesce($5, unit), \
                 cost_price_cents = coalesce($6, cost_price_cents), \
                 sale_price_cents = coalesce($7, sale_price_cents), \
                 requires_prescription = coalesce($8, requires_prescription), \
                 default_supplier_id = coalesce($9, default_supplier_id), \
                 reorder_level = coalesce($10::float8::numeric, reorder_level), \
                 is_active = coalesce($11, is_active), updated_at = now() \
                 WHERE id = $1 RETURNING {ITEM_COLUMNS}"
            ),
            &params,
        )
        .await
        .map_err(db_error)?
        .ok_or_else(|| not_found("item"))?;
    Ok(Json(item(&row)))
}

/// Items are never deleted (sales and purchases refer to them): this deactivates one.
pub async fn deactivate_item(authed: Authed, Id(id): Id) -> Result<StatusCode, ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    let changed = authed
        .client()
        .execute(
            "UPDATE items SET is_active = false, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(db_error)?;
    if changed == 0 {
        return Err(not_found("item"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A positive, finite quantity (stock moves in thousandths).
pub fn check_quantity(field: &str, quantity: f64) -> Result<(), ApiError> {
    if quantity.is_finite() && quantity > 0.0 && quantity < 1e10 {
        Ok(())
    } else {
        Err(invalid(field, "must be a number above 0"))
    }
}
