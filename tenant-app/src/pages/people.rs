//! Users and invitations in a browser (owner): the workspace's users with their role (changed
//! in place) and a deactivate or reactivate button, the invitation form (the link to share is
//! shown once made), and the pending invitations, each revocable. Every action goes through the
//! API's own handlers; a refused one shows the page again with the problem.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use control_plane::invitations::PendingInvitation;
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::workspace::CURRENT;
use super::{Signed, next_page, row_action};
use crate::AppState;
use crate::common::{Body, Id, Page, Paged};
use crate::invitations::{self, NewInvitation};
use crate::users::{self, User, UserChange};

const TITLE: &str = "Users and invitations";
const PATH: &str = "/workspace/users";
const ROLES: [(&str, &str); 3] = [
    ("read_only", "Read-only"),
    ("staff", "Staff"),
    ("owner", "Owner"),
];

#[derive(Debug, Default, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Listing {
    cursor: Option<i64>,
}

/// What the page lists: a page of users and the pending invitations.
struct Lists {
    users: Paged<User>,
    invitations: Paged<PendingInvitation>,
}

async fn read(state: &AppState, signed: &Signed, cursor: Option<i64>) -> Result<Lists, Response> {
    let frame = signed.frame();
    let users = users::users_page(
        &signed.0,
        &Page {
            limit: Some(Page::DEFAULT),
            cursor,
        },
    )
    .await
    .map_err(|error| frame.refusal(TITLE, CURRENT, error))?;
    // Pending invitations are few (the plan caps them well under a page).
    let invitations = invitations::pending_invitations(
        &state.router,
        &signed.0,
        &Page {
            limit: Some(Page::MAX),
            cursor: None,
        },
    )
    .await
    .map_err(|error| frame.refusal(TITLE, CURRENT, error))?;
    Ok(Lists { users, invitations })
}

fn role_label(role: &str) -> &str {
    ROLES
        .iter()
        .find(|(code, _)| *code == role)
        .map_or(role, |(_, label)| label)
}

fn role_select(id: &str, selected: &str) -> Markup {
    html! {
        select id=(id) name="role" {
            @for (code, label) in ROLES {
                option value=(code) selected[code == selected] { (label) }
            }
        }
    }
}

fn content(lists: &Lists, form: &InviteForm, problems: &Problems, shared: Option<&str>) -> Markup {
    let focus = problems.first(&["email", "role"]);
    html! {
        @if let Some(link) = shared {
            section class="notice info" role="status" id="invitation-made" {
                p { "Invitation made. Send this link to the person you invited (it works once, for 7 days):" }
                code class="secret" id="invitation-link" { (link) }
            }
        }
        section class="card" {
            h2 { "Users" }
            table class="stack" id="users" {
                thead { tr { th { "Email" } th { "Name" } th { "Role" } th { "Status" } th { "Actions" } } }
                tbody {
                    @for user in &lists.users.data {
                        tr data-user=(user.id) {
                            td data-label="Email" { (user.email) }
                            td data-label="Name" { (user.display_name.as_deref().unwrap_or("")) }
                            td data-label="Role" {
                                form class="inline" method="post" action={ (PATH) "/" (user.id) "/role" } {
                                    label class="visually-hidden" for={ "role-" (user.id) } { "Role of " (user.email) }
                                    (role_select(&format!("role-{}", user.id), &user.role))
                                    button class="secondary" type="submit" { "Change role" }
                                }
                            }
                            td data-label="Status" { @if user.is_active { "Active" } @else { "Deactivated" } }
                            td data-label="Actions" {
                                form class="inline" method="post" action={ (PATH) "/" (user.id) "/active" } {
                                    input type="hidden" name="active" value=(if user.is_active { "false" } else { "true" });
                                    button class="secondary" type="submit" {
                                        @if user.is_active { "Deactivate" } @else { "Reactivate" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            (next_page(PATH, lists.users.next_cursor.map(|cursor| cursor.to_string())))
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Invite someone" }
            @if let Some(general) = &problems.general {
                p class="notice error" role="alert" id="invite-problem" { (general) }
            }
            form class="stacked" method="post" action={ (PATH) "/invite" } novalidate {
                (Input { kind: "email", ..Input::text("email", "Email", &form.email).required() }.render(problems, focus))
                label for="role" { "Role" }
                (role_select("role", if form.role.is_empty() { "staff" } else { &form.role }))
                @if let Some(problem) = problems.problem("role") { p class="field-error" id="role-error" { "Role " (problem) "." } }
                button class="primary" type="submit" { "Invite" }
            }
        }
        section class="card" style="margin-top:1rem" {
            h2 { "Pending invitations" }
            @if lists.invitations.data.is_empty() {
                p class="muted" id="no-invitations" { "No pending invitations." }
            } @else {
                table class="stack" id="invitations" {
                    thead { tr { th { "Email" } th { "Role" } th { "Expires" } th { "Actions" } } }
                    tbody {
                        @for invitation in &lists.invitations.data {
                            tr data-invitation=(invitation.id) {
                                td data-label="Email" { (invitation.email) }
                                td data-label="Role" { (role_label(&invitation.role)) }
                                td data-label="Expires" { (invitation.expires_at.format("%-d %b %Y %H:%M UTC")) }
                                td data-label="Actions" {
                                    (row_action(&format!("/workspace/invitations/{}/revoke", invitation.id), "Revoke", &invitation.email))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /workspace/users?cursor=`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Query(listing): Query<Listing>,
) -> Response {
    let frame = signed.frame();
    match read(&state, &signed, listing.cursor).await {
        Ok(lists) => frame.render(
            TITLE,
            CURRENT,
            content(&lists, &InviteForm::default(), &Problems::default(), None),
        ),
        Err(refused) => refused,
    }
}

/// `POST /workspace/users/invite`: the link is shown on the page that answers (it is not kept).
pub async fn invite(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed: Signed,
    form: Result<Form<InviteForm>, FormRejection>,
) -> Response {
    let frame = signed.frame();
    let form = form.map(|Form(form)| form).unwrap_or_default();
    let lists = match read(&state, &signed, None).await {
        Ok(lists) => lists,
        Err(refused) => return refused,
    };
    let new = NewInvitation {
        email: form.email.clone(),
        role: form.role.clone(),
    };
    match invitations::invite_user(State(state.router.clone()), headers, signed.0, Body(new)).await
    {
        Ok((_, axum::Json(made))) => {
            let mut lists = lists;
            lists.invitations.data.push(PendingInvitation {
                id: made.id,
                email: made.email.clone(),
                role: form.role.clone(),
                created_by: String::new(),
                created_at: chrono::Utc::now(),
                expires_at: made.expires_at,
            });
            frame.render(
                TITLE,
                CURRENT,
                content(
                    &lists,
                    &InviteForm::default(),
                    &Problems::default(),
                    Some(&made.invitation_url),
                ),
            )
        }
        Err(error) => frame.form_refused((TITLE, CURRENT), error, |problems| {
            content(&lists, &form, problems, None)
        }),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /workspace/users/{id}/role`.
pub async fn change_role(
    State(state): State<AppState>,
    signed: Signed,
    id: Id,
    form: Result<Form<RoleForm>, FormRejection>,
) -> Response {
    let role = form.map(|Form(form)| form.role).unwrap_or_default();
    change(
        &state,
        signed,
        id,
        UserChange {
            display_name: None,
            role: Some(role),
            is_active: None,
        },
    )
    .await
}

#[derive(Debug, Default, Deserialize)]
pub struct ActiveForm {
    #[serde(default)]
    active: String,
}

/// `POST /workspace/users/{id}/active` (`active=true|false`): reactivate or deactivate.
pub async fn set_active(
    State(state): State<AppState>,
    signed: Signed,
    id: Id,
    form: Result<Form<ActiveForm>, FormRejection>,
) -> Response {
    let active = form.is_ok_and(|Form(form)| form.active == "true");
    change(
        &state,
        signed,
        id,
        UserChange {
            display_name: None,
            role: None,
            is_active: Some(active),
        },
    )
    .await
}

async fn change(state: &AppState, signed: Signed, id: Id, change: UserChange) -> Response {
    let frame = signed.frame();
    let lists = match read(state, &signed, None).await {
        Ok(lists) => lists,
        Err(refused) => return refused,
    };
    let result = users::update_user(signed.0, id, Body(change))
        .await
        .map(|_| ());
    frame.after_change((TITLE, CURRENT), PATH, result, |problems| {
        content(&lists, &InviteForm::default(), problems, None)
    })
}

/// `POST /workspace/invitations/{id}/revoke`: the link stops working at once.
pub async fn revoke(State(state): State<AppState>, signed: Signed, id: Id) -> Response {
    let frame = signed.frame();
    let lists = match read(&state, &signed, None).await {
        Ok(lists) => lists,
        Err(refused) => return refused,
    };
    let result = invitations::revoke_invitation(State(state.router.clone()), signed.0, id)
        .await
        .map(|_| ());
    frame.after_change((TITLE, CURRENT), PATH, result, |problems| {
        content(&lists, &InviteForm::default(), problems, None)
    })
}
