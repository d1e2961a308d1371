//! Signing in and out in a browser: the sign-in page at `/` (the dashboard once signed in), the
//! form's POST, the one-time sign-in link the signup page sends a new owner through, and
//! signing out.

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use control_plane::one_time_links::LinkPurpose;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use web::client::ClientAddr;
use web::{ApiError, ErrorCode};

use super::form::{Input, Problems};
use super::{Signed, page, session_cookie, signed_out, token_page};
use crate::auth;
use crate::branding::EffectiveBranding;
use crate::{AppState, ResolvedOnly, TenantConnection};

/// `GET /`: the dashboard for a signed-in user, else the sign-in page.
pub async fn home(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    match Signed::of(&mut parts, &state).await {
        Ok(Some(signed)) => super::dashboard::show(signed).await,
        Ok(None) => {
            match <ResolvedOnly as axum::extract::FromRequestParts<AppState>>::from_request_parts(
                &mut parts, &state,
            )
            .await
            {
                Ok(ResolvedOnly(tenant)) => page(sign_in_page(
                    &EffectiveBranding::of(&tenant),
                    "",
                    &Problems::default(),
                )),
                Err(error) => error.into_response(),
            }
        }
        Err(response) => response,
    }
}

/// The sign-in form: the email kept after a failed attempt, and its problems (a wrong password
/// or too many tries for the whole attempt; missing fields beside them).
fn sign_in_page(branding: &EffectiveBranding, email: &str, problems: &Problems) -> Markup {
    // Focus goes to the first field with a problem, else to the email.
    let focus = problems.first(&["email", "password"]).or(Some("email"));
    let email = Input {
        kind: "email",
        autocomplete: Some("username"),
        ..Input::text("email", "Email", email).required()
    };
    let password = Input {
        kind: "password",
        autocomplete: Some("current-password"),
        ..Input::text("password", "Password", "").required()
    };
    html! {
        (signed_out(branding, "Sign in", html! {
            h1 { "Sign in to " (branding.display_name) }
            @if let Some(problem) = &problems.general {
                p class="notice error" role="alert" id="sign-in-problem" { (problem) }
            }
            form class="stacked" method="post" action="/sign-in" novalidate {
                (email.render(problems, focus))
                (password.render(problems, focus))
                button class="primary" type="submit" { "Sign in" }
            }
            p { a href="/password/forgot" { "Forgot password?" } }
        }))
    }
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `POST /sign-in`: the form. Success sets the session cookie and goes to the dashboard; a
/// refusal shows the form again with the email kept and the problem beside its field.
pub async fn submit(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    ResolvedOnly(tenant): ResolvedOnly,
    form: Result<Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let branding = EffectiveBranding::of(&tenant);
    let Form(form) = form.unwrap_or_else(|_| {
        Form(SignInForm {
            email: String::new(),
            password: String::new(),
        })
    });
    let client = client.map(|ClientAddr(address)| address);
    let signed_in = auth::check_sign_in(
        &state.router,
        client,
        &tenant,
        &form.email,
        SecretString::from(form.password),
    )
    .await;
    match signed_in {
        Ok(user) => start_session(&state, tenant.id, user.id),
        Err(error) => {
            let mut response = page(sign_in_page(&branding, &form.email, &Problems::of(&error)));
            *response.status_mut() = error.status();
            if let Some(seconds) = error.retry_after_seconds {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, seconds.into());
            }
            response
        }
    }
}

/// Signs the user `user_id` in: the session cookie, then the dashboard.
pub(super) fn start_session(state: &AppState, tenant_id: uuid::Uuid, user_id: i64) -> Response {
    let (token, lifetime) = crate::sessions::new_session(&state.router, tenant_id, user_id);
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, lifetime));
    response
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    token: SecretString,
}

/// `GET /sign-in/link?token=…`: a one-time sign-in link (made for a new owner by the signup
/// status endpoint). Works once, for a minute, on this tenant's host only; then the dashboard.
pub async fn follow_link(
    State(state): State<AppState>,
    connection: TenantConnection,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let invalid = || {
        ApiError::new(
            ErrorCode::InvalidSignInLink,
            "This sign-in link has expired or was already used. Sign in with your email and \
             password instead.",
        )
    };
    let Query(query) = query.map_err(|_| invalid())?;
    let store = state.router.store();
    let tenant_id = connection.tenant.id;
    let email = store
        .use_link(LinkPurpose::SignIn, tenant_id, &query.token)
        .await?
        .ok_or_else(invalid)?;
    let user = auth::active_user_by_email(&connection, &email)
        .await?
        .ok_or_else(invalid)?;
    // The signup's landing key has done its job: no more links from it.
    store
        .use_links_of(LinkPurpose::SignupLanding, tenant_id, &email)
        .await?;
    tracing::info!(user = user.id, "signed in through a one-time link");
    // The URL held a token: say nothing of it to anyone.
    Ok(token_page(start_session(&state, tenant_id, user.id)))
}

/// `POST /sign-out`: ends the browser session, on every router: a copy of its cookie no longer
/// signs anyone in. The cookie goes even if the control plane cannot record the end (logged).
pub async fn sign_out(
    State(state): State<AppState>,
    ResolvedOnly(tenant): ResolvedOnly,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(token) = super::cookie_token(&headers)
        && let Err(error) = crate::sessions::end_session(&state.router, tenant.id, &token).await
    {
        tracing::warn!(error = %error.message, "cannot record the end of a session");
    }
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0));
    response
}
