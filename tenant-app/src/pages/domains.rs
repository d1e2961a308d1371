//! Custom domains in a browser (owner): add one, see each with its verification state and the
//! TXT record to create, remove one. Through the API's own handlers (and its plan limit).

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::response::Response;
use control_plane::domains::{CHALLENGE_LABEL, CustomDomain};
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::workspace::CURRENT;
use super::{Signed, next_page};
use crate::AppState;
use crate::common::{Body, Paged, TextPage};
use crate::domains::{self, NewDomain};

const TITLE: &str = "Custom domains";
const PATH: &str = "/workspace/domains";

#[derive(Debug, Default, Deserialize)]
pub struct DomainForm {
    #[serde(default)]
    domain: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    cursor: Option<String>,
}

fn content(listed: &Paged<CustomDomain, String>, form: &DomainForm, problems: &Problems) -> Markup {
    html! {
        section class="card" {
            @if listed.data.is_empty() {
                p class="muted" id="no-domains" { "No custom domains yet." }
            } @else {
                table class="stack" id="domains" {
                    thead { tr { th { "Domain" } th { "Status" } th { "TXT record to create" } th { "Actions" } } }
                    tbody {
                        @for domain in &listed.data {
                            tr data-domain=(domain.domain) {
                                td data-label="Domain" { (domain.domain) }
                                td data-label="Status" class="status" {
                                    @if domain.verified { "Verified" } @else { "Waiting for verification" }
                                }
                                td data-label="TXT record" {
                                    code class="txt-name" { (CHALLENGE_LABEL) "." (domain.domain) }
                                    " = "
                                    code class="txt-value" { (domain.verification_token) }
                                }
                                td data-label="Actions" {
                                    form class="inline" method="post" action={ (PATH) "/remove" } {
                                        input type="hidden" name="domain" value=(domain.domain);
                                        button class="secondary" type="submit" aria-label={ "Remove " (domain.domain) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (next_page(PATH, listed.next_cursor.clone()))
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Add a domain" }
            p class="muted" { "Create the TXT record shown for it and point the domain at this service; it serves your workspace once verified." }
            @if let Some(general) = &problems.general { p class="notice error" role="alert" id="domain-problem" { (general) } }
            form class="stacked" method="post" action=(PATH) novalidate {
                (Input::text("domain", "Domain", &form.domain).required().hint("e.g. shop.example.com")
                    .render(problems, problems.first(&["domain"])))
                button class="primary" type="submit" { "Add domain" }
            }
        }
    }
}

async fn read(
    state: &AppState,
    signed: &Signed,
    cursor: Option<String>,
) -> Result<Paged<CustomDomain, String>, Response> {
    let page = TextPage::after(cursor);
    domains::domains_page(&state.router, &signed.0, &page)
        .await
        .map_err(|error| signed.frame().refusal(TITLE, CURRENT, error))
}

/// `GET /workspace/domains?cursor=`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Query(listing): Query<Listing>,
) -> Response {
    let listed = read(&state, &signed, listing.cursor).await;
    signed.frame().listed((TITLE, CURRENT), listed, |listed| {
        content(listed, &DomainForm::default(), &Problems::default())
    })
}

/// `POST /workspace/domains`.
pub async fn add(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<DomainForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let new = NewDomain {
        domain: form.domain.clone(),
    };
    let result = domains::add_domain(State(state.router.clone()), signed.0, Body(new)).await;
    frame.after_change((TITLE, CURRENT), PATH, result, |problems| {
        content(&listed, &form, problems)
    })
}

/// `POST /workspace/domains/remove` (`domain`): it stops serving the workspace at once.
pub async fn remove(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<DomainForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let listed = match read(&state, &signed, None).await {
        Ok(listed) => listed,
        Err(refused) => return refused,
    };
    let removed = domains::remove_domain(
        State(state.router.clone()),
        signed.0,
        axum::extract::Path(form.domain),
    )
    .await;
    frame.after_change((TITLE, CURRENT), PATH, removed, |problems| {
        content(&listed, &DomainForm::default(), problems)
    })
}
