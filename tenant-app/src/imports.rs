//! Items imported from a CSV file, for onboarding a catalogue at once. The request only records
//! the import with its file sealed to the tenant and queues a job ([`control_plane::imports`]);
//! the worker calls [`parse_items`] (every row checked, every problem named by line and field)
//! and, when the file has none, [`write_items`] inside one transaction on the tenant's own
//! database: every row or none, never half a catalogue.
//!
//! The file: a header row naming the columns (any order, any case): `sku` and `name` required;
//! `barcode`, `unit`, `cost_price`, `sale_price` (amounts as people type them: `12`, `12.5`,
//! `1,234.50`), `requires_prescription` (`yes`/`no`, `true`/`false`, `1`/`0`) and
//! `reorder_level` optional. Problems never repeat a cell's value: the control plane keeps them.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use control_plane::imports::{ImportProblem, ItemImport};
use control_plane::{Purpose, Sealed};
use secrecy::SecretString;
use tenant_router::RouterState;
use web::ApiError;

use crate::auth::{Authed, Role};
use crate::common::{Id, not_found};

/// The most rows one file may hold.
pub const MAX_ROWS: usize = 200_000;
/// Rows written per statement.
const BATCH: usize = 2_000;

/// The columns a file may have, and whether each is required.
const COLUMNS: [(&str, bool); 8] = [
    ("sku", true),
    ("name", true),
    ("barcode", false),
    ("unit", false),
    ("cost_price", false),
    ("sale_price", false),
    ("requires_prescription", false),
    ("reorder_level", false),
];

/// One item to create, from line `line` of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub line: u64,
    pub sku: String,
    pub name: String,
    pub barcode: Option<String>,
    pub unit: String,
    pub cost_price_cents: i64,
    pub sale_price_cents: i64,
    pub requires_prescription: bool,
    pub reorder_level: f64,
}

/// What a file holds: the rows if it has no problem, else every problem (the first
/// [`control_plane::imports::MAX_PROBLEMS_KEPT`] kept) and how many there were.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<ItemRow>,
    pub problems: Vec<ImportProblem>,
    pub problem_count: usize,
    /// Data rows read (with or without problems).
    pub rows_read: usize,
}

impl Parsed {
    fn problem(&mut self, line: u64, field: Option<&str>, message: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < control_plane::imports::MAX_PROBLEMS_KEPT {
            self.problems.push(ImportProblem {
                line,
                field: field.map(str::to_owned),
                message: message.into(),
            });
        }
    }
}

/// Reads and checks every row of `file`.
pub fn parse_items(file: &str) -> Parsed {
    let mut parsed = Parsed::default();
    // Spreadsheets saving "CSV UTF-8" start the file with a byte-order mark; in much of Europe
    // they separate fields with semicolons (the header row says which).
    let file = file.strip_prefix('\u{feff}').unwrap_or(file);
    let header_line = file.lines().next().unwrap_or_default();
    let delimiter = if header_line.contains(';') && !header_line.contains(',') {
        b';'
    } else {
        b','
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(file.as_bytes());
    let header = match reader.headers() {
        Ok(header) => header.clone(),
        Err(_) => {
            parsed.problem(1, None, "the header row cannot be read as CSV");
            return parsed;
        }
    };
    let Some(positions) = columns_of(&header, &mut parsed) else {
        return parsed;
    };
    let mut first_line_of_sku: HashMap<String, u64> = HashMap::new();
    let mut first_line_of_barcode: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, csv::Position::line);
                parsed.problem(line, None, "cannot be read as CSV (a quote left open?)");
                continue;
            }
        };
        let line = record.position().map_or(0, csv::Position::line);
        if record.iter().all(str::is_empty) {
            continue;
        }
        parsed.rows_read += 1;
        if parsed.rows_read > MAX_ROWS {
            parsed.problem(
                line,
                None,
                format!("the file has more than {MAX_ROWS} rows; split it"),
            );
            break;
        }
        if record.len() != header.len() {
            parsed.problem(
                line,
                None,
                format!(
                    "has {} fields where the header has {}",
                    record.len(),
                    header.len()
                ),
            );
            continue;
        }
        let cell = |column: &str| -> &str {
            positions
                .get(column)
                .and_then(|&at| record.get(at))
                .unwrap_or("")
        };
        let problems_before = parsed.problem_count;
        for (column, _) in COLUMNS {
            if cell(column).contains('\0') {
                parsed.problem(line, Some(column), "must not contain a NUL character");
            }
        }
        if parsed.problem_count > problems_before {
            continue;
        }
        let text = |parsed: &mut Parsed, column: &str, max: usize, required: bool| {
            let value = cell(column);
            if value.is_empty() {
                if required {
                    parsed.problem(line, Some(column), "is required");
                }
                None
            } else if value.chars().count() > max {
                parsed.problem(
                    line,
                    Some(column),
                    format!("must be at most {max} characters"),
                );
                None
            } else {
                Some(value.to_owned())
            }
        };
        let sku = text(&mut parsed, "sku", 64, true);
        let name = text(&mut parsed, "name", 200, true);
        let barcode = text(&mut parsed, "barcode", 64, false);
        let unit = text(&mut parsed, "unit", 32, false);
        let money = |parsed: &mut Parsed, column: &str| match cell(column) {
            "" => 0,
            typed => match crate::common::parse_money(&decimal_point(typed, delimiter)) {
                Some(cents) if cents <= 100_000_000_000 => cents,
                _ => {
                    parsed.problem(
                        line,
                        Some(column),
                        "must be an amount like 12.50, from 0 to 1000000000",
                    );
                    0
                }
            },
        };
        let cost_price_cents = money(&mut parsed, "cost_price");
        let sale_price_cents = money(&mut parsed, "sale_price");
        let requires_prescription =
            match cell("requires_prescription").to_ascii_lowercase().as_str() {
                "" | "no" | "false" | "0" | "n" => false,
                "yes" | "true" | "1" | "y" => true,
                _ => {
                    parsed.problem(line, Some("requires_prescription"), "must be yes or no");
                    false
                }
            };
        let reorder_level = match cell("reorder_level") {
            "" => 0.0,
            typed => match typed.parse::<f64>() {
                Ok(level) if level.is_finite() && (0.0..1e10).contains(&level) => level,
                _ => {
                    parsed.problem(line, Some("reorder_level"), "must be a number from 0");
                    0.0
                }
            },
        };
        if let Some(sku) = &sku
            && let Some(first) = first_line_of_sku.insert(sku.clone(), line)
        {
            parsed.problem(line, Some("sku"), format!("is the same as on line {first}"));
            first_line_of_sku.insert(sku.clone(), first);
        }
        if let Some(barcode) = &barcode
            && let Some(first) = first_line_of_barcode.insert(barcode.clone(), line)
        {
            parsed.problem(
                line,
                Some("barcode"),
                format!("is the same as on line {first}"),
            );
            first_line_of_barcode.insert(barcode.clone(), first);
        }
        if parsed.problem_count > problems_before {
            continue;
        }
        if let (Some(sku), Some(name)) = (sku, name) {
            parsed.rows.push(ItemRow {
                line,
                sku,
                name,
                barcode,
                unit: unit.unwrap_or_else(|| "each".to_owned()),
                cost_price_cents,
                sale_price_cents,
                requires_prescription,
                reorder_level,
            });
        }
    }
    if parsed.rows_read == 0 && parsed.problem_count == 0 {
        parsed.problem(2, None, "the file has a header but no rows");
    }
    if parsed.problem_count > 0 {
        parsed.rows.clear();
    }
    parsed
}

/// An amount as [`crate::common::parse_money`] reads it: in a semicolon-separated file (as
/// spreadsheets save where the comma is the decimal mark) `1.234,50` means 1234.50.
fn decimal_point(typed: &str, delimiter: u8) -> String {
    if delimiter == b';' {
        typed.replace('.', "").replace(',', ".")
    } else {
        typed.to_owned()
    }
}

/// Where each known column is; `None` (with the problems noted) when the header will not do.
fn columns_of(header: &csv::StringRecord, parsed: &mut Parsed) -> Option<HashMap<String, usize>> {
    let mut positions = HashMap::new();
    for (at, name) in header.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase().replace(' ', "_");
        if !COLUMNS.iter().any(|(known, _)| *known == name) {
            let known: Vec<&str> = COLUMNS.iter().map(|(known, _)| *known).collect();
            parsed.problem(
                1,
                None,
                format!("column {} is not one of {}", at + 1, known.join(", ")),
            );
        } else if positions.insert(name, at).is_some() {
            parsed.problem(1, None, format!("column {} appears twice", at + 1));
        }
    }
    for (column, required) in COLUMNS {
        if required && !positions.contains_key(column) {
            parsed.problem(1, Some(column), "is a required column");
        }
    }
    (parsed.problem_count == 0).then_some(positions)
}

/// Writes `rows` as new items inside `transaction` (the caller commits only when this returns
/// no problem): refused, writing nothing, when the plan's item limit would be passed or an SKU or
/// barcode already belongs to an item. Calls `progress` with the rows written so far.
pub async fn write_items(
    transaction: &tokio_postgres::Transaction<'_>,
    rows: &[ItemRow],
    max_items: Option<i32>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<ImportProblem>, tokio_postgres::Error> {
    // The same lock a single create holds for its count, so no create slips past the limit.
    transaction
        .execute("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE", &[])
        .await?;
    let mut problems = Vec::new();
    if let Some(limit) = max_items {
        let count: i64 = transaction
            .query_one("SELECT count(*) FROM items", &[])
            .await?
            .get(0);
        let after = count + i64::try_from(rows.len()).unwrap_or(i64::MAX);
        if after > i64::from(limit) {
            problems.push(ImportProblem {
                line: 0,
                field: None,
                message: format!(
                    "the plan allows {limit} items; the workspace has {count} and the file adds {}",
                    rows.len()
                ),
            });
            return Ok(problems);
        }
    }
    let skus: Vec<&str> = rows.iter().map(|row| row.sku.as_str()).collect();
    let barcodes: Vec<&str> = rows
        .iter()
        .filter_map(|row| row.barcode.as_deref())
        .collect();
    let taken = transaction
        .query(
            "SELECT 'sku', sku FROM items WHERE sku = ANY($1) \
             UNION ALL SELECT 'barcode', barcode FROM items WHERE barcode = ANY($2)",
            &[&skus, &barcodes],
        )
        .await?;
    if !taken.is_empty() {
        let taken: std::collections::HashSet<(String, String)> = taken
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect();
        for row in rows {
            if taken.contains(&("sku".to_owned(), row.sku.clone())) {
                problems.push(existing(row.line, "sku"));
            }
            if let Some(barcode) = &row.barcode
                && taken.contains(&("barcode".to_owned(), barcode.clone()))
            {
                problems.push(existing(row.line, "barcode"));
            }
        }
        return Ok(problems);
    }
    let insert = transaction
        .prepare(
            "INSERT INTO items (sku, barcode, name, unit, cost_price_cents, sale_price_cents, \
             requires_prescription, reorder_level) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], \
             $6::int8[], $7::bool[], $8::float8[])",
        )
        .await?;
    let mut written = 0;
    for batch in rows.chunks(BATCH) {
        let column = |pick: fn(&ItemRow) -> String| batch.iter().map(pick).collect::<Vec<_>>();
        let barcodes: Vec<Option<&str>> = batch.iter().map(|row| row.barcode.as_deref()).collect();
        let costs: Vec<i64> = batch.iter().map(|row| row.cost_price_cents).collect();
        let sales: Vec<i64> = batch.iter().map(|row| row.sale_price_cents).collect();
        let prescriptions: Vec<bool> = batch.iter().map(|row| row.requires_prescription).collect();
        let levels: Vec<f64> = batch.iter().map(|row| row.reorder_level).collect();
        transaction
            .execute(
                &insert,
                &[
                    &column(|row| row.sku.clone()),
                    &barcodes,
                    &column(|row| row.name.clone()),
                    &column(|row| row.unit.clone()),
                    &costs,
                    &sales,
                    &prescriptions,
                    &levels,
                ],
            )
            .await?;
        written += batch.len();
        progress(written);
    }
    Ok(problems)
}

fn existing(line: u64, field: &str) -> ImportProblem {
    ImportProblem {
        line,
        field: Some(field.to_owned()),
        message: "already belongs to an item of this workspace".to_owned(),
    }
}

/// Queues an import of `file` (the request's whole body, UTF-8 CSV) for the signed-in user's
/// workspace; shared by the API and the page.
pub async fn queue_import(
    router: &RouterState,
    authed: &Authed,
    file: &[u8],
) -> Result<ItemImport, ApiError> {
    authed.require_module("inventory").await?;
    authed.require(Role::Staff)?;
    let problem = if file.iter().all(u8::is_ascii_whitespace) {
        Some("must be a CSV file with a header row and at least one item")
    } else if std::str::from_utf8(file).is_err() {
        Some("must be text in UTF-8 (save the spreadsheet as \"CSV UTF-8\")")
    } else {
        None
    };
    if let Some(problem) = problem {
        return Err(ApiError::validation(std::collections::BTreeMap::from([(
            "file".to_owned(),
            problem.to_owned(),
        )])));
    }
    let text = SecretString::from(String::from_utf8_lossy(file).into_owned());
    let tenant = &authed.connection.tenant;
    // Sealing a file of megabytes is CPU work: off the async threads that serve requests.
    let (sealer, tenant_id) = (router.clone(), tenant.id);
    let sealed: Sealed = tokio::task::spawn_blocking(move || {
        sealer.keyring().seal(Purpose::ItemImport, tenant_id, &text)
    })
    .await
    .map_err(|_| ApiError::internal())?;
    Ok(router
        .store()
        .create_import(tenant.id, &authed.actor(), &sealed)
        .await?)
}

/// `POST /api/v1/items/imports` (staff; body: the CSV file, `text/csv`): `202` with the import,
/// which a worker runs; `409 import_running` while another is queued or running.
#[tracing::instrument(name = "import_items", skip_all, fields(tenant = %authed.connection.tenant.slug))]
pub async fn import_items(
    State(router): State<RouterState>,
    authed: Authed,
    body: Bytes,
) -> Result<(StatusCode, Json<ItemImport>), ApiError> {
    let queued = queue_import(&router, &authed, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

/// `GET /api/v1/items/imports/{id}` (any role with the inventory module): where it stands.
pub async fn get_import(
    State(router): State<RouterState>,
    authed: Authed,
    Id(id): Id,
) -> Result<Json<ItemImport>, ApiError> {
    authed.require_module("inventory").await?;
    match router
        .store()
        .import_of(authed.connection.tenant.id, id)
        .await
    {
        Ok(found) => Ok(Json(found)),
        Err(control_plane::store::StoreError::NotFound) => Err(not_found("import")),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(file: &str) -> Vec<(u64, Option<String>)> {
        parse_items(file)
            .problems
            .into_iter()
            .map(|problem| (problem.line, problem.field))
            .collect()
    }

    #[test]
    fn a_good_file_gives_every_row_with_defaults() {
        let parsed = parse_items(
            "SKU,Name,Sale Price,requires_prescription\r\nA1,Aspirin,\"1,234.5\",yes\nB2,Bandage,,\n",
        );
        assert_eq!(parsed.problem_count, 0, "{:?}", parsed.problems);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].sale_price_cents, 123_450);
        assert!(parsed.rows[0].requires_prescription);
        assert_eq!(parsed.rows[1].unit, "each");
        assert_eq!(parsed.rows[1].line, 3);
    }

    #[test]
    fn every_problem_is_named_by_line_and_field_and_no_row_is_kept() {
        let file = "sku,name,sale_price,reorder_level\n\
                    A1,Aspirin,1.00,2\n\
                    ,Nameless,abc,-1\n\
                    A1,Twice,1,1\n\
                    C3,Short row\n";
        let parsed = parse_items(file);
        assert!(
            parsed.rows.is_empty(),
            "nothing is kept from a file with problems"
        );
        assert_eq!(
            problems(file),
            [
                (3, Some("sku".to_owned())),
                (3, Some("sale_price".to_owned())),
                (3, Some("reorder_level".to_owned())),
                (4, Some("sku".to_owned())),
                (5, None),
            ]
        );
        assert!(
            !parsed.problems[3].message.contains("A1"),
            "no cell value in a problem"
        );
    }

    #[test]
    fn a_spreadsheets_byte_order_mark_and_semicolons_are_understood() {
        let parsed = parse_items("\u{feff}SKU;Name;Sale price\nA1;Aspirin;\"2,50\"\n");
        assert_eq!(parsed.problem_count, 0, "{:?}", parsed.problems);
        assert_eq!(parsed.rows[0].sku, "A1");
        assert_eq!(parsed.rows[0].sale_price_cents, 250, "a decimal comma");
        let parsed = parse_items("sku;name;cost_price\nC3;Cream;1.234,5\n");
        assert_eq!(parsed.rows[0].cost_price_cents, 123_450);
        let parsed = parse_items("\u{feff}sku,name\nB2,Bandage\n");
        assert_eq!(parsed.rows[0].sku, "B2");
    }

    #[test]
    fn a_bad_header_names_what_is_wrong() {
        assert_eq!(
            problems("name,price\nx,1\n"),
            [(1, None), (1, Some("sku".to_owned()))]
        );
        assert_eq!(problems("sku,name,sku\n"), [(1, None)]);
        assert_eq!(problems("sku,name\n"), [(2, None)]);
        assert_eq!(problems("sku,name\nA\0,x\n"), [(2, Some("sku".to_owned()))]);
    }

    #[test]
    fn only_the_first_problems_are_kept_but_all_are_counted() {
        let mut file = String::from("sku,name\n");
        for _ in 0..250 {
            file.push_str(",no sku\n");
        }
        let parsed = parse_items(&file);
        assert_eq!(parsed.problem_count, 250);
        assert_eq!(
            parsed.problems.len(),
            control_plane::imports::MAX_PROBLEMS_KEPT
        );
    }
}
