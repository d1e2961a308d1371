//! Receiving stock: a supplier, a branch, a reference, and lines of "item × quantity at a unit
//! cost" (the item's cost price when left empty). "Check" finds and prices the lines; "Receive"
//! records the purchase and raises stock through the API's own handler, all or nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use web::ApiError;

use super::form::{Problems, money_value, parse_money};
use super::lines::{Branch, branches, find_item};
use super::{Frame, Signed, money};
use crate::auth::Role;
use crate::common::{Body, db_error};
use crate::trade::{self, NewPurchase, PurchaseLineInput};

const CURRENT: &str = "/purchases/new";
const LINES: usize = 6;

/// The form as typed: `supplier_id`, `branch_id`, `reference`, `item_N`, `quantity_N`,
/// `cost_N`, and which button.
#[derive(Debug, Default, Deserialize)]
pub struct PurchaseForm {
    #[serde(default)]
    supplier_id: String,
    #[serde(default)]
    branch_id: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    action: String,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

impl PurchaseForm {
    fn get(&self, name: &str, index: usize) -> &str {
        self.rest
            .get(&format!("{name}_{index}"))
            .map_or("", String::as_str)
    }
}

struct Costed {
    item_id: i64,
    name: String,
    quantity: f64,
    unit_cost_cents: i64,
}

struct Choices {
    suppliers: Vec<(i64, String)>,
    branches: Vec<Branch>,
}

/// The suppliers and branches to choose from, once the plan has purchases and the user may
/// receive stock; else the page's refusal.
async fn allowed(signed: &Signed, frame: &Frame) -> Result<Choices, Response> {
    signed
        .may(frame, ("Receive stock", CURRENT), "purchases", Role::Staff)
        .await?;
    let client = signed.0.client();
    let suppliers = client
        .query("SELECT id, name FROM suppliers ORDER BY name, id", &[])
        .await
        .map_err(|error| db_error(error).into_response())?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let branches = branches(client)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(Choices {
        suppliers,
        branches,
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct Received {
    received: Option<i64>,
    total: Option<i64>,
}

/// `GET /purchases/new`.
pub async fn new(signed: Signed, query: Result<Query<Received>, QueryRejection>) -> Response {
    let frame = signed.frame();
    let Query(received) = query.unwrap_or_default();
    let choices = match allowed(&signed, &frame).await {
        Ok(choices) => choices,
        Err(response) => return response,
    };
    let notice = received.received.map(|id| {
        format!(
            "Purchase #{id} received: {}.",
            money(received.total.unwrap_or(0))
        )
    });
    frame.render(
        "Receive stock",
        CURRENT,
        purchase_form(
            &choices,
            &PurchaseForm::default(),
            &BTreeMap::new(),
            &Problems::default(),
            notice,
        ),
    )
}

/// Reads every filled line; problems by line.
async fn cost(
    client: &tokio_postgres::Client,
    form: &PurchaseForm,
    branch_id: i64,
    problems: &mut Problems,
) -> Result<BTreeMap<usize, Costed>, ApiError> {
    let mut lines = BTreeMap::new();
    for index in 0..LINES {
        let (typed, quantity, unit_cost) = (
            form.get("item", index).trim(),
            form.get("quantity", index).trim(),
            form.get("cost", index).trim(),
        );
        if typed.is_empty() && quantity.is_empty() && unit_cost.is_empty() {
            continue;
        }
        let quantity = quantity
            .parse::<f64>()
            .ok()
            .filter(|q| q.is_finite() && *q > 0.0 && *q < 1e9);
        if quantity.is_none() {
            problems.add(
                &format!("quantity_{index}"),
                "Quantity must be a number above 0",
            );
        }
        let typed_cost = if unit_cost.is_empty() {
            None
        } else {
            let cents = parse_money(unit_cost);
            if cents.is_none() {
                problems.add(
                    &format!("cost_{index}"),
                    "Unit cost must be an amount such as 1.20",
                );
            }
            cents
        };
        if typed.is_empty() {
            problems.add(&format!("item_{index}"), "Item is needed on this line");
            continue;
        }
        match find_item(client, typed, branch_id).await? {
            Ok(found) => {
                if let Some(quantity) = quantity {
                    lines.insert(
                        index,
                        Costed {
                            item_id: found.id,
                            name: found.name,
                            quantity,
                            unit_cost_cents: typed_cost.unwrap_or(found.cost_price_cents),
                        },
                    );
                }
            }
            Err(problem) => problems.add(&format!("item_{index}"), &problem),
        }
    }
    if lines.is_empty() && problems.is_empty() {
        problems.general = Some("Add at least one line: an item and a quantity.".to_owned());
    }
    Ok(lines)
}

/// The line's total as the purchase will record it (see `crate::money`).
fn line_total(line: &Costed) -> i64 {
    let thousandths = crate::money::thousandths(line.quantity).unwrap_or_default();
    crate::money::line_total_cents(thousandths, line.unit_cost_cents)
}

/// `POST /purchases/new`: check or receive.
pub async fn submit(signed: Signed, form: Result<Form<PurchaseForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let choices = match allowed(&signed, &frame).await {
        Ok(choices) => choices,
        Err(response) => return response,
    };
    let mut problems = Problems::default();
    let supplier_id = form
        .supplier_id
        .parse::<i64>()
        .ok()
        .filter(|id| choices.suppliers.iter().any(|(known, _)| known == id));
    if supplier_id.is_none() {
        problems.add("supplier_id", "Supplier must be one of your suppliers");
    }
    let branch_id = form
        .branch_id
        .parse::<i64>()
        .ok()
        .filter(|id| choices.branches.iter().any(|branch| branch.id == *id));
    let Some(branch_id) = branch_id else {
        problems.add("branch_id", "Branch must be one of the branches");
        return again(&frame, &choices, &form, &BTreeMap::new(), &problems);
    };
    let lines = match cost(signed.0.client(), &form, branch_id, &mut problems).await {
        Ok(lines) => lines,
        Err(error) => return error.into_response(),
    };
    let (Some(supplier_id), true, "receive") =
        (supplier_id, problems.is_empty(), form.action.as_str())
    else {
        return again(&frame, &choices, &form, &lines, &problems);
    };
    let purchase = NewPurchase {
        branch_id,
        supplier_id,
        reference: Some(form.reference.trim().to_owned()).filter(|r| !r.is_empty()),
        lines: lines
            .values()
            .map(|line| PurchaseLineInput {
                item_id: line.item_id,
                quantity: line.quantity,
                unit_cost_cents: line.unit_cost_cents,
            })
            .collect(),
    };
    match trade::create_purchase(signed.0, Body(purchase)).await {
        Ok((_, Json(purchase))) => Redirect::to(&format!(
            "/purchases/new?received={}&total={}",
            purchase.id, purchase.total_cents
        ))
        .into_response(),
        Err(error) if error.fields.is_some() => {
            let mut problems = Problems::of(&error);
            problems.general = Some(error.message.clone());
            again(&frame, &choices, &form, &lines, &problems)
        }
        Err(error) => frame.refusal("Receive stock", CURRENT, error),
    }
}

fn again(
    frame: &Frame,
    choices: &Choices,
    form: &PurchaseForm,
    lines: &BTreeMap<usize, Costed>,
    problems: &Problems,
) -> Response {
    frame.render_form(
        "Receive stock",
        CURRENT,
        purchase_form(choices, form, lines, problems, None),
        problems,
    )
}

fn purchase_form(
    choices: &Choices,
    form: &PurchaseForm,
    lines: &BTreeMap<usize, Costed>,
    problems: &Problems,
    notice: Option<String>,
) -> Markup {
    let total: i64 = lines.values().map(line_total).sum();
    let problem = |name: &str| problems.problem(name);
    let error = |name: &str| {
        html! { @if let Some(error) = problem(name) { p class="field-error" id={ (name) "-error" } { (error) "." } } }
    };
    html! {
        @if let Some(notice) = notice { p class="notice info" role="status" id="received" { (notice) } }
        @if let Some(general) = &problems.general { p class="notice error" role="alert" id="form-problem" { (general) } }
        @if choices.suppliers.is_empty() {
            p class="notice info" id="no-suppliers" { "Add a supplier first: " a href="/suppliers" { "Suppliers" } "." }
        }
        form class="card sale" method="post" action="/purchases/new" novalidate {
            label for="supplier_id" { "Supplier" }
            select id="supplier_id" name="supplier_id" aria-invalid=[problem("supplier_id").map(|_| "true")] {
                @for (id, name) in &choices.suppliers {
                    option value=(id) selected[form.supplier_id == id.to_string()] { (name) }
                }
            }
            (error("supplier_id"))
            " "
            label for="branch_id" { "Branch" }
            select id="branch_id" name="branch_id" {
                @for branch in &choices.branches {
                    option value=(branch.id) selected[form.branch_id == branch.id.to_string()] { (branch.name) }
                }
            }
            (error("branch_id"))
            " "
            label for="reference" { "Reference " span class="muted" { "(optional)" } }
            input id="reference" name="reference" value=(form.reference) placeholder="Delivery note or invoice";
            table class="stack lines" {
                thead { tr {
                    th { "Item (name, SKU or barcode)" } th class="number" { "Quantity" }
                    th class="number" { "Unit cost" } th class="number" { "Line total" }
                } }
                tbody {
                    @for index in 0..LINES {
                        @let (item, quantity, cost) = (format!("item_{index}"), format!("quantity_{index}"), format!("cost_{index}"));
                        @let line = lines.get(&index);
                        tr id={ "line-" (index) } {
                            td data-label="Item" {
                                label class="visually-hidden" for=(item) { "Item " (index + 1) }
                                input id=(item) name=(item) value=(form.get("item", index)) autocomplete="off"
                                    autofocus[index == 0] aria-invalid=[problem(&item).map(|_| "true")];
                                @if let Some(line) = line { div class="muted found" { (line.name) } }
                                (error(&item))
                            }
                            td class="number" data-label="Quantity" {
                                label class="visually-hidden" for=(quantity) { "Quantity " (index + 1) }
                                input id=(quantity) name=(quantity) value=(form.get("quantity", index)) inputmode="decimal" size="6"
                                    aria-invalid=[problem(&quantity).map(|_| "true")];
                                (error(&quantity))
                            }
                            td class="number" data-label="Unit cost" {
                                label class="visually-hidden" for=(cost) { "Unit cost " (index + 1) }
                                input id=(cost) name=(cost) inputmode="decimal" size="8"
                                    value=(line.filter(|_| form.get("cost", index).is_empty()).map(|line| money_value(line.unit_cost_cents)).unwrap_or_else(|| form.get("cost", index).to_owned()))
                                    aria-invalid=[problem(&cost).map(|_| "true")];
                                (error(&cost))
                            }
                            td class="number" data-label="Line total" { @if let Some(line) = line { (money(line_total(line))) } }
                        }
                    }
                }
            }
            p class="running-total" { "Total: " strong id="total" { (money(total)) } }
            div class="actions" {
                button type="submit" name="action" value="check" { "Check" }
                " "
                button class="primary" type="submit" name="action" value="receive" { "Receive stock" }
            }
        }
    }
}
