//! Stock takes in a browser: start a count for a branch, fill the count sheet (every active
//! item with what the branch should hold), see the variances, and post it — which sets stock to
//! the counts, through the API's own stock-take handlers.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::form::Problems;
use super::lines::branches;
use super::{Frame, Signed};
use crate::auth::Role;
use crate::common::{Body, Id, db_error};
use crate::stock_takes::{self, CountInput, NewStockTake};

const CURRENT: &str = "/stock-takes";
/// Items on one count sheet.
const SHEET: i64 = 1000;

struct Session {
    id: i64,
    branch: String,
    status: String,
    started_at: DateTime<Utc>,
}

/// The page's checks, as the page: the module and, to change anything, staff.
async fn allowed(signed: &Signed, frame: &Frame, least: Role) -> Result<(), Response> {
    signed
        .may(frame, ("Stock takes", CURRENT), "stock_take", least)
        .await
}

/// `GET /stock-takes`: recent stock takes and the form to start one.
pub async fn list(signed: Signed) -> Response {
    let frame = signed.frame();
    if let Err(response) = allowed(&signed, &frame, Role::ReadOnly).await {
        return response;
    }
    let client = signed.0.client();
    let sessions = match client
        .query(
            "SELECT t.id, b.name, t.status, t.started_at FROM stock_take_sessions t \
             JOIN branches b ON b.id = t.branch_id ORDER BY t.id DESC LIMIT 20",
            &[],
        )
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(|row| Session {
                id: row.get(0),
                branch: row.get(1),
                status: row.get(2),
                started_at: row.get(3),
            })
            .collect::<Vec<_>>(),
        Err(error) => return db_error(error).into_response(),
    };
    let branches = match branches(client).await {
        Ok(branches) => branches,
        Err(error) => return error.into_response(),
    };
    let content = html! {
        @if frame.role >= Role::Staff {
            form class="toolbar" method="post" action="/stock-takes" {
                div {
                    label for="branch_id" { "Branch to count" }
                    " "
                    select id="branch_id" name="branch_id" {
                        @for branch in &branches { option value=(branch.id) { (branch.name) } }
                    }
                }
                button class="primary" type="submit" { "Start a stock take" }
            }
        }
        section class="card" {
            @if sessions.is_empty() {
                p class="muted" id="no-stock-takes" { "No stock takes yet." }
            } @else {
                table class="stack" id="stock-takes" {
                    thead { tr { th { "#" } th { "Branch" } th { "Status" } th { "Started" } } }
                    tbody {
                        @for session in &sessions {
                            tr {
                                td data-label="#" { a href={ "/stock-takes/" (session.id) } { (session.id) } }
                                td data-label="Branch" { (session.branch) }
                                td data-label="Status" { (session.status) }
                                td data-label="Started" { (session.started_at.format("%-d %b %Y %H:%M")) }
                            }
                        }
                    }
                }
            }
        }
    };
    frame.render("Stock takes", CURRENT, content)
}

#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    branch_id: String,
}

/// `POST /stock-takes`: starts one for the chosen branch.
pub async fn start(signed: Signed, form: Result<Form<StartForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let Ok(branch_id) = form.branch_id.parse::<i64>() else {
        return Redirect::to(CURRENT).into_response();
    };
    match stock_takes::start_stock_take(signed.0, Body(NewStockTake { branch_id })).await {
        Ok((_, Json(stock_take))) => {
            Redirect::to(&format!("/stock-takes/{}", stock_take.id)).into_response()
        }
        Err(error) => frame.refusal("Stock takes", CURRENT, error),
    }
}

struct SheetLine {
    item_id: i64,
    name: String,
    sku: String,
    expected: f64,
    counted: Option<f64>,
}

async fn sheet(
    client: &tokio_postgres::Client,
    id: i64,
) -> Result<Option<(Session, Vec<SheetLine>)>, web::ApiError> {
    let Some(row) = client
        .query_opt(
            "SELECT t.id, b.name, t.status, t.started_at, t.branch_id FROM stock_take_sessions t \
             JOIN branches b ON b.id = t.branch_id WHERE t.id = $1",
            &[&id],
        )
        .await
        .map_err(db_error)?
    else {
        return Ok(None);
    };
    let branch_id: i64 = row.get(4);
    let session = Session {
        id: row.get(0),
        branch: row.get(1),
        status: row.get(2),
        started_at: row.get(3),
    };
    let lines = client
        .query(
            "SELECT i.id, i.name, i.sku, \
                    coalesce(c.expected_quantity, s.quantity, 0)::float8 AS expected, \
                    c.counted_quantity::float8 AS counted \
             FROM items i \
             LEFT JOIN stock_levels s ON s.item_id = i.id AND s.branch_id = $2 \
             LEFT JOIN stock_take_counts c ON c.session_id = $1 AND c.item_id = i.id \
             WHERE i.is_active OR c.item_id IS NOT NULL ORDER BY i.name, i.id LIMIT $3",
            &[&id, &branch_id, &SHEET],
        )
        .await
        .map_err(db_error)?
        .iter()
        .map(|row| SheetLine {
            item_id: row.get(0),
            name: row.get(1),
            sku: row.get(2),
            expected: row.get(3),
            counted: row.get(4),
        })
        .collect();
    Ok(Some((session, lines)))
}

/// The count sheet: what each item should be, what was counted (kept as typed when refused),
/// and the variance.
fn sheet_content(
    session: &Session,
    lines: &[SheetLine],
    typed: &BTreeMap<String, String>,
    problems: &Problems,
    can_count: bool,
) -> Markup {
    let open = session.status == "open";
    let editable = open && can_count;
    let counted = lines.iter().filter(|line| line.counted.is_some()).count();
    html! {
        p { "Branch " strong { (session.branch) } " · started " (session.started_at.format("%-d %b %Y %H:%M"))
            " · " span id="status" { (session.status) } " · " (counted) " of " (lines.len()) " items counted" }
        @if let Some(general) = &problems.general { p class="notice error" role="alert" { (general) } }
        form class="card" method="post" action={ "/stock-takes/" (session.id) } novalidate {
            table class="stack" id="sheet" {
                thead { tr {
                    th { "Item" } th class="number" { "Expected" } th class="number" { "Counted" } th class="number" { "Variance" }
                } }
                tbody {
                    @for line in lines {
                        @let name = format!("count_{}", line.item_id);
                        @let value = typed.get(&name).cloned().or_else(|| line.counted.map(|c| c.to_string())).unwrap_or_default();
                        tr data-item=(line.item_id) {
                            td data-label="Item" { (line.name) " " span class="muted" { (line.sku) } }
                            td class="number" data-label="Expected" { (line.expected) }
                            td class="number" data-label="Counted" {
                                @if editable {
                                    label class="visually-hidden" for=(name) { "Counted " (line.name) }
                                    input id=(name) name=(name) value=(value) inputmode="decimal" size="7"
                                        aria-invalid=[problems.problem(&name).map(|_| "true")];
                                    @if let Some(problem) = problems.problem(&name) {
                                        p class="field-error" id={ (name) "-error" } { (problem) "." }
                                    }
                                } @else {
                                    @if let Some(counted) = line.counted { (counted) }
                                }
                            }
                            td class="number variance" data-label="Variance" {
                                @if let Some(counted) = line.counted { (format!("{:+}", counted - line.expected)) }
                            }
                        }
                    }
                }
            }
            @if editable { div class="actions" { button class="primary" type="submit" { "Save counts" } } }
        }
        @if editable && counted > 0 {
            form method="post" action={ "/stock-takes/" (session.id) "/post" } {
                p { "Posting sets each counted item's stock at this branch to its count. Items not counted keep their stock." }
                button type="submit" class="secondary" id="post-stock-take" { "Post stock take" }
            }
        }
    }
}

async fn show_sheet(
    signed: Signed,
    frame: &Frame,
    id: i64,
    typed: &BTreeMap<String, String>,
    problems: &Problems,
) -> Response {
    match sheet(signed.0.client(), id).await {
        Ok(Some((session, lines))) => frame.render_form(
            &format!("Stock take #{id}"),
            CURRENT,
            sheet_content(&session, &lines, typed, problems, frame.role >= Role::Staff),
            problems,
        ),
        Ok(None) => crate::common::not_found("stock take").into_response(),
        Err(error) => error.into_response(),
    }
}

/// `GET /stock-takes/{id}`.
pub async fn show(signed: Signed, Id(id): Id) -> Response {
    let frame = signed.frame();
    if let Err(response) = allowed(&signed, &frame, Role::ReadOnly).await {
        return response;
    }
    show_sheet(signed, &frame, id, &BTreeMap::new(), &Problems::default()).await
}

/// `POST /stock-takes/{id}`: saves every count typed on the sheet (each through the API's
/// count); unreadable ones are shown beside their items and saved none of them.
pub async fn save(
    signed: Signed,
    Id(id): Id,
    form: Result<Form<BTreeMap<String, String>>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    if let Err(response) = allowed(&signed, &frame, Role::Staff).await {
        return response;
    }
    let typed = form.map(|Form(form)| form).unwrap_or_default();
    let mut problems = Problems::default();
    let mut counts = Vec::new();
    for (name, value) in &typed {
        let (Some(item_id), value) = (
            name.strip_prefix("count_")
                .and_then(|id| id.parse::<i64>().ok()),
            value.trim(),
        ) else {
            continue;
        };
        if value.is_empty() {
            continue;
        }
        match value.parse::<f64>() {
            Ok(quantity) if quantity.is_finite() && (0.0..1e10).contains(&quantity) => {
                counts.push(CountInput {
                    item_id,
                    counted_quantity: quantity,
                });
            }
            _ => problems.add(name, "Count must be a number from 0"),
        }
    }
    if problems.is_empty() {
        for count in &counts {
            if let Err(error) = stock_takes::record(&signed.0, id, count).await {
                if error.fields.is_none() {
                    return frame.refusal("Stock takes", CURRENT, error);
                }
                problems.add(&format!("count_{}", count.item_id), &error.message);
            }
        }
    }
    if problems.is_empty() {
        return Redirect::to(&format!("/stock-takes/{id}")).into_response();
    }
    show_sheet(signed, &frame, id, &typed, &problems).await
}

/// `POST /stock-takes/{id}/post`: completes it; stock becomes the counts.
pub async fn post(signed: Signed, id: Id) -> Response {
    let frame = signed.frame();
    let stock_take = id.0;
    match stock_takes::complete_stock_take(signed.0, id).await {
        Ok(_) => Redirect::to(&format!("/stock-takes/{stock_take}")).into_response(),
        Err(error) => frame.refusal("Stock takes", CURRENT, error),
    }
}
