//! What every tenant-app handler shares: JSON bodies with stable errors, field validation,
//! keyset pagination, and PostgreSQL errors turned into answers a client can act on.

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use web::{ApiError, ErrorCode};

pub use web::JsonBody as Body;

/// A record id from the path; anything that is not one is a 404, like an unknown id.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<i64>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|_| not_found("record"))
    }
}

/// Query parameters whose rejection is a stable 422 `invalid_request`.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!("The query string is not valid: {}", rejection.body_text()),
                )
            })
    }
}

/// Collects what is wrong with a request's fields; `finish` turns any into one 422.
#[derive(Debug, Default)]
pub struct Fields(BTreeMap<String, String>);

impl Fields {
    pub fn check(&mut self, ok: bool, field: &str, problem: &str) {
        if !ok && !self.0.contains_key(field) {
            self.0.insert(field.to_owned(), problem.to_owned());
        }
    }

    /// A required text of 1..=`max` characters after trimming.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        let length = value.trim().chars().count();
        self.check(
            (1..=max).contains(&length),
            field,
            &format!("must be 1 to {max} characters"),
        );
    }

    /// An optional text of at most `max` characters.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.check(
                value.chars().count() <= max,
                field,
                &format!("must be at most {max} characters"),
            );
        }
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }
}

/// One field is wrong.
pub fn invalid(field: &str, problem: &str) -> ApiError {
    let mut fields = Fields::default();
    fields.check(false, field, problem);
    ApiError::validation(fields.0)
}

pub fn not_found(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("There is no such {what} in this workspace."),
    )
}

/// `?limit=&cursor=`: keyset pagination over ids, newest last.
#[derive(Debug, Default, Deserialize)]
pub struct Page {
    pub limit: Option<i64>,
    pub cursor: Option<i64>,
}

impl Page {
    pub const DEFAULT: i64 = 50;
    pub const MAX: i64 = 200;

    pub fn validate(&self) -> Result<(), ApiError> {
        match self.limit {
            Some(limit) if !(1..=Self::MAX).contains(&limit) => Err(invalid(
                "limit",
                &format!("must be between 1 and {}", Self::MAX),
            )),
            _ => Ok(()),
        }
    }

    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(Self::DEFAULT).clamp(1, Self::MAX)
    }

    /// Rows after this id.
    pub fn after(&self) -> i64 {
        self.cursor.unwrap_or(0)
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit() + 1
    }
}

/// A page of rows and the cursor of the next page, if there is one (an id, or the text a list
/// is ordered by).
#[derive(Debug, Serialize)]
pub struct Paged<T, C = i64> {
    pub data: Vec<T>,
    pub next_cursor: Option<C>,
}

/// `?limit=&cursor=` over a list ordered by text (a name, or an id that is no number): the
/// same limits as [`Page`], the cursor is the previous page's `next_cursor`.
#[derive(Debug, Default, Deserialize)]
pub struct TextPage {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

impl TextPage {
    /// The page's size, checked as [`Page`] checks it.
    pub fn limit(&self) -> Result<i64, ApiError> {
        let page = Page {
            limit: self.limit,
            cursor: None,
        };
        page.validate()?;
        Ok(page.limit())
    }

    /// A page of the default size after `cursor` (the first page when `None`).
    pub fn after(cursor: Option<String>) -> Self {
        Self {
            limit: Some(Page::DEFAULT),
            cursor,
        }
    }
}

impl<T, C> Paged<T, C> {
    /// `rows` were fetched as `limit + 1`; `cursor` gives the cursor that follows a row.
    pub fn cut(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> C) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Self {
            data: rows,
            next_cursor,
        }
    }
}

impl Page {
    /// One page of a keyset-paged list: checks the page, runs `sql` with `$1` = the cursor and
    /// `$2` = one more than the limit (then `extra` as `$3`, …), maps each row, and says whether
    /// there is a next page. `sql` must order by the id that `id` returns.
    pub async fn fetch_page<T>(
        &self,
        client: &tokio_postgres::Client,
        sql: &str,
        extra: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        row: impl Fn(&tokio_postgres::Row) -> T,
        id: impl Fn(&T) -> i64,
    ) -> Result<Paged<T>, ApiError> {
        self.validate()?;
        let (after, fetch) = (self.after(), self.fetch());
        let mut parameters: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&after, &fetch];
        parameters.extend_from_slice(extra);
        let rows = client.query(sql, &parameters).await.map_err(db_error)?;
        Ok(Paged::new(rows.iter().map(row).collect(), self, id))
    }
}

impl<T> Paged<T> {
    /// `rows` were fetched with `page.fetch()`; `id` gives a row's id.
    pub fn new(rows: Vec<T>, page: &Page, id: impl Fn(&T) -> i64) -> Self {
        Self::cut(rows, page.limit(), id)
    }
}

/// A PostgreSQL error as an answer: constraint violations become 409/422 naming what clashed;
/// anything else is logged and answered 500 without detail.
pub fn db_error(error: tokio_postgres::Error) -> ApiError {
    use tokio_postgres::error::SqlState;
    let Some(db) = error.as_db_error() else {
        tracing::warn!(%error, "tenant database request failed");
        return ApiError::new(
            ErrorCode::TenantUnavailable,
            "This workspace's database cannot be reached right now. Try again shortly.",
        )
        .retry_after(5);
    };
    let constraint = db.constraint().unwrap_or_default();
    let field = constraint_field(constraint);
    match *db.code() {
        SqlState::UNIQUE_VIOLATION => ApiError::new(
            ErrorCode::AlreadyExists,
            format!("Another record already has this {field}."),
        ),
        SqlState::FOREIGN_KEY_VIOLATION => {
            invalid(&field, "refers to a record that does not exist")
        }
        SqlState::CHECK_VIOLATION | SqlState::NOT_NULL_VIOLATION => {
            invalid(&field, "is not an allowed value")
        }
        SqlState::NUMERIC_VALUE_OUT_OF_RANGE => invalid(&field, "is out of range"),
        _ => {
            tracing::error!(code = db.code().code(), "tenant database error");
            ApiError::internal()
        }
    }
}

/// `items_sku_key` → `sku`, `purchases_supplier_id_fkey` → `supplier_id`, `users_email_key` →
/// `email`: PostgreSQL's default constraint names are `<table>_<column>_<kind>`.
fn constraint_field(constraint: &str) -> String {
    let without_kind = ["_key", "_fkey", "_check", "_pkey"]
        .iter()
        .find_map(|suffix| constraint.strip_suffix(suffix))
        .unwrap_or(constraint);
    let tables = [
        "stock_take_counts_",
        "stock_take_sessions_",
        "purchase_lines_",
        "sale_lines_",
        "stock_levels_",
        "purchases_",
        "suppliers_",
        "branches_",
        "items_",
        "sales_",
        "users_",
    ];
    tables
        .iter()
        .find_map(|table| without_kind.strip_prefix(table))
        .unwrap_or(without_kind)
        .to_owned()
}

/// `scheme://host` as the browser addressed this tenant (its Host already resolved to this
/// tenant, so links built on it stay on it), for links mailed from a request.
pub(crate) fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or_default();
    let scheme = if web::headers::reached_over_https(headers) {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Parses an amount of money typed by a person (`12`, `12.5`, `1,234.50`) into cents.
pub fn parse_money(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|c| !matches!(c, ',' | ' ')).collect();
    if cleaned.is_empty() {
        return None;
    }
    let (whole, fraction) = cleaned.split_once('.').unwrap_or((&cleaned, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
        || fraction.len() > 2
        || whole.len() > 12
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<2}").parse().ok()?;
    whole.checked_mul(100)?.checked_add(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraint_names_map_to_fields() {
        assert_eq!(constraint_field("items_sku_key"), "sku");
        assert_eq!(
            constraint_field("purchases_supplier_id_fkey"),
            "supplier_id"
        );
        assert_eq!(constraint_field("users_email_key"), "email");
        assert_eq!(constraint_field("branches_code_check"), "code");
    }

    #[test]
    fn pages_know_whether_another_follows() {
        let page = Page {
            limit: Some(2),
            cursor: None,
        };
        let full = Paged::new(vec![1, 2, 3], &page, |id| *id);
        assert_eq!(full.data, [1, 2]);
        assert_eq!(full.next_cursor, Some(2));
        let last = Paged::new(vec![4], &page, |id| *id);
        assert_eq!(last.next_cursor, None);
        assert!(
            Page {
                limit: Some(0),
                cursor: None
            }
            .validate()
            .is_err()
        );
    }
}
