//! Signing in and out in a browser: the sign-in page at `/` (the dashboard once signed in), the
//! form's POST, the one-time sign-in link the signup page sends a new owner through, and
//! signing out.

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use control_plane::one_time_links::LinkPurpose;
use maud::{Markup, html};
use secrecy::SecretString;
use serde::Deserialize;
use web::client::ClientAddr;
use web::{ApiError, ErrorCode};

use super::{Signed, head, over_https, page, session_cookie};
use crate::auth::{self, SessionUser};
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
                    &Attempt::default(),
                )),
                Err(error) => error.into_response(),
            }
        }
        Err(response) => response,
    }
}

/// What the sign-in form shows again after a failed attempt.
#[derive(Debug, Default)]
struct Attempt {
    email: String,
    /// A problem with the whole attempt (wrong password, too many tries).
    problem: Option<String>,
    email_error: Option<String>,
    password_error: Option<String>,
}

fn sign_in_page(branding: &EffectiveBranding, attempt: &Attempt) -> Markup {
    let email_error = attempt.email_error.as_deref();
    let password_error = attempt.password_error.as_deref();
    // Focus goes to the first field with an error, else to the email.
    let focus_password = email_error.is_none() && password_error.is_some();
    html! {
        (head(branding, "Sign in"))
        body {
            main class="narrow card" {
                h1 { "Sign in to " (branding.display_name) }
                @if let Some(problem) = &attempt.problem {
                    p class="notice error" role="alert" id="sign-in-problem" { (problem) }
                }
                form class="stacked" method="post" action="/sign-in" novalidate {
                    label for="email" { "Email" }
                    input id="email" name="email" type="email" autocomplete="username" required
                        value=(attempt.email) autofocus[!focus_password]
                        aria-invalid=[email_error.map(|_| "true")]
                        aria-describedby=[email_error.map(|_| "email-error")];
                    @if let Some(error) = email_error { p class="field-error" id="email-error" { (error) } }
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required
                        autofocus[focus_password]
                        aria-invalid=[password_error.map(|_| "true")]
                        aria-describedby=[password_error.map(|_| "password-error")];
                    @if let Some(error) = password_error { p class="field-error" id="password-error" { (error) } }
                    button class="primary" type="submit" { "Sign in" }
                }
            }
        }
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
    headers: HeaderMap,
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
        Ok(user) => start_session(&state, tenant.id, &user, &headers),
        Err(error) => {
            let fields = error.fields.clone().unwrap_or_default();
            let attempt = Attempt {
                email: form.email,
                problem: fields.is_empty().then(|| error.message.clone()),
                email_error: fields
                    .get("email")
                    .map(|problem| format!("Email {problem}.")),
                password_error: fields
                    .get("password")
                    .map(|problem| format!("Password {problem}.")),
            };
            let mut response = page(sign_in_page(&branding, &attempt));
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

/// Signs `user` in: the session cookie, then the dashboard.
fn start_session(
    state: &AppState,
    tenant_id: uuid::Uuid,
    user: &SessionUser,
    headers: &HeaderMap,
) -> Response {
    let (token, lifetime) = auth::new_session(&state.router, tenant_id, user.id);
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, lifetime, over_https(headers)),
    );
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
    headers: HeaderMap,
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
    let mut response = start_session(&state, tenant_id, &user, &headers);
    // The URL held a token: say nothing of it to anyone.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        "no-referrer".parse().expect("a valid header"),
    );
    Ok(response)
}

/// `POST /sign-out`: ends the browser session.
pub async fn sign_out(headers: HeaderMap) -> Response {
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, over_https(&headers)),
    );
    response
}
