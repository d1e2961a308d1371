//! The tenant app in a browser: server-rendered pages (maud, which escapes what it inserts) on
//! every tenant host, with no asset from anywhere else and one script (the quick sale's live
//! pricing, allowed by its hash; every page works without it). `/` is the sign-in page or,
//! signed in, the dashboard; every page hangs off one navigation in [`Shell`].
//!
//! A browser session is the same sealed token the API hands out, kept in the `silo_session`
//! cookie (HttpOnly, SameSite=Lax, `Secure` behind https). Pages take it with [`Signed`]; the
//! JSON API never reads the cookie, so a cookie can only act through these pages' forms, and
//! every state-changing request that carries a cookie passes `web::same_origin` first.

mod api_keys;
mod billing;
mod branches;
mod branding;
mod dashboard;
mod domains;
mod form;
mod import;
mod integrations;
mod invitation;
mod items;
mod lines;
mod password;
mod people;
mod purchases;
mod reports;
mod sales;
mod sign_in;
mod stock_takes;
mod suppliers;
mod workspace;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use secrecy::SecretString;
use web::{ApiError, ErrorCode};

use std::sync::Arc;

use crate::AppState;
pub(crate) use crate::common::origin;

use crate::auth::{Authed, Caller, Role};
use crate::branding::EffectiveBranding;
use tenant_router::seam::ResolvedTenant;

/// The browser session's cookie.
pub const SESSION_COOKIE: &str = "silo_session";

/// The page routes (merged into [`crate::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(sign_in::home))
        .route("/sign-in", post(sign_in::submit))
        .route("/sign-in/link", get(sign_in::follow_link))
        .route("/sign-out", post(sign_in::sign_out))
        .route(
            "/password/forgot",
            get(password::forgot).post(password::ask),
        )
        .route("/password/reset", get(password::reset).post(password::set))
        .route("/items", get(items::list))
        .route("/items/new", get(items::new).post(items::create))
        .route(
            "/items/import",
            get(import::show)
                .post(import::submit)
                .layer(axum::extract::DefaultBodyLimit::max(
                    crate::MAX_UPLOAD_BYTES,
                )),
        )
        .route("/items/{id}", get(items::edit).post(items::update))
        .route("/items/{id}/deactivate", post(items::deactivate))
        .route("/sales/new", get(sales::new).post(sales::submit))
        .route("/sales/price", get(sales::price_lines))
        .route(
            "/purchases/new",
            get(purchases::new).post(purchases::submit),
        )
        .route("/suppliers", get(suppliers::list).post(suppliers::create))
        .route(
            "/suppliers/{id}",
            get(suppliers::edit).post(suppliers::update),
        )
        .route(
            "/stock-takes",
            get(stock_takes::list).post(stock_takes::start),
        )
        .route(
            "/stock-takes/{id}",
            get(stock_takes::show).post(stock_takes::save),
        )
        .route("/stock-takes/{id}/post", post(stock_takes::post))
        .route("/reports", get(reports::sales))
        .route("/reports/sales.csv", get(reports::sales_csv))
        .merge(workspace::routes())
        .route("/join", get(invitation::show).post(invitation::join))
        .route("/assets/app.css", get(stylesheet))
}

const STYLESHEET: &str = include_str!("app.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// Scripts: only the quick sale's, by its hash. Styles: our stylesheet and the brand colour's
/// one inline rule. Images: our own and a logo from any https origin. Requests (the sale's
/// pricing) and forms: only to this origin.
static CONTENT_SECURITY_POLICY: std::sync::LazyLock<HeaderValue> = std::sync::LazyLock::new(|| {
    web::headers::PagePolicy::new(&[sales::SALE_SCRIPT], &[], true).header_value()
});

/// A page answer: HTML, never cached (it shows a signed-in user's data), framed by nobody.
pub fn page(markup: Markup) -> Response {
    let mut response = axum::response::Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.clone(),
    );
    response
}

/// `response` with `Referrer-Policy: same-origin`, for pages whose URL holds a token: the token
/// reaches no other site (a link or image elsewhere gets no Referer). Not `no-referrer`: with it
/// browsers send `Origin: null` on the page's form POST, which the same-origin check refuses when
/// the browser holds a cookie for this host.
pub(crate) fn token_page(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A form page shown again with its problems: `422`, and the referrer kept on this site (its form
/// may hold a token from the link that opened it).
pub(crate) fn form_with_problems(markup: Markup) -> Response {
    let mut response = token_page(page(markup));
    *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
    response
}

/// The session cookie carrying `token` (`web::headers` makes it `Secure` behind https).
fn session_cookie(token: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("silo_session=; Path=/; Max-Age=0"))
}

fn cookie_token(headers: &HeaderMap) -> Option<SecretString> {
    web::headers::cookie(headers, SESSION_COOKIE).map(|value| SecretString::from(value.to_owned()))
}

/// A signed-in user of this tenant, from the session cookie, with a connection to the tenant's
/// database. Without a valid session the page answers a redirect to the sign-in page.
pub struct Signed(pub Authed);

impl Signed {
    /// The signed-in user's session, if the request carries a valid one.
    async fn of(parts: &mut Parts, state: &AppState) -> Result<Option<Self>, Response> {
        let Some(token) = cookie_token(&parts.headers) else {
            return Ok(None);
        };
        match Authed::from_session_token(parts, state, &token).await {
            Ok(authed) => Ok(Some(Self(authed))),
            Err(error) if error.code == web::ErrorCode::Unauthenticated => Ok(None),
            Err(error) => Err(error.into_response()),
        }
    }

    pub fn user(&self) -> Option<&crate::auth::SessionUser> {
        match &self.0.caller {
            Caller::User(user) => Some(user),
            Caller::ApiKey(_) => None,
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        Self::of(parts, state)
            .await?
            .ok_or_else(|| Redirect::to("/").into_response())
    }
}

/// The text colour readable on `background` (`#rrggbb`): WCAG contrast against white or the
/// body's dark ink, whichever is higher.
fn ink_on(background: &str) -> &'static str {
    let channel = |range: std::ops::Range<usize>| {
        let value =
            f64::from(u8::from_str_radix(background.get(range).unwrap_or("00"), 16).unwrap_or(0))
                / 255.0;
        if value <= 0.040_45 {
            value / 12.92
        } else {
            ((value + 0.055) / 1.055).powf(2.4)
        }
    };
    let luminance = 0.2126 * channel(1..3) + 0.7152 * channel(3..5) + 0.0722 * channel(5..7);
    let (white, dark) = (1.0, 0.0137);
    if (white + 0.05) / (luminance + 0.05) >= (luminance + 0.05) / (dark + 0.05) {
        "#ffffff"
    } else {
        "#1d2330"
    }
}

/// One entry of the navigation.
struct NavEntry {
    href: &'static str,
    label: &'static str,
    /// Shown only to this role or higher.
    least: Role,
    /// The plan module the page needs; without it the entry is marked and its page offers the
    /// upgrade instead of a form.
    module: Option<&'static str>,
}

const NAV: &[NavEntry] = &[
    NavEntry {
        href: "/",
        label: "Dashboard",
        least: Role::ReadOnly,
        module: None,
    },
    NavEntry {
        href: "/items",
        label: "Items",
        least: Role::ReadOnly,
        module: Some("inventory"),
    },
    NavEntry {
        href: "/sales/new",
        label: "New sale",
        least: Role::Staff,
        module: Some("sales"),
    },
    NavEntry {
        href: "/purchases/new",
        label: "Receive stock",
        least: Role::Staff,
        module: Some("purchases"),
    },
    NavEntry {
        href: "/suppliers",
        label: "Suppliers",
        least: Role::ReadOnly,
        module: Some("inventory"),
    },
    NavEntry {
        href: "/stock-takes",
        label: "Stock takes",
        least: Role::ReadOnly,
        module: Some("stock_take"),
    },
    NavEntry {
        href: "/reports",
        label: "Reports",
        least: Role::ReadOnly,
        module: Some("reports"),
    },
    NavEntry {
        href: "/branches",
        label: "Branches",
        least: Role::Owner,
        module: None,
    },
    NavEntry {
        href: "/billing",
        label: "Plan and billing",
        least: Role::Owner,
        module: None,
    },
    NavEntry {
        href: workspace::CURRENT,
        label: "Settings",
        least: Role::Owner,
        module: None,
    },
];

/// Every page's frame: the tenant's branding, who is signed in, the navigation by role and
/// plan. Taken from a [`Signed`] before its handler call consumes the session.
pub struct Frame {
    tenant: Arc<ResolvedTenant>,
    pub role: Role,
    who: String,
}

impl Signed {
    /// The checks of a page that needs `module` and at least the `least` role, refused as the
    /// page `title` (under the navigation entry `current`) would refuse them.
    pub async fn may(
        &self,
        frame: &Frame,
        (title, current): (&str, &str),
        module: &str,
        least: Role,
    ) -> Result<(), Response> {
        self.0
            .require_module(module)
            .await
            .and_then(|()| self.0.require(least))
            .map_err(|error| frame.refusal(title, current, error))
    }

    /// The check of an owner's page without a module of its own, refused as [`Signed::may`].
    // The error is the refusal page itself, answered at once: boxing it would buy nothing.
    #[allow(clippy::result_large_err)]
    pub fn owner(&self, frame: &Frame, (title, current): (&str, &str)) -> Result<(), Response> {
        self.0
            .require(Role::Owner)
            .map_err(|error| frame.refusal(title, current, error))
    }

    pub fn frame(&self) -> Frame {
        Frame {
            tenant: self.0.connection.tenant.clone(),
            role: self.0.role(),
            who: self
                .user()
                .map(|user| {
                    user.display_name
                        .clone()
                        .unwrap_or_else(|| user.email.clone())
                })
                .unwrap_or_default(),
        }
    }
}

impl Frame {
    /// The page `title`, under the navigation entry `current`, around `content`.
    pub fn render(&self, title: &str, current: &str, content: Markup) -> Response {
        let branding = EffectiveBranding::of(&self.tenant);
        let entitlements = &self.tenant.entitlements;
        page(html! {
            (head(&branding, title))
            body {
                a class="skip" href="#content" { "Skip to content" }
                header class="topbar" {
                    @if let Some(logo) = &branding.logo_url { img src=(logo) alt=""; }
                    a class="name" href="/" { (branding.display_name) }
                    span class="who" { (self.who) }
                    form method="post" action="/sign-out" { button type="submit" { "Sign out" } }
                }
                nav class="main" aria-label="Main" {
                    ul {
                        @for entry in NAV.iter().filter(|entry| self.role >= entry.least) {
                            @let locked = entry.module.is_some_and(|module| !entitlements.has(module));
                            li { a href=(entry.href) class=[locked.then_some("locked")]
                                aria-current=[(entry.href == current).then_some("page")] {
                                (entry.label) @if locked { " " span class="badge" { "Upgrade" } }
                            } }
                        }
                    }
                }
                main id="content" { h1 { (title) } (content) }
            }
        })
    }

    /// A page with a form: `422` while the form has `problems`, else as [`Frame::render`].
    pub fn render_form(
        &self,
        title: &str,
        current: &str,
        content: Markup,
        problems: &form::Problems,
    ) -> Response {
        let mut response = self.render(title, current, content);
        if !problems.is_empty() {
            *response.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        }
        response
    }

    /// A form's answer after the API refused it: the form again with the problems and the
    /// refusal's status, or the refusal as a whole page (a role or module the page needs, a
    /// failure of ours) as [`Frame::refusal`] shows it.
    pub fn form_refused(
        &self,
        (title, current): (&str, &str),
        error: ApiError,
        again: impl FnOnce(&form::Problems) -> Markup,
    ) -> Response {
        let whole_page = matches!(
            error.code,
            ErrorCode::ModuleNotEnabled | ErrorCode::InsufficientRole
        ) || (error.status().is_server_error()
            && error.code != ErrorCode::StripeUnavailable);
        if whole_page {
            return self.refusal(title, current, error);
        }
        let problems = form::Problems::of(&error);
        let mut response = self.render(title, current, again(&problems));
        *response.status_mut() = error.status();
        response
    }

    /// A list page's answer: `content` of what `read` gave, or its refusal.
    pub fn listed<L>(
        &self,
        (title, current): (&str, &str),
        read: Result<L, Response>,
        content: impl FnOnce(&L) -> Markup,
    ) -> Response {
        match read {
            Ok(listed) => self.render(title, current, content(&listed)),
            Err(refused) => refused,
        }
    }

    /// A change's answer: `303` to `path` once made, else the form again as
    /// [`Frame::form_refused`] shows it.
    pub fn after_change<T>(
        &self,
        (title, current): (&str, &str),
        path: &str,
        result: Result<T, ApiError>,
        again: impl FnOnce(&form::Problems) -> Markup,
    ) -> Response {
        match result {
            Ok(_) => Redirect::to(path).into_response(),
            Err(error) => self.form_refused((title, current), error, again),
        }
    }

    /// A refusal of the API the page called, as this page: the plan's upgrade prompt for a
    /// module it lacks, the reason for a role that may not; other errors as error pages.
    pub fn refusal(&self, title: &str, current: &str, error: ApiError) -> Response {
        let content = match error.code {
            ErrorCode::ModuleNotEnabled => html! {
                section class="card" id="upgrade" {
                    h2 { "Not in your plan" }
                    p { (error.message) }
                    @if self.role >= Role::Owner {
                        p { a href="/billing" { "See your plan and upgrade" } }
                    } @else {
                        p class="muted" { "Ask the workspace owner to upgrade." }
                    }
                }
            },
            ErrorCode::InsufficientRole => html! {
                section class="card" id="refused" { p { (error.message) } }
            },
            _ => return error.into_response(),
        };
        let mut response = self.render(title, current, content);
        *response.status_mut() = error.status();
        response
    }
}

/// `<head>` with the stylesheet and the brand colour (validated `#rrggbb` when stored, or the
/// default, so it is safe in CSS).
fn head(branding: &EffectiveBranding, title: &str) -> Markup {
    let brand_css = format!(
        ":root{{--brand:{}}}.topbar,.topbar .name,button.primary,a.button{{color:{}}}",
        branding.primary_color,
        ink_on(&branding.primary_color)
    );
    html! {
        (DOCTYPE)
        html lang="en";
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (branding.display_name) }
            link rel="stylesheet" href="/assets/app.css";
            style { (PreEscaped(brand_css)) }
        }
    }
}

/// A page for someone not signed in (sign-in, password reset, joining): the workspace's bar —
/// its logo and name on its colour, as on every signed-in page — above one narrow card.
pub(crate) fn signed_out(branding: &EffectiveBranding, title: &str, content: Markup) -> Markup {
    html! {
        (head(branding, title))
        body {
            header class="topbar" id="brand" {
                @if let Some(logo) = &branding.logo_url { img src=(logo) alt=""; }
                span class="name" { (branding.display_name) }
            }
            main class="narrow card" { (content) }
        }
    }
}

/// A "Next page" link to `path` with `cursor` (and `extra` query pairs), when there is one.
pub fn next_page(path: &str, cursor: Option<String>) -> Markup {
    let href = cursor.map(|cursor| {
        format!(
            "{path}?{}",
            serde_urlencoded::to_string([("cursor", cursor)]).unwrap_or_default()
        )
    });
    html! { @if let Some(href) = href { p { a href=(href) rel="next" { "Next page" } } } }
}

/// A one-button form posting to `action` (revoke, remove, deactivate): no script, so each row
/// action is a form of its own.
pub fn row_action(action: &str, label: &str, name: &str) -> Markup {
    html! {
        form class="inline" method="post" action=(action) {
            button class="secondary" type="submit" aria-label=(format!("{label} {name}")) { (label) }
        }
    }
}

/// Money in cents as `1,234.56`.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}.{:02}", cents % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_with_two_decimals() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(-100_000), "-1,000.00");
    }

    #[test]
    fn text_on_the_brand_colour_is_the_readable_one() {
        assert_eq!(ink_on("#000000"), "#ffffff");
        assert_eq!(ink_on("#1a4fd6"), "#ffffff");
        assert_eq!(ink_on("#ffffff"), "#1d2330");
        assert_eq!(ink_on("#f5d000"), "#1d2330");
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_is_http_only() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; silo_session=st.abc; b=2"),
        );
        let token = cookie_token(&headers).expect("found");
        assert_eq!(secrecy::ExposeSecret::expose_secret(&token), "st.abc");
        let cookie = session_cookie("st.abc", 60);
        let cookie = cookie.to_str().expect("ascii");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
    }
}
