//! The quick sale screen: a branch and a few lines of "item (name, SKU or barcode) ×
//! quantity" (1 when left empty). "Check" finds each item, prices the lines, keeps a running
//! total and says on the line when the branch has too little stock; "Record sale" records it
//! through the API's own sale handler (stock checked under lock, all or nothing). Works without
//! any script; with the page's one script (`sale.js`, allowed by its hash) the lines are priced
//! as they are typed, through `GET /sales/price`, which prices exactly as "Check" does.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use serde::{Deserialize, Serialize};
use web::{ApiError, ErrorCode};

use super::form::Problems;
use super::lines::{Branch, branches, find_item};
use super::{Frame, Signed, money};
use crate::auth::Role;
use crate::common::Body;
use crate::trade::{self, NewSale, SaleLineInput};

const CURRENT: &str = "/sales/new";
/// Lines on the screen.
const LINES: usize = 6;

/// The sale form as typed: `branch_id`, `item_0`…, `quantity_0`…, and which button.
#[derive(Debug, Default, Deserialize)]
pub struct SaleForm {
    #[serde(default)]
    branch_id: String,
    #[serde(default)]
    action: String,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

impl SaleForm {
    /// The branch chosen, if it is one of `branches`.
    fn branch(&self, branches: &[Branch]) -> Option<i64> {
        self.branch_id
            .parse::<i64>()
            .ok()
            .filter(|id| branches.iter().any(|branch| branch.id == *id))
    }

    fn line(&self, index: usize) -> (&str, &str) {
        let get = |name: String| self.rest.get(&name).map(String::as_str).unwrap_or("");
        (
            get(format!("item_{index}")),
            get(format!("quantity_{index}")),
        )
    }
}

/// A line as understood: the item found, its price, the stock at the branch.
struct Priced {
    item_id: i64,
    name: String,
    unit_cents: i64,
    quantity: f64,
    stock: f64,
}

/// Reads and prices every filled line; problems by line (`item_N`, `quantity_N`).
async fn price(
    client: &tokio_postgres::Client,
    form: &SaleForm,
    branch_id: i64,
    problems: &mut Problems,
) -> Result<BTreeMap<usize, Priced>, ApiError> {
    let mut priced = BTreeMap::new();
    for index in 0..LINES {
        let (typed, quantity) = form.line(index);
        if typed.trim().is_empty() && quantity.trim().is_empty() {
            continue;
        }
        // A line with an item and no quantity sells one.
        let quantity = if quantity.trim().is_empty() {
            "1"
        } else {
            quantity
        };
        let quantity = match quantity.trim().parse::<f64>() {
            Ok(quantity) if quantity.is_finite() && quantity > 0.0 && quantity < 1e9 => quantity,
            _ => {
                problems.add(
                    &format!("quantity_{index}"),
                    "Quantity must be a number above 0",
                );
                continue;
            }
        };
        if typed.trim().is_empty() {
            problems.add(&format!("item_{index}"), "Item is needed for this quantity");
            continue;
        }
        match find_item(client, typed.trim(), branch_id).await? {
            Ok(found) => {
                let stock = found.stock;
                if stock + 1e-9 < quantity {
                    problems.add(
                        &format!("quantity_{index}"),
                        &format!("Not enough stock: only {stock} at this branch"),
                    );
                }
                priced.insert(
                    index,
                    Priced {
                        item_id: found.id,
                        name: found.name,
                        unit_cents: found.sale_price_cents,
                        quantity,
                        stock,
                    },
                );
            }
            Err(problem) => problems.add(&format!("item_{index}"), &problem),
        }
    }
    if priced.is_empty() && problems.is_empty() {
        problems.general = Some("Add at least one line: an item and a quantity.".to_owned());
    }
    Ok(priced)
}

/// The line's total as the sale will record it (see `crate::money`).
fn line_total(line: &Priced) -> i64 {
    let thousandths = crate::money::thousandths(line.quantity).unwrap_or_default();
    crate::money::line_total_cents(thousandths, line.unit_cents)
}

#[derive(Debug, Default, Deserialize)]
pub struct Recorded {
    recorded: Option<i64>,
    total: Option<i64>,
}

/// The branches to sell from, once the plan has sales and the user may sell; else the page's
/// refusal.
async fn allowed(signed: &Signed, frame: &Frame) -> Result<Vec<Branch>, Response> {
    signed
        .may(frame, ("New sale", CURRENT), "sales", Role::Staff)
        .await?;
    branches(signed.0.client())
        .await
        .map_err(IntoResponse::into_response)
}

/// `GET /sales/new`.
pub async fn new(signed: Signed, query: Result<Query<Recorded>, QueryRejection>) -> Response {
    let frame = signed.frame();
    let Query(recorded) = query.unwrap_or_default();
    let branches = match allowed(&signed, &frame).await {
        Ok(branches) => branches,
        Err(response) => return response,
    };
    let notice = recorded.recorded.map(|id| {
        format!(
            "Sale #{id} recorded: {}.",
            money(recorded.total.unwrap_or(0))
        )
    });
    frame.render(
        "New sale",
        CURRENT,
        sale_form(
            &branches,
            &SaleForm::default(),
            &BTreeMap::new(),
            &Problems::default(),
            notice,
        ),
    )
}

/// `POST /sales/new`: check (price the lines) or record.
pub async fn submit(signed: Signed, form: Result<Form<SaleForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let branches = match allowed(&signed, &frame).await {
        Ok(branches) => branches,
        Err(response) => return response,
    };
    let mut problems = Problems::default();
    let Some(branch_id) = form.branch(&branches) else {
        problems.add("branch_id", "must be one of the branches");
        return again(&frame, &branches, &form, &BTreeMap::new(), &problems);
    };
    let priced = match price(signed.0.client(), &form, branch_id, &mut problems).await {
        Ok(priced) => priced,
        Err(error) => return error.into_response(),
    };
    if form.action != "record" || !problems.is_empty() {
        return again(&frame, &branches, &form, &priced, &problems);
    }
    let lines: Vec<(usize, SaleLineInput)> = priced
        .iter()
        .map(|(index, line)| {
            (
                *index,
                SaleLineInput {
                    item_id: line.item_id,
                    quantity: line.quantity,
                    unit_price_cents: None,
                },
            )
        })
        .collect();
    let sent: Vec<usize> = lines.iter().map(|(index, _)| *index).collect();
    let sale = NewSale {
        branch_id,
        lines: lines.into_iter().map(|(_, line)| line).collect(),
    };
    match trade::create_sale(signed.0, Body(sale)).await {
        Ok((_, Json(sale))) => Redirect::to(&format!(
            "/sales/new?recorded={}&total={}",
            sale.id, sale.total_cents
        ))
        .into_response(),
        Err(error)
            if matches!(
                error.code,
                ErrorCode::InsufficientStock | ErrorCode::ValidationFailed
            ) =>
        {
            // The API names `lines[i].…` of the lines sent; put each problem on its screen line.
            let mut problems = Problems::default();
            for (field, problem) in error.fields.iter().flatten() {
                let screen = field
                    .strip_prefix("lines[")
                    .and_then(|rest| rest.split_once("]."))
                    .and_then(|(sent_index, what)| {
                        let index = sent.get(sent_index.parse::<usize>().ok()?)?;
                        Some(match what {
                            "item_id" => format!("item_{index}"),
                            _ => format!("quantity_{index}"),
                        })
                    });
                let problem = if error.code == ErrorCode::InsufficientStock {
                    format!("Not enough stock: {problem}")
                } else {
                    format!("This {problem}")
                };
                match screen {
                    Some(name) => problems.add(&name, &problem),
                    None => problems.general = Some(error.message.clone()),
                }
            }
            problems
                .general
                .get_or_insert_with(|| error.message.clone());
            again(&frame, &branches, &form, &priced, &problems)
        }
        Err(error) => frame.refusal("New sale", CURRENT, error),
    }
}

fn again(
    frame: &Frame,
    branches: &[Branch],
    form: &SaleForm,
    priced: &BTreeMap<usize, Priced>,
    problems: &Problems,
) -> Response {
    frame.render_form(
        "New sale",
        CURRENT,
        sale_form(branches, form, priced, problems, None),
        problems,
    )
}

fn sale_form(
    branches: &[Branch],
    form: &SaleForm,
    priced: &BTreeMap<usize, Priced>,
    problems: &Problems,
    notice: Option<String>,
) -> Markup {
    let total: i64 = priced.values().map(line_total).sum();
    let order: Vec<String> = std::iter::once("branch_id".to_owned())
        .chain((0..LINES).flat_map(|index| [format!("item_{index}"), format!("quantity_{index}")]))
        .collect();
    let order: Vec<&str> = order.iter().map(String::as_str).collect();
    let focus = problems.first(&order).or(Some("item_0"));
    let problem = |name: &str| problems.problem(name);
    html! {
        @if let Some(notice) = notice { p class="notice info" role="status" id="recorded" { (notice) } }
        @if let Some(general) = &problems.general { p class="notice error" role="alert" id="form-problem" { (general) } }
        form class="card sale" method="post" action="/sales/new" novalidate {
            label for="branch_id" { "Branch" }
            select id="branch_id" name="branch_id" aria-invalid=[problem("branch_id").map(|_| "true")] {
                @for branch in branches {
                    option value=(branch.id) selected[form.branch_id == branch.id.to_string()] { (branch.name) }
                }
            }
            @if let Some(error) = problem("branch_id") { p class="field-error" id="branch_id-error" { "Branch " (error) "." } }
            table class="stack lines" {
                thead { tr {
                    th { "Item (name, SKU or barcode)" } th class="number" { "Quantity" }
                    th class="number" { "Price" } th class="number" { "Line total" }
                } }
                tbody {
                    @for index in 0..LINES {
                        @let (typed, quantity) = form.line(index);
                        @let item_name = format!("item_{index}");
                        @let quantity_name = format!("quantity_{index}");
                        @let line = priced.get(&index);
                        tr id={ "line-" (index) } {
                            td data-label="Item" {
                                label class="visually-hidden" for=(item_name) { "Item " (index + 1) }
                                input id=(item_name) name=(item_name) value=(typed) autocomplete="off"
                                    autofocus[focus == Some(item_name.as_str())]
                                    aria-invalid=[problem(&item_name).map(|_| "true")];
                                div class="muted found" id={ "found-" (index) } { @if let Some(line) = line { (line.name) } }
                                (field_error(&item_name, problem(&item_name)))
                            }
                            td class="number" data-label="Quantity" {
                                label class="visually-hidden" for=(quantity_name) { "Quantity " (index + 1) }
                                input id=(quantity_name) name=(quantity_name) value=(quantity) inputmode="decimal" size="6"
                                    placeholder="1"
                                    autofocus[focus == Some(quantity_name.as_str())]
                                    aria-invalid=[problem(&quantity_name).map(|_| "true")];
                                div class="muted" id={ "stock-" (index) } { @if let Some(line) = line { (in_stock(line)) } }
                                (field_error(&quantity_name, problem(&quantity_name)))
                            }
                            td class="number" data-label="Price" id={ "price-" (index) } { @if let Some(line) = line { (money(line.unit_cents)) } }
                            td class="number" data-label="Line total" id={ "line-total-" (index) } { @if let Some(line) = line { (money(line_total(line))) } }
                        }
                    }
                }
            }
            p class="running-total" aria-live="polite" { "Total: " strong id="total" { (money(total)) } }
            div class="actions" {
                button type="submit" name="action" value="check" { "Check" }
                " "
                button class="primary" type="submit" name="action" value="record" { "Record sale" }
            }
        }
        script { (PreEscaped(SALE_SCRIPT)) }
    }
}

/// The page's one script: prices the lines as they are typed (see the module's doc).
pub(super) const SALE_SCRIPT: &str = include_str!("sale.js");

/// A line field's problem, in a paragraph that is always there (hidden while empty) so the
/// script can fill and clear it.
fn field_error(field: &str, problem: Option<&str>) -> Markup {
    html! {
        @match problem {
            Some(problem) => p class="field-error" id={ (field) "-error" } { (problem) "." },
            None => p class="field-error" id={ (field) "-error" } hidden {},
        }
    }
}

fn in_stock(line: &Priced) -> String {
    format!("{} in stock", line.stock)
}

/// One screen line as [`price_lines`] answers it.
#[derive(Debug, Serialize)]
struct PricedLine {
    index: usize,
    name: String,
    stock: String,
    price: String,
    line_total: String,
}

/// What the script shows: each priced line, the problems by field (`item_N`, `quantity_N`),
/// and the total.
#[derive(Debug, Serialize)]
struct Pricing {
    lines: Vec<PricedLine>,
    problems: BTreeMap<String, String>,
    total: String,
}

/// `GET /sales/price?branch_id=&item_0=&quantity_0=…` (the form as typed): the lines priced
/// exactly as "Check" prices them, as JSON for the page's script. Reads only.
pub async fn price_lines(
    signed: Signed,
    form: Result<Query<SaleForm>, QueryRejection>,
) -> Response {
    let frame = signed.frame();
    let Query(form) = form.unwrap_or_default();
    let branches = match allowed(&signed, &frame).await {
        Ok(branches) => branches,
        Err(response) => return response,
    };
    let Some(branch_id) = form.branch(&branches) else {
        return ApiError::new(ErrorCode::ValidationFailed, "No such branch.").into_response();
    };
    let mut problems = Problems::default();
    let priced = match price(signed.0.client(), &form, branch_id, &mut problems).await {
        Ok(priced) => priced,
        Err(error) => return error.into_response(),
    };
    let total: i64 = priced.values().map(line_total).sum();
    let pricing = Pricing {
        lines: priced
            .iter()
            .map(|(index, line)| PricedLine {
                index: *index,
                name: line.name.clone(),
                stock: in_stock(line),
                price: money(line.unit_cents),
                line_total: money(line_total(line)),
            })
            .collect(),
        problems: (0..LINES)
            .flat_map(|index| [format!("item_{index}"), format!("quantity_{index}")])
            .filter_map(|field| {
                let problem = problems.problem(&field)?.to_owned();
                Some((field, format!("{problem}.")))
            })
            .collect(),
        total: money(total),
    };
    let mut response = Json(pricing).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}
