//! Suppliers in a browser: the list, a form to add one and a page to change one (staff and
//! owners), through the API's own handlers.

use axum::Json;
use axum::extract::Form;
use axum::extract::rejection::FormRejection;
use axum::response::{IntoResponse as _, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::{Frame, Signed};
use crate::auth::Role;
use crate::catalog::{self, Supplier, SupplierFields};
use crate::common::{Body, Id, Page, Params};

const CURRENT: &str = "/suppliers";
const ORDER: &[&str] = &["name", "contact_name", "email", "phone"];

/// The supplier form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct SupplierForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    contact_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    phone: String,
}

impl SupplierForm {
    /// The fields of a new supplier: an empty field is left out.
    fn fields(&self) -> SupplierFields {
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        SupplierFields {
            name: Some(self.name.clone()),
            contact_name: optional(&self.contact_name),
            email: optional(&self.email),
            phone: optional(&self.phone),
        }
    }

    /// The change the edit form asks for: every field as typed, so an emptied field clears it.
    fn change(&self) -> SupplierFields {
        let typed = |text: &str| Some(text.trim().to_owned());
        SupplierFields {
            name: Some(self.name.clone()),
            contact_name: typed(&self.contact_name),
            email: typed(&self.email),
            phone: typed(&self.phone),
        }
    }

    fn of(supplier: &Supplier) -> Self {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        Self {
            name: supplier.name.clone(),
            contact_name: text(&supplier.contact_name),
            email: text(&supplier.email),
            phone: text(&supplier.phone),
        }
    }
}

fn content(suppliers: &[Supplier], role: Role, form: &SupplierForm, problems: &Problems) -> Markup {
    html! {
        section class="card" {
            @if suppliers.is_empty() {
                p class="muted" id="no-suppliers" { "No suppliers yet." }
            } @else {
                table class="stack" id="suppliers" {
                    thead { tr { th { "Name" } th { "Contact" } th { "Email" } th { "Phone" } } }
                    tbody {
                        @for supplier in suppliers {
                            tr data-supplier=(supplier.id) {
                                td data-label="Name" {
                                    @if role >= Role::Staff {
                                        a href={ "/suppliers/" (supplier.id) } { (supplier.name) }
                                    } @else {
                                        (supplier.name)
                                    }
                                }
                                td data-label="Contact" { (supplier.contact_name.as_deref().unwrap_or("")) }
                                td data-label="Email" { (supplier.email.as_deref().unwrap_or("")) }
                                td data-label="Phone" { (supplier.phone.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
        @if role >= Role::Staff {
            section class="card" style="margin-top:1rem" {
                h2 { "Add a supplier" }
                @if let Some(general) = &problems.general {
                    p class="notice error" role="alert" { (general) }
                }
                (supplier_form("/suppliers", form, problems, "Add supplier"))
            }
        }
    }
}

/// The supplier's fields as a form posting to `action`.
fn supplier_form(action: &str, form: &SupplierForm, problems: &Problems, submit: &str) -> Markup {
    let focus = problems.first(ORDER);
    html! {
        form class="stacked" method="post" action=(action) novalidate {
            (Input::text("name", "Name", &form.name).required().render(problems, focus))
            (Input::text("contact_name", "Contact person", &form.contact_name).render(problems, focus))
            (Input { kind: "email", ..Input::text("email", "Email", &form.email) }.render(problems, focus))
            (Input { kind: "tel", ..Input::text("phone", "Phone", &form.phone) }.render(problems, focus))
            button class="primary" type="submit" { (submit) }
        }
    }
}

/// The edit page's content: the form, any refusal of the whole change above it.
fn edit_content(id: i64, form: &SupplierForm, problems: &Problems) -> Markup {
    html! {
        section class="card" {
            @if let Some(general) = &problems.general {
                p class="notice error" role="alert" { (general) }
            }
            (supplier_form(&format!("/suppliers/{id}"), form, problems, "Save"))
            p { a href=(CURRENT) { "Back to suppliers" } }
        }
    }
}

/// `GET /suppliers/{id}` (staff and owners): the supplier's form.
pub async fn edit(signed: Signed, id: Id) -> Response {
    let frame = signed.frame();
    let supplier_id = id.0;
    if let Err(error) = signed.0.require(Role::Staff) {
        return frame.refusal("Supplier", CURRENT, error);
    }
    match catalog::get_supplier(signed.0, id).await {
        Ok(Json(supplier)) => frame.render(
            &supplier.name.clone(),
            CURRENT,
            edit_content(
                supplier_id,
                &SupplierForm::of(&supplier),
                &Problems::default(),
            ),
        ),
        Err(error) => frame.refusal("Supplier", CURRENT, error),
    }
}

/// `POST /suppliers/{id}`: saves the change, then back to the list; problems beside their fields.
pub async fn update(
    signed: Signed,
    id: Id,
    form: Result<Form<SupplierForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let supplier_id = id.0;
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let result = catalog::update_supplier(signed.0, id, Body(form.change())).await;
    frame.after_change(("Supplier", CURRENT), CURRENT, result, |problems| {
        edit_content(supplier_id, &form, problems)
    })
}

/// Every supplier (the list is short for a pharmacy; the API pages at 200).
async fn render(
    signed: Signed,
    frame: &Frame,
    form: &SupplierForm,
    problems: &Problems,
) -> Response {
    let listed = catalog::list_suppliers(
        signed.0,
        Params(Page {
            limit: Some(Page::MAX),
            cursor: None,
        }),
    )
    .await;
    match listed {
        Ok(Json(page)) => frame.render_form(
            "Suppliers",
            CURRENT,
            content(&page.data, frame.role, form, problems),
            problems,
        ),
        Err(error) => frame.refusal("Suppliers", CURRENT, error),
    }
}

/// `GET /suppliers`.
pub async fn list(signed: Signed) -> Response {
    let frame = signed.frame();
    render(
        signed,
        &frame,
        &SupplierForm::default(),
        &Problems::default(),
    )
    .await
}

/// `POST /suppliers`.
pub async fn create(signed: Signed, form: Result<Form<SupplierForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let fields = form.fields();
    let mut problems = Problems::default();
    if let Err(error) = fields.validate(true) {
        problems.merge(&error);
        return render(signed, &frame, &form, &problems).await;
    }
    match catalog::create_supplier(signed.0, Body(fields)).await {
        Ok(_) => Redirect::to(CURRENT).into_response(),
        Err(error) => frame.refusal("Suppliers", CURRENT, error),
    }
}
