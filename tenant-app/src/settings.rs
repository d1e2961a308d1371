//! The tenant-admin page (`GET /settings`): a server-rendered shell (maud, which escapes what it
//! inserts) carrying the tenant's branding, and a small script (`/settings.js`) that signs in
//! through the JSON API, keeps the session token in `sessionStorage`, and drives the same
//! authenticated endpoints any client uses — plan and usage, users and invitations, branding,
//! custom domains, API keys, integration credentials. It also accepts an invitation when the
//! link's fragment carries one. The page reads nothing the API would not give the same caller.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, PreEscaped, html};

use crate::ResolvedOnly;
use crate::branding::EffectiveBranding;

const SCRIPT: &str = include_str!("settings.js");

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
header{background:var(--brand);color:#fff;padding:.8rem 1.2rem;display:flex;gap:.8rem;align-items:center}\
header img{height:32px}header h1{font-size:1.2rem;margin:0;flex:1}header a{color:#fff}\
main{max-width:60rem;margin:1rem auto;padding:0 1rem}\
section{background:#fff;border-radius:6px;padding:.8rem 1.2rem;margin-bottom:1rem;box-shadow:0 1px 2px #0001}\
h2{font-size:1.05rem;margin:.2rem 0 .6rem;color:var(--brand)}\
table{border-collapse:collapse;width:100%;margin-bottom:.6rem}td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid #eee}\
form{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}input,select{padding:.3rem}\
button{background:var(--brand);color:#fff;border:0;border-radius:4px;padding:.35rem .8rem;cursor:pointer}\
.status{min-height:1.2em}.error{color:#b00020}code{word-break:break-all;background:#f0f0f0;padding:.1rem .3rem}\
[hidden]{display:none!important}";

/// Only this page's own script, no inline script, no third-party anything; logos may come from
/// any https origin (that is what a logo URL is).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'unsafe-inline'; img-src https:; connect-src 'self'; form-action 'none'; \
     base-uri 'none'; frame-ancestors 'none'";

/// `GET /settings`.
#[tracing::instrument(name = "settings_page", skip_all, fields(tenant = %tenant.slug))]
pub async fn page(ResolvedOnly(tenant): ResolvedOnly, headers: HeaderMap) -> Response {
    let branding = EffectiveBranding::of(&tenant);
    // Signed in to the back office's pages: the script starts with that session (it checks it
    // against the API like any token) rather than asking for the password again.
    let session = web::headers::cookie(&headers, crate::pages::SESSION_COOKIE);
    // The colour is `#rrggbb` (validated when stored, or the default), so it is safe in CSS.
    let brand_css = format!(":root{{--brand:{}}}", branding.primary_color);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title id="page-title" { (branding.display_name) " · Settings" }
                style { (PreEscaped(STYLE)) }
                style id="brand-style" { (PreEscaped(brand_css)) }
            }
            body data-display-name=(branding.display_name) data-session=[session] {
                header id="brand-header" {
                    img id="brand-logo" alt="" src=[branding.logo_url.as_deref()]
                        hidden[branding.logo_url.is_none()];
                    h1 id="brand-name" { (branding.display_name) }
                    a id="back-office" href="/" { "Back office" }
                    span id="me" {}
                    button id="sign-out" type="button" hidden { "Sign out" }
                }
                main {
                    section id="accept" hidden {
                        h2 { "Join this workspace" }
                        p { "You were invited to this workspace. Choose your password to join." }
                        form id="accept-form" {
                            input id="accept-display-name" placeholder="Your name" autocomplete="name";
                            input id="accept-password" type="password" placeholder="Password (10+ characters)" autocomplete="new-password";
                            button id="accept-submit" type="submit" { "Join" }
                        }
                        p id="accept-status" class="status" {}
                    }
                    section id="login" {
                        h2 { "Sign in" }
                        form id="login-form" {
                            input id="login-email" type="email" placeholder="Email" autocomplete="username";
                            input id="login-password" type="password" placeholder="Password" autocomplete="current-password";
                            button id="login-submit" type="submit" { "Sign in" }
                        }
                        p id="login-status" class="status" {}
                    }
                    div id="admin" hidden {
                        section {
                            h2 { "Plan" }
                            p { "Plan: " strong id="plan" {} }
                            p { "Modules: " span id="modules" {} }
                            table id="usage" { thead { tr { th { "" } th { "used" } th { "limit" } } } tbody {} }
                            p id="plan-status" class="status" {}
                        }
                        section {
                            h2 { "Users" }
                            table id="users" { thead { tr { th { "email" } th { "name" } th { "role" } th { "" } } } tbody {} }
                            form id="invite-form" {
                                input id="invite-email" type="email" placeholder="Email to invite";
                                select id="invite-role" {
                                    option value="staff" { "staff" }
                                    option value="read_only" { "read only" }
                                    option value="owner" { "owner" }
                                }
                                button id="invite-submit" type="submit" { "Invite" }
                            }
                            p { "Silo sends no email: share the link below with the person you invited (valid 7 days, once)." }
                            p { code id="invitation-url" {} }
                            p id="users-status" class="status" {}
                        }
                        section {
                            h2 { "Branding" }
                            form id="branding-form" {
                                input id="branding-display-name" placeholder="Display name";
                                input id="branding-logo-url" placeholder="https://… logo URL";
                                input id="branding-color" placeholder="#rrggbb";
                                button id="branding-submit" type="submit" { "Save branding" }
                            }
                            p id="branding-status" class="status" {}
                        }
                        section {
                            h2 { "Custom domains" }
                            table id="domains" { thead { tr { th { "domain" } th { "verification token (TXT at _silo-challenge.<domain>)" } th { "verified" } th { "" } } } tbody {} }
                            form id="domain-form" {
                                input id="domain-name" placeholder="shop.example.com";
                                button id="domain-submit" type="submit" { "Add domain" }
                            }
                            p { "Token of the domain just added: " code id="domain-token" {} }
                            p id="domains-status" class="status" {}
                        }
                        section {
                            h2 { "API keys" }
                            table id="keys" { thead { tr { th { "name" } th { "prefix" } th { "role" } th { "last used" } th { "" } } } tbody {} }
                            form id="key-form" {
                                input id="key-name" placeholder="Key name";
                                select id="key-role" {
                                    option value="read_only" { "read only" }
                                    option value="staff" { "staff" }
                                }
                                button id="key-submit" type="submit" { "Create key" }
                            }
                            p { "New key (shown once): " code id="key-secret" {} }
                            p id="keys-status" class="status" {}
                        }
                        section {
                            h2 { "Integration credentials" }
                            table id="integrations" { thead { tr { th { "name" } th { "last 4" } th { "updated" } th { "" } } } tbody {} }
                            form id="integration-form" {
                                input id="integration-name" placeholder="name, e.g. shipping";
                                input id="integration-secret" type="password" placeholder="secret" autocomplete="off";
                                button id="integration-submit" type="submit" { "Save credential" }
                            }
                            p id="integrations-status" class="status" {}
                        }
                    }
                }
                script src="/settings.js" {}
            }
        }
    };
    let mut response = Html(markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /settings.js`: the page's script.
pub async fn script() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        SCRIPT,
    )
        .into_response()
}
