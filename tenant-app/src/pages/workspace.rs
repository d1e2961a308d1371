//! The owner's settings in a browser: an index linking each settings page (users and
//! invitations, branding, custom domains, API keys, integration credentials; branches and the
//! plan have their own navigation entries), and the routes of all of them. The old script page
//! at `/settings` now sends browsers here.

use axum::Router;
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use maud::html;

use super::{Signed, api_keys, billing, branches, branding, domains, integrations, people};
use crate::AppState;

/// The navigation entry every settings page sits under.
pub const CURRENT: &str = "/workspace";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(|| async { Redirect::permanent(CURRENT) }))
        .route(CURRENT, get(index))
        .route("/workspace/users", get(people::show))
        .route("/workspace/users/invite", post(people::invite))
        .route("/workspace/users/{id}/role", post(people::change_role))
        .route("/workspace/users/{id}/active", post(people::set_active))
        .route("/workspace/invitations/{id}/revoke", post(people::revoke))
        .route(
            "/workspace/branding",
            get(branding::show).post(branding::save),
        )
        .route("/workspace/domains", get(domains::show).post(domains::add))
        .route("/workspace/domains/remove", post(domains::remove))
        .route(
            "/workspace/api-keys",
            get(api_keys::show).post(api_keys::create),
        )
        .route("/workspace/api-keys/{id}/revoke", post(api_keys::revoke))
        .route(
            "/workspace/integrations",
            get(integrations::show).post(integrations::put),
        )
        .route(
            "/workspace/integrations/{name}/remove",
            post(integrations::remove),
        )
        .route("/branches", get(branches::show).post(branches::add))
        .route("/branches/{id}", post(branches::rename))
        .route("/branches/{id}/active", post(branches::set_active))
        .route("/billing", get(billing::show))
        .route("/billing/checkout", post(billing::checkout))
        .route("/billing/portal", post(billing::portal))
}

/// `GET /workspace`: what the owner can set, one card each.
async fn index(signed: Signed) -> Response {
    let frame = signed.frame();
    if let Err(refused) = signed.owner(&frame, ("Settings", CURRENT)) {
        return refused;
    }
    let pages = [
        (
            "/workspace/users",
            "Users and invitations",
            "Invite people, change roles, deactivate.",
        ),
        (
            "/workspace/branding",
            "Branding",
            "Your name, colour and logo on every page.",
        ),
        (
            "/workspace/domains",
            "Custom domains",
            "Serve the back office on a domain of your own.",
        ),
        (
            "/workspace/api-keys",
            "API keys",
            "Keys for other programs to use the API.",
        ),
        (
            "/workspace/integrations",
            "Integration credentials",
            "Tokens of services you connect.",
        ),
        ("/branches", "Branches", "Your shops and stores."),
        (
            "/billing",
            "Plan and billing",
            "Your plan, usage, upgrade and payment.",
        ),
    ];
    frame.render(
        "Settings",
        CURRENT,
        html! {
            ul class="settings-links" id="settings" {
                @for (href, label, what) in pages {
                    li class="card" { h2 { a href=(href) { (label) } } p class="muted" { (what) } }
                }
            }
        },
    )
}
