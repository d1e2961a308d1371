//! API keys in a browser (owner, `api_access`): create one (its secret is on the answering page
//! only, never again), list them (never a secret), revoke one. Through the API's own handlers.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::response::Response;
use control_plane::api_keys::ApiKey;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::form::{Input, Problems};
use super::workspace::CURRENT;
use super::{Signed, next_page, row_action};
use crate::AppState;
use crate::api_keys::{self, NewKeyRequest};
use crate::common::{Body, Paged, TextPage};

const TITLE: &str = "API keys";
const PATH: &str = "/workspace/api-keys";

#[derive(Debug, Default, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    cursor: Option<String>,
}

fn content(
    listed: &Paged<ApiKey, Uuid>,
    form: &KeyForm,
    problems: &Problems,
    secret: Option<&str>,
) -> Markup {
    html! {
        @if let Some(secret) = secret {
            section class="notice info" role="status" id="key-made" {
                p { strong { "Copy this key now: it is not shown again." } }
                code class="secret" id="key-secret" { (secret) }
            }
        }
        section class="card" {
            @if listed.data.is_empty() {
                p class="muted" id="no-keys" { "No API keys yet." }
            } @else {
                table class="stack" id="keys" {
                    thead { tr { th { "Name" } th { "Key starts" } th { "Role" } th { "Last used" } th { "Status" } th { "Actions" } } }
                    tbody {
                        @for key in &listed.data {
                            tr data-key=(key.id) {
                                td data-label="Name" { (key.name) }
                                td data-label="Key starts" { code { "silo_" (key.prefix) "_…" } }
                                td data-label="Role" { (if key.role == "staff" { "Staff" } else { "Read-only" }) }
                                td data-label="Last used" { @if let Some(at) = key.last_used_at { (at.format("%-d %b %Y %H:%M")) } @else { "Never" } }
                                td data-label="Status" { @if key.revoked_at.is_some() { "Revoked" } @else { "Active" } }
                                td data-label="Actions" {
                                    @if key.revoked_at.is_none() {
                                        (row_action(&format!("{PATH}/{}/revoke", key.id), "Revoke", &key.name))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (next_page(PATH, listed.next_cursor.map(|cursor| cursor.to_string())))
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Create a key" }
            @if let Some(general) = &problems.general { p class="notice error" role="alert" id="key-problem" { (general) } }
            form class="stacked" method="post" action=(PATH) novalidate {
                (Input::text("name", "Name", &form.name).required().hint("What uses it, e.g. the online shop.")
                    .render(problems, problems.first(&["name", "role"])))
                label for="role" { "Role" }
                select id="role" name="role" {
                    option value="read_only" selected[form.role != "staff"] { "Read-only" }
                    option value="staff" selected[form.role == "staff"] { "Staff" }
                }
                @if let Some(problem) = problems.problem("role") { p class="field-error" { "Role " (problem) "." } }
                button class="primary" type="submit" { "Create key" }
            }
        }
    }
}

async fn read(
    state: &AppState,
    signed: &Signed,
    cursor: Option<String>,
) -> Result<Paged<ApiKey, Uuid>, Response> {
    let page = TextPage::after(cursor);
    let frame = signed.frame();
    // The role first: staff need not hear about the plan.
    signed.owner(&frame, (TITLE, CURRENT))?;
    api_keys::api_keys_page(&state.router, &signed.0, &page)
        .await
        .map_err(|error| frame.refusal(TITLE, CURRENT, error))
}

/// `GET /workspace/api-keys?cursor=`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Query(listing): Query<Listing>,
) -> Response {
    let listed = read(&state, &signed, listing.cursor).await;
    signed.frame().listed((TITLE, CURRENT), listed, |listed| {
        content(listed, &KeyForm::default(), &Problems::default(), None)
    })
}

/// `POST /workspace/api-keys`: answers the page with the new key's secret, this once.
pub async fn create(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<KeyForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let mut listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let new = NewKeyRequest {
        name: form.name.clone(),
        role: Some(form.role.clone()).filter(|role| !role.is_empty()),
    };
    match api_keys::create_api_key(State(state.router.clone()), signed.0, Body(new)).await {
        Ok((_, axum::Json(created))) => {
            if listed.next_cursor.is_none() {
                listed.data.push(created.key.clone());
            }
            frame.render(
                TITLE,
                CURRENT,
                content(
                    &listed,
                    &KeyForm::default(),
                    &Problems::default(),
                    Some(&created.secret),
                ),
            )
        }
        Err(error) => frame.form_refused((TITLE, CURRENT), error, |problems| {
            content(&listed, &form, problems, None)
        }),
    }
}

/// `POST /workspace/api-keys/{id}/revoke`: refused at once on every router.
pub async fn revoke(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let frame = signed.frame();
    let listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let result = api_keys::revoke_api_key(State(state.router.clone()), signed.0, Path(id)).await;
    frame.after_change((TITLE, CURRENT), PATH, result, |problems| {
        content(&listed, &KeyForm::default(), problems, None)
    })
}
