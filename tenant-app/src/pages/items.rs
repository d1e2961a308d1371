//! Items in a browser: search and page through them, add one, change one, deactivate one. Each
//! page calls the same handler as the JSON API (`crate::catalog`), so it shows and does exactly
//! what the API allows the same user: module, role, plan limit and validation included.

use axum::Json;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query};
use axum::response::{IntoResponse as _, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use web::{ApiError, ErrorCode};

use super::form::{Input, Problems, money_value, parse_money};
use super::{Frame, Signed, money};
use crate::auth::Role;
use crate::catalog::{self, Item, ItemFields, ItemQuery};
use crate::common::{Body, Id, Params};

const PAGE_SIZE: i64 = 50;
const CURRENT: &str = "/items";
/// The form's fields, top to bottom (for focusing the first error).
const ORDER: &[&str] = &[
    "sku",
    "name",
    "barcode",
    "unit",
    "cost_price_cents",
    "sale_price_cents",
    "reorder_level",
];

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<i64>,
    /// The id of an item just added or changed, to say so.
    saved: Option<i64>,
}

/// `GET /items?q=&cursor=`.
pub async fn list(signed: Signed, query: Result<Query<ListQuery>, QueryRejection>) -> Response {
    let frame = signed.frame();
    let Query(query) = query.unwrap_or_default();
    let q = query.q.filter(|q| !q.trim().is_empty());
    let listed = catalog::list_items(
        signed.0,
        Params(ItemQuery {
            limit: Some(PAGE_SIZE),
            cursor: query.cursor,
            q: q.clone(),
        }),
    )
    .await;
    match listed {
        Ok(Json(paged)) => {
            let next = paged.next_cursor.map(|cursor| {
                let mut pairs = vec![("cursor", cursor.to_string())];
                if let Some(q) = &q {
                    pairs.push(("q", q.clone()));
                }
                format!(
                    "/items?{}",
                    serde_urlencoded::to_string(pairs).unwrap_or_default()
                )
            });
            let content = html! {
                @if query.saved.is_some() { p class="notice info" role="status" { "Saved." } }
                div class="toolbar" {
                    form method="get" action="/items" role="search" {
                        label for="q" { "Search items" }
                        input id="q" name="q" type="search" value=[q.as_deref()]
                            placeholder="Name, SKU or barcode";
                        button type="submit" { "Search" }
                    }
                    @if frame.role >= Role::Staff {
                        a class="button" href="/items/new" { "New item" }
                        " "
                        a class="button" href="/items/import" { "Import from CSV" }
                    }
                }
                section class="card" {
                    @if paged.data.is_empty() {
                        p class="muted" id="no-items" {
                            @if q.is_some() { "No item matches your search." } @else { "No items yet." }
                        }
                    } @else {
                        (items_table(&paged.data, frame.role >= Role::Staff))
                    }
                    @if let Some(next) = next { p { a href=(next) rel="next" { "Next page" } } }
                }
            };
            frame.render("Items", CURRENT, content)
        }
        Err(error) => frame.refusal("Items", CURRENT, error),
    }
}

fn items_table(items: &[Item], can_edit: bool) -> Markup {
    html! {
        table class="stack" id="items" {
            thead { tr {
                th { "SKU" } th { "Name" } th { "Unit" } th class="number" { "Price" }
                th class="number" { "Reorder at" } th { "Status" }
            } }
            tbody {
                @for item in items {
                    tr data-item=(item.id) {
                        td data-label="SKU" { (item.sku) }
                        td data-label="Name" {
                            @if can_edit { a href={ "/items/" (item.id) } { (item.name) } } @else { (item.name) }
                        }
                        td data-label="Unit" { (item.unit) }
                        td class="number" data-label="Price" { (money(item.sale_price_cents)) }
                        td class="number" data-label="Reorder at" { (item.reorder_level) }
                        td data-label="Status" { @if item.is_active { "Active" } @else { "Inactive" } }
                    }
                }
            }
        }
    }
}

/// The item form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct ItemForm {
    #[serde(default)]
    sku: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    barcode: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    cost_price_cents: String,
    #[serde(default)]
    sale_price_cents: String,
    #[serde(default)]
    reorder_level: String,
    requires_prescription: Option<String>,
}

impl ItemForm {
    fn of(item: &Item) -> Self {
        Self {
            sku: item.sku.clone(),
            name: item.name.clone(),
            barcode: item.barcode.clone().unwrap_or_default(),
            unit: item.unit.clone(),
            cost_price_cents: money_value(item.cost_price_cents),
            sale_price_cents: money_value(item.sale_price_cents),
            reorder_level: item.reorder_level.to_string(),
            requires_prescription: item.requires_prescription.then(|| "on".to_owned()),
        }
    }

    /// The API's fields and everything wrong with them at once: what cannot be read (amounts,
    /// numbers) and what the API's validation refuses.
    fn fields(&self, creating: bool, problems: &mut Problems) -> ItemFields {
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        let mut amount = |field: &str, text: &str| {
            if text.trim().is_empty() {
                return None;
            }
            let cents = parse_money(text);
            if cents.is_none() {
                problems.add(field, "must be an amount such as 12.50");
            }
            cents
        };
        let cost_price_cents = amount("cost_price_cents", &self.cost_price_cents);
        let sale_price_cents = amount("sale_price_cents", &self.sale_price_cents);
        let reorder_level = optional(&self.reorder_level).and_then(|text| {
            let level = text.parse::<f64>().ok().filter(|level| level.is_finite());
            if level.is_none() {
                problems.add("reorder_level", "must be a number such as 10");
            }
            level
        });
        let fields = ItemFields {
            sku: Some(self.sku.clone()),
            name: Some(self.name.clone()),
            barcode: optional(&self.barcode),
            unit: optional(&self.unit),
            cost_price_cents,
            sale_price_cents,
            reorder_level,
            requires_prescription: Some(self.requires_prescription.is_some()),
            ..ItemFields::default()
        };
        if let Err(error) = fields.validate(creating) {
            problems.merge(&error);
        }
        fields
    }
}

/// The add or change form, with what was typed and what is wrong with it.
fn item_form(action: &str, form: &ItemForm, problems: &Problems, submit: &str) -> Markup {
    let focus = problems.first(ORDER);
    html! {
        section class="card" {
            @if let Some(general) = &problems.general {
                p class="notice error" role="alert" id="form-problem" { (general) }
            }
            form class="stacked" method="post" action=(action) novalidate {
                (Input::text("sku", "SKU", &form.sku).required().render(problems, focus))
                (Input::text("name", "Name", &form.name).required().render(problems, focus))
                (Input::text("barcode", "Barcode", &form.barcode).render(problems, focus))
                (Input::text("unit", "Unit", &form.unit).hint("each, box, bottle… (default: each)").render(problems, focus))
                (Input::text("cost_price_cents", "Cost price", &form.cost_price_cents).decimal().render(problems, focus))
                (Input::text("sale_price_cents", "Sale price", &form.sale_price_cents).decimal().render(problems, focus))
                (Input::text("reorder_level", "Reorder level", &form.reorder_level).decimal()
                    .hint("The dashboard lists the item when stock falls to this level.").render(problems, focus))
                label class="check" {
                    input type="checkbox" name="requires_prescription" checked[form.requires_prescription.is_some()];
                    " Requires a prescription"
                }
                button class="primary" type="submit" { (submit) }
            }
        }
    }
}

/// `GET /items/new`.
pub async fn new(signed: Signed) -> Response {
    let frame = signed.frame();
    if let Err(response) = signed
        .may(&frame, ("New item", CURRENT), "inventory", Role::Staff)
        .await
    {
        return response;
    }
    let form = ItemForm::default();
    frame.render(
        "New item",
        CURRENT,
        item_form("/items/new", &form, &Problems::default(), "Add item"),
    )
}

/// What a refused save shows: the form again with its problems (422), or the refusal's page.
fn refused(frame: &Frame, title: &str, action: &str, form: &ItemForm, error: ApiError) -> Response {
    if matches!(
        error.code,
        ErrorCode::ValidationFailed | ErrorCode::AlreadyExists | ErrorCode::PlanLimitReached
    ) {
        let status = error.status();
        let mut response = frame.render(
            title,
            CURRENT,
            item_form(action, form, &Problems::of(&error), "Save"),
        );
        *response.status_mut() = status;
        return response;
    }
    frame.refusal(title, CURRENT, error)
}

/// Reads the posted form; a body that is not a form is an empty one (every field then says
/// what it needs).
fn posted(form: Result<Form<ItemForm>, FormRejection>) -> ItemForm {
    form.map(|Form(form)| form).unwrap_or_default()
}

/// `POST /items/new`.
pub async fn create(signed: Signed, form: Result<Form<ItemForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = posted(form);
    let mut problems = Problems::default();
    let fields = form.fields(true, &mut problems);
    if !problems.is_empty() {
        return frame.render_form(
            "New item",
            CURRENT,
            item_form("/items/new", &form, &problems, "Add item"),
            &problems,
        );
    }
    match catalog::create_item(signed.0, Body(fields)).await {
        Ok((_, Json(item))) => Redirect::to(&format!("/items?saved={}", item.id)).into_response(),
        Err(error) => refused(&frame, "New item", "/items/new", &form, error),
    }
}

/// `GET /items/{id}`: the item's form, for staff and owners.
pub async fn edit(signed: Signed, id: Id) -> Response {
    let frame = signed.frame();
    let item_id = id.0;
    if let Err(error) = signed.0.require(Role::Staff) {
        return frame.refusal("Item", CURRENT, error);
    }
    match catalog::get_item(signed.0, id).await {
        Ok(Json(item)) => frame.render(
            &item.name.clone(),
            CURRENT,
            edit_content(
                item_id,
                &ItemForm::of(&item),
                &Problems::default(),
                item.is_active,
            ),
        ),
        Err(error) => frame.refusal("Item", CURRENT, error),
    }
}

fn edit_content(id: i64, form: &ItemForm, problems: &Problems, active: bool) -> Markup {
    let action = format!("/items/{id}");
    html! {
        (item_form(&action, form, problems, "Save"))
        @if active {
            form method="post" action={ "/items/" (id) "/deactivate" } {
                button type="submit" class="secondary" { "Deactivate item" }
                " "
                span class="muted" { "It stays in past sales and purchases; it can no longer be sold." }
            }
        }
    }
}

/// `POST /items/{id}`.
pub async fn update(
    signed: Signed,
    id: Id,
    form: Result<Form<ItemForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let item_id = id.0;
    let form = posted(form);
    let mut problems = Problems::default();
    let fields = form.fields(false, &mut problems);
    if !problems.is_empty() {
        return frame.render_form(
            "Item",
            CURRENT,
            edit_content(item_id, &form, &problems, false),
            &problems,
        );
    }
    match catalog::update_item(signed.0, id, Body(fields)).await {
        Ok(Json(item)) => Redirect::to(&format!("/items?saved={}", item.id)).into_response(),
        Err(error) => refused(&frame, "Item", &format!("/items/{item_id}"), &form, error),
    }
}

/// `POST /items/{id}/deactivate`.
pub async fn deactivate(signed: Signed, id: Id) -> Response {
    let frame = signed.frame();
    let item_id = id.0;
    match catalog::deactivate_item(signed.0, id).await {
        Ok(_) => Redirect::to(&format!("/items?saved={item_id}")).into_response(),
        Err(error) => frame.refusal("Item", CURRENT, error),
    }
}
