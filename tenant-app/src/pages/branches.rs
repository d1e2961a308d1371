//! Branches in a browser (owner): the list, a form to add one (within the plan's branch limit),
//! renaming each in place, and closing one (it leaves the sale, purchase and stock-take forms;
//! its history stays) or opening it again, through the API's own handlers.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::{Signed, next_page};
use crate::catalog::{self, Branch, BranchChange, NewBranch};
use crate::common::{Body, Id, Page, Paged};

const TITLE: &str = "Branches";
const CURRENT: &str = "/branches";
const ORDER: &[&str] = &["code", "name", "address"];

#[derive(Debug, Default, Deserialize)]
pub struct BranchForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    address: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    cursor: Option<i64>,
}

fn content(listed: &Paged<Branch>, form: &BranchForm, problems: &Problems) -> Markup {
    let focus = problems.first(ORDER);
    html! {
        section class="card" {
            @if let Some(problem) = problems.problem("is_active") {
                p class="notice error" role="alert" id="branch-status-problem" {
                    "That branch stays open: " (problem) "."
                }
            }
            table class="stack" id="branches" {
                thead { tr { th { "Code" } th { "Name" } th { "Address" } th { "Status" } } }
                tbody {
                    @for branch in &listed.data {
                        tr data-branch=(branch.id) {
                            td data-label="Code" { (branch.code) }
                            td data-label="Name" {
                                form class="inline" method="post" action={ "/branches/" (branch.id) } {
                                    label class="visually-hidden" for={ "name-" (branch.id) } { "Name of branch " (branch.code) }
                                    input id={ "name-" (branch.id) } name="name" type="text" value=(branch.name) required;
                                    button class="secondary" type="submit" { "Rename" }
                                }
                            }
                            td data-label="Address" { (branch.address.as_deref().unwrap_or("")) }
                            td data-label="Status" {
                                @if branch.is_active { "Active" } @else { "Closed" }
                                " "
                                form class="inline" method="post" action={ "/branches/" (branch.id) "/active" } {
                                    input type="hidden" name="active" value=(!branch.is_active);
                                    button class="secondary" type="submit"
                                        aria-label={ (if branch.is_active { "Close" } else { "Reopen" }) " branch " (branch.code) } {
                                        @if branch.is_active { "Close" } @else { "Reopen" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (next_page(CURRENT, listed.next_cursor.map(|cursor| cursor.to_string())))
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Add a branch" }
            @if let Some(general) = &problems.general { p class="notice error" role="alert" id="branch-problem" { (general) } }
            form class="stacked" method="post" action=(CURRENT) novalidate {
                (Input::text("code", "Code", &form.code).required().hint("Short and unique, e.g. NORTH.").render(problems, focus))
                (Input::text("name", "Name", &form.name).required().render(problems, focus))
                (Input::text("address", "Address", &form.address).render(problems, focus))
                button class="primary" type="submit" { "Add branch" }
            }
        }
    }
}

async fn read(signed: &Signed, cursor: Option<i64>) -> Result<Paged<Branch>, Response> {
    let frame = signed.frame();
    signed.owner(&frame, (TITLE, CURRENT))?;
    let page = Page {
        limit: Some(Page::DEFAULT),
        cursor,
    };
    catalog::branches_page(&signed.0, &page)
        .await
        .map_err(|error| frame.refusal(TITLE, CURRENT, error))
}

/// `GET /branches?cursor=`.
pub async fn show(signed: Signed, Query(listing): Query<Listing>) -> Response {
    match read(&signed, listing.cursor).await {
        Ok(listed) => signed.frame().render(
            TITLE,
            CURRENT,
            content(&listed, &BranchForm::default(), &Problems::default()),
        ),
        Err(refused) => refused,
    }
}

/// `POST /branches`.
pub async fn add(signed: Signed, form: Result<Form<BranchForm>, FormRejection>) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let listed = match read(&signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let new = NewBranch {
        code: form.code.clone(),
        name: form.name.clone(),
        address: Some(form.address.trim().to_owned()).filter(|address| !address.is_empty()),
    };
    let result = catalog::create_branch(signed.0, Body(new)).await;
    frame.after_change((TITLE, CURRENT), CURRENT, result, |problems| {
        content(&listed, &form, problems)
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

/// `POST /branches/{id}` (`name`): renames it.
pub async fn rename(
    signed: Signed,
    id: Id,
    form: Result<Form<RenameForm>, FormRejection>,
) -> Response {
    let name = form.map(|Form(form)| form.name).unwrap_or_default();
    let change = BranchChange {
        name: Some(name),
        address: None,
        is_active: None,
    };
    apply(signed, id, change).await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActiveForm {
    #[serde(default)]
    active: bool,
}

/// `POST /branches/{id}/active` (`active`: `true` or `false`): opens or closes it.
pub async fn set_active(
    signed: Signed,
    id: Id,
    form: Result<Form<ActiveForm>, FormRejection>,
) -> Response {
    let active = form.map(|Form(form)| form.active).unwrap_or_default();
    let change = BranchChange {
        name: None,
        address: None,
        is_active: Some(active),
    };
    apply(signed, id, change).await
}

/// A change to one branch through the API, then the list; a refusal on the list page.
async fn apply(signed: Signed, id: Id, change: BranchChange) -> Response {
    let frame = signed.frame();
    let listed = match read(&signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let result = catalog::update_branch(signed.0, id, Body(change)).await;
    frame.after_change((TITLE, CURRENT), CURRENT, result, |problems| {
        content(&listed, &BranchForm::default(), problems)
    })
}
