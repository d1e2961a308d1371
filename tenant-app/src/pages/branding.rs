//! Branding in a browser (owner, `custom_branding`): the workspace's name, colour and logo URL,
//! shown on every page (and the sign-in page) once saved. An empty field goes back to its
//! default. Saved through the API's own handler, so every problem shows beside its field.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::response::Response;
use control_plane::branding::Branding;
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::workspace::CURRENT;
use super::{Frame, Signed};
use crate::AppState;
use crate::auth::Role;
use crate::branding::{CUSTOM_BRANDING_MODULE, put_branding};
use crate::common::Body;

const TITLE: &str = "Branding";
const ORDER: &[&str] = &["display_name", "primary_color", "logo_url"];

#[derive(Debug, Default, Deserialize)]
pub struct BrandingForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    primary_color: String,
    #[serde(default)]
    logo_url: String,
}

impl BrandingForm {
    fn of(own: Option<&Branding>) -> Self {
        let own = own.cloned().unwrap_or_default();
        Self {
            display_name: own.display_name.unwrap_or_default(),
            primary_color: own.primary_color.unwrap_or_default(),
            logo_url: own.logo_url.unwrap_or_default(),
        }
    }

    /// Empty fields are left out: back to their defaults.
    fn branding(&self) -> Branding {
        let set = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
        Branding {
            display_name: set(&self.display_name),
            logo_url: set(&self.logo_url),
            primary_color: set(&self.primary_color),
        }
    }
}

fn content(form: &BrandingForm, problems: &Problems, saved: bool) -> Markup {
    let focus = problems.first(ORDER);
    html! {
        @if saved { p class="notice info" role="status" id="saved" { "Saved. Every page now shows it." } }
        section class="card" {
            @if let Some(general) = &problems.general { p class="notice error" role="alert" { (general) } }
            form class="stacked" method="post" action="/workspace/branding" novalidate {
                (Input::text("display_name", "Name shown", &form.display_name)
                    .hint("Leave empty to show the workspace's own name.").render(problems, focus))
                (Input::text("primary_color", "Colour", &form.primary_color)
                    .hint("As #rrggbb, e.g. #1a7f5a. Leave empty for the default.").render(problems, focus))
                (Input { kind: "url", ..Input::text("logo_url", "Logo URL", &form.logo_url)
                    .hint("An https:// address of an image. Leave empty for none.") }.render(problems, focus))
                button class="primary" type="submit" { "Save branding" }
            }
        }
    }
}

/// Owners only (said first: staff need not hear about the plan), with `custom_branding`.
async fn allowed(signed: &Signed, frame: &Frame) -> Result<(), Response> {
    signed.owner(frame, (TITLE, CURRENT))?;
    signed
        .may(frame, (TITLE, CURRENT), CUSTOM_BRANDING_MODULE, Role::Owner)
        .await
}

#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    saved: Option<String>,
}

/// `GET /workspace/branding`.
pub async fn show(
    signed: Signed,
    axum::extract::Query(shown): axum::extract::Query<Shown>,
) -> Response {
    let frame = signed.frame();
    if let Err(refused) = allowed(&signed, &frame).await {
        return refused;
    }
    let form = BrandingForm::of(signed.0.connection.tenant.branding.as_ref());
    frame.render(
        TITLE,
        CURRENT,
        content(&form, &Problems::default(), shown.saved.is_some()),
    )
}

/// `POST /workspace/branding`.
pub async fn save(
    State(state): State<AppState>,
    signed: Signed,
    form: Result<Form<BrandingForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let result = put_branding(State(state.router.clone()), signed.0, Body(form.branding())).await;
    frame.after_change(
        (TITLE, CURRENT),
        "/workspace/branding?saved=1",
        result,
        |problems| content(&form, problems, false),
    )
}
