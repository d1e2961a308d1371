//! Suppliers in a browser: the list, and a form to add one (staff and owners), through the
//! API's own handlers.

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
use crate::common::{Body, Page, Params};

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
    fn fields(&self) -> SupplierFields {
        let optional = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        SupplierFields {
            name: Some(self.name.clone()),
            contact_name: optional(&self.contact_name),
            email: optional(&self.email),
            phone: optional(&self.phone),
        }
    }
}

fn content(suppliers: &[Supplier], role: Role, form: &SupplierForm, problems: &Problems) -> Markup {
    let focus = problems.first(ORDER);
    html! {
        section class="card" {
            @if suppliers.is_empty() {
                p class="muted" id="no-suppliers" { "No suppliers yet." }
            } @else {
                table class="stack" id="suppliers" {
                    thead { tr { th { "Name" } th { "Contact" } th { "Email" } th { "Phone" } } }
                    tbody {
                        @for supplier in suppliers {
                            tr {
                                td data-label="Name" { (supplier.name) }
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
                form class="stacked" method="post" action="/suppliers" novalidate {
                    (Input::text("name", "Name", &form.name).required().render(problems, focus))
                    (Input::text("contact_name", "Contact person", &form.contact_name).render(problems, focus))
                    (Input { kind: "email", ..Input::text("email", "Email", &form.email) }.render(problems, focus))
                    (Input { kind: "tel", ..Input::text("phone", "Phone", &form.phone) }.render(problems, focus))
                    button class="primary" type="submit" { "Add supplier" }
                }
            }
        }
    }
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
