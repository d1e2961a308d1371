//! Password reset in a browser: "Forgot password?" asks for an email and always answers the
//! same page, whether or not the email is a user's (the work — finding the user, making the link,
//! sending — happens in the mail job, so the answer's timing says nothing either). The mailed
//! link (`/password/reset?token=…`, single use, 30 minutes, sealed to this tenant and that
//! user) opens a page to set a new password; once set, the user is signed in.

use axum::Form;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use control_plane::mail::{Mail, MailJob};
use control_plane::one_time_links::{LinkPurpose, password_reset_user};
use control_plane::signup::is_plausible_email;
use maud::{Markup, html};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use web::{ApiError, ErrorCode};

use super::form::{Input, Problems};
use super::sign_in::start_session;
use super::{form_with_problems, origin, page, signed_out, token_page};

use crate::branding::EffectiveBranding;
use crate::invitations::new_password_problem;
use crate::{AppState, ResolvedOnly, TenantConnection};

fn invalid_reset_link() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidResetLink,
        "This password reset link has expired or was already used. Ask for a new one from \
         \"Forgot password?\" on the sign-in page.",
    )
}

/// The page asking for the email; `sent` once asked (the same for every address).
fn forgot_page(
    branding: &EffectiveBranding,
    email: &str,
    problems: &Problems,
    sent: bool,
) -> Markup {
    let email = Input {
        kind: "email",
        autocomplete: Some("username"),
        ..Input::text("email", "Email", email).required()
    };
    let focus = problems.first(&["email"]).or(Some("email"));
    html! {
        (signed_out(branding, "Forgot password", html! {
            h1 { "Reset your password for " (branding.display_name) }
            @if sent {
                p class="notice" role="status" id="reset-sent" {
                    "If an account uses that email, a link to set a new password is on its \
                     way. It works once, for 30 minutes."
                }
            } @else {
                p { "Type the email you sign in with; we will mail you a link to set a new password." }
                form class="stacked" method="post" action="/password/forgot" novalidate {
                    (email.render(problems, focus))
                    button class="primary" type="submit" { "Send the link" }
                }
            }
            p { a href="/" { "Back to sign in" } }
        }))
    }
}

/// `GET /password/forgot`.
pub async fn forgot(ResolvedOnly(tenant): ResolvedOnly) -> Response {
    page(forgot_page(
        &EffectiveBranding::of(&tenant),
        "",
        &Problems::default(),
        false,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    email: String,
}

/// `POST /password/forgot`: queues the reset mail job and answers the same page for every
/// plausible address.
pub async fn ask(
    State(state): State<AppState>,
    headers: HeaderMap,
    ResolvedOnly(tenant): ResolvedOnly,
    form: Result<Form<ForgotForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let branding = EffectiveBranding::of(&tenant);
    let email = form
        .map(|Form(form)| form.email)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if email.chars().count() > 320 || !is_plausible_email(&email) {
        let mut problems = Problems::default();
        problems.add("email", "must be an email address");
        return Ok(form_with_problems(forgot_page(
            &branding, &email, &problems, false,
        )));
    }
    let job = MailJob {
        tenant_id: tenant.id,
        to: email.clone(),
        mail: Mail::PasswordReset {
            origin: origin(&headers),
        },
    };
    state.router.store().enqueue_mail(&job).await?;
    Ok(page(forgot_page(
        &branding,
        &email,
        &Problems::default(),
        true,
    )))
}

/// The page to set a new password, carrying the link's token in its form.
fn reset_page(branding: &EffectiveBranding, token: &str, problems: &Problems) -> Markup {
    let password = Input::new_password("New password");
    let focus = problems.first(&["password"]).or(Some("password"));
    html! {
        (signed_out(branding, "Set a new password", html! {
            h1 { "Set a new password for " (branding.display_name) }
            @if let Some(problem) = &problems.general {
                p class="notice error" role="alert" { (problem) }
            }
            form class="stacked" method="post" action="/password/reset" novalidate {
                input type="hidden" name="token" value=(token);
                (password.render(problems, focus))
                button class="primary" type="submit" { "Set password and sign in" }
            }
        }))
    }
}

#[derive(Debug, Deserialize)]
pub struct ResetQuery {
    token: SecretString,
}

/// `GET /password/reset?token=…`: the form, if the link is live on this tenant (else 400).
pub async fn reset(
    State(state): State<AppState>,
    ResolvedOnly(tenant): ResolvedOnly,
    query: Result<Query<ResetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|_| invalid_reset_link())?;
    state
        .router
        .store()
        .peek_link(LinkPurpose::PasswordReset, tenant.id, &query.token)
        .await?
        .ok_or_else(invalid_reset_link)?;
    let markup = reset_page(
        &EffectiveBranding::of(&tenant),
        query.token.expose_secret(),
        &Problems::default(),
    );
    Ok(token_page(page(markup)))
}

#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
}

/// `POST /password/reset`: checks the link (live, this tenant's), the new password (length,
/// strength), hashes it without holding a tenant connection, uses the link up (of two racing
/// submissions exactly one wins), stores the hash and signs the user in.
pub async fn set(
    State(state): State<AppState>,
    ResolvedOnly(tenant): ResolvedOnly,
    form: Result<Form<ResetForm>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(form) = form.map_err(|_| invalid_reset_link())?;
    let token = SecretString::from(form.token);
    let store = state.router.store();
    let subject = store
        .peek_link(LinkPurpose::PasswordReset, tenant.id, &token)
        .await?
        .ok_or_else(invalid_reset_link)?;
    let user_id = password_reset_user(&subject).ok_or_else(invalid_reset_link)?;
    let connection = TenantConnection::open(&state.router, tenant.clone()).await?;
    let user = crate::auth::active_user_by_id(&connection, user_id)
        .await?
        .ok_or_else(invalid_reset_link)?;
    drop(connection);
    let problem = new_password_problem(
        &form.password,
        &tenant.slug,
        &user.email,
        user.display_name.as_deref(),
    );
    if let Some(problem) = problem {
        let mut problems = Problems::default();
        problems.add("password", &problem);
        let markup = reset_page(
            &EffectiveBranding::of(&tenant),
            token.expose_secret(),
            &problems,
        );
        return Ok(form_with_problems(markup));
    }
    let hash = control_plane::passwords::hash_async(SecretString::from(form.password)).await?;
    store
        .use_link(LinkPurpose::PasswordReset, tenant.id, &token)
        .await?
        .filter(|used| *used == subject)
        .ok_or_else(invalid_reset_link)?;
    let connection = TenantConnection::open(&state.router, tenant.clone()).await?;
    let changed = connection
        .client
        .execute(
            "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 AND is_active",
            &[&user.id, &hash],
        )
        .await
        .map_err(crate::common::db_error)?;
    if changed == 0 {
        return Err(invalid_reset_link());
    }
    // Whoever held a session of this user (perhaps the reason for the reset) is signed out.
    crate::sessions::end_user_sessions(&state.router, tenant.id, user.id).await?;
    tracing::info!(user = user.id, "password reset through a mailed link");
    Ok(token_page(start_session(&state, tenant.id, user.id)))
}
