//! Accepting an invitation in a browser: the link (`/join?token=…`, mailed and shown to the owner) opens a page
//! naming the workspace, the invited email and role, asking for a name and a password; joining
//! goes through the API's own acceptance (`invitations::accept`: sealed to this tenant, once,
//! within the plan's user limit) and signs the new user in.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use web::ApiError;

use super::form::{Input, Problems};
use super::sign_in::start_session;
use super::{form_with_problems, page, signed_out, token_page};
use crate::auth::Role;
use crate::branding::EffectiveBranding;
use crate::invitations::{Acceptance, accept, invited};
use crate::{AppState, ResolvedOnly};

/// What the form shows besides its fields.
struct Invited<'a> {
    token: &'a str,
    email: &'a str,
    role: Role,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "an owner",
        Role::Staff => "staff",
        Role::ReadOnly => "a read-only user",
    }
}

fn invitation_page(
    branding: &EffectiveBranding,
    invited: &Invited<'_>,
    display_name: &str,
    problems: &Problems,
) -> Markup {
    let name = Input {
        autocomplete: Some("name"),
        ..Input::text("display_name", "Your name", display_name)
    };
    let password = Input::new_password("Password");
    let focus = problems
        .first(&["display_name", "password"])
        .or(Some("display_name"));
    html! {
        (signed_out(branding, "Join", html! {
            h1 { "Join " (branding.display_name) }
            p { "You are invited as " strong { (role_name(invited.role)) } ", signing in as "
                strong { (invited.email) } "." }
            @if let Some(problem) = &problems.general {
                p class="notice error" role="alert" id="join-problem" { (problem) }
            }
            form class="stacked" method="post" action="/join" novalidate {
                input type="hidden" name="token" value=(invited.token);
                (name.render(problems, focus))
                (password.render(problems, focus))
                button class="primary" type="submit" { "Join and sign in" }
            }
        }))
    }
}

#[derive(Debug, Deserialize)]
pub struct InvitationQuery {
    token: SecretString,
}

/// `GET /join?token=…`: the form, if the invitation is this tenant's and not expired
/// (else the 400 `invalid_invitation` page).
pub async fn show(
    State(state): State<AppState>,
    ResolvedOnly(tenant): ResolvedOnly,
    query: Result<Query<InvitationQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let token = query
        .map(|Query(query)| query.token)
        .unwrap_or_else(|_| SecretString::from(String::new()));
    let (email, role) = invited(&state.router, &tenant, token.expose_secret())?;
    let invited = Invited {
        token: token.expose_secret(),
        email: &email,
        role,
    };
    let markup = invitation_page(
        &EffectiveBranding::of(&tenant),
        &invited,
        "",
        &Problems::default(),
    );
    Ok(token_page(page(markup)))
}

#[derive(Debug, Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
}

/// `POST /join`: joins through the API's acceptance, then signs in. Field problems come
/// back beside their fields with the name kept; a refused invitation says why above the form.
pub async fn join(
    State(state): State<AppState>,
    ResolvedOnly(tenant): ResolvedOnly,
    form: Result<Form<JoinForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let form = form.map(|Form(form)| form).unwrap_or(JoinForm {
        token: String::new(),
        display_name: String::new(),
        password: String::new(),
    });
    let (email, role) = invited(&state.router, &tenant, &form.token)?;
    let acceptance = Acceptance {
        token: SecretString::from(form.token.clone()),
        password: SecretString::from(form.password),
        display_name: Some(form.display_name.clone()),
    };
    match accept(&state.router, &tenant, acceptance).await {
        Ok(user) => Ok(token_page(start_session(&state, tenant.id, user.id()))),
        // Field problems beside their fields with the name kept; a refusal of the invitation
        // itself (revoked, used, the plan full) above the form, with its status.
        Err(error) => {
            let invited = Invited {
                token: &form.token,
                email: &email,
                role,
            };
            let markup = invitation_page(
                &EffectiveBranding::of(&tenant),
                &invited,
                &form.display_name,
                &Problems::of(&error),
            );
            let mut response = form_with_problems(markup);
            if error.fields.is_none() {
                *response.status_mut() = error.status();
            }
            Ok(response)
        }
    }
}
