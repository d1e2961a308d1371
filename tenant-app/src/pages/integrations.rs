//! Integration credentials in a browser (owner): add (or replace) one by name, list them
//! without their secrets (only the last four characters), remove one. Through the API's own
//! handlers.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;

use super::form::{Input, Problems};
use super::workspace::CURRENT;
use super::{Signed, next_page, row_action};
use crate::AppState;
use crate::common::{Body, Paged, TextPage};
use crate::integrations::{self, IntegrationView, PutIntegration};

const TITLE: &str = "Integration credentials";
const PATH: &str = "/workspace/integrations";

/// The form as typed; the secret is never typed back into a page.
#[derive(Default, Deserialize)]
pub struct CredentialForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    secret: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    cursor: Option<String>,
}

fn content(listed: &Paged<IntegrationView, String>, name: &str, problems: &Problems) -> Markup {
    let focus = problems.first(&["name", "secret"]);
    html! {
        section class="card" {
            @if listed.data.is_empty() {
                p class="muted" id="no-integrations" { "No credentials yet." }
            } @else {
                table class="stack" id="integrations" {
                    thead { tr { th { "Name" } th { "Ends in" } th { "Changed" } th { "Actions" } } }
                    tbody {
                        @for integration in &listed.data {
                            tr data-integration=(integration.name) {
                                td data-label="Name" { (integration.name) }
                                td data-label="Ends in" { code { "…" (integration.last4) } }
                                td data-label="Changed" { (integration.updated_at.format("%-d %b %Y %H:%M")) }
                                td data-label="Actions" {
                                    (row_action(&format!("{PATH}/{}/remove", integration.name), "Remove", &integration.name))
                                }
                            }
                        }
                    }
                }
            }
            (next_page(PATH, listed.next_cursor.clone()))
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Add or replace a credential" }
            @if let Some(general) = &problems.general { p class="notice error" role="alert" id="integration-problem" { (general) } }
            form class="stacked" method="post" action=(PATH) novalidate {
                (Input::text("name", "Name", name).required()
                    .hint("Lowercase letters, digits and _, e.g. shipping_api. The same name replaces it.")
                    .render(problems, focus))
                (Input { kind: "password", autocomplete: Some("off"), ..Input::text("secret", "Secret", "").required() }
                    .render(problems, focus))
                button class="primary" type="submit" { "Save credential" }
            }
        }
    }
}

async fn read(
    state: &AppState,
    signed: &Signed,
    cursor: Option<String>,
) -> Result<Paged<IntegrationView, String>, Response> {
    let page = TextPage::after(cursor);
    integrations::integrations_page(&state.router, &signed.0, &page)
        .await
        .map_err(|error| signed.frame().refusal(TITLE, CURRENT, error))
}

/// `GET /workspace/integrations?cursor=`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Query(listing): Query<Listing>,
) -> Response {
    let listed = read(&state, &signed, listing.cursor).await;
    signed.frame().listed((TITLE, CURRENT), listed, |listed| {
        content(listed, "", &Problems::default())
    })
}

/// `POST /workspace/integrations` (`name`, `secret`).
pub async fn put(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<CredentialForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let put = PutIntegration {
        secret: SecretString::from(form.secret),
    };
    let saved = integrations::put_integration(
        State(state.router.clone()),
        signed.0,
        Path(form.name.clone()),
        Body(put),
    )
    .await;
    frame.after_change((TITLE, CURRENT), PATH, saved, |problems| {
        content(&listed, &form.name, problems)
    })
}

/// `POST /workspace/integrations/{name}/remove`.
pub async fn remove(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
) -> Response {
    let frame = signed.frame();
    let listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let result =
        integrations::remove_integration(State(state.router.clone()), signed.0, Path(name)).await;
    frame.after_change((TITLE, CURRENT), PATH, result, |problems| {
        content(&listed, "", problems)
    })
}
