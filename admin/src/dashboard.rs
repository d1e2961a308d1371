//! The migration dashboard at `/admin`: server-rendered HTML (maud, which escapes everything it
//! interpolates), no assets from the internet. Login with password + TOTP; the fleet's version
//! distribution and the rollouts; a rollout page with each stage's progress and a filterable
//! per-tenant table that refreshes itself every second while the rollout runs; start (after a
//! plan preview that shows the lint findings of the migrations to apply, and refuses to start
//! on an error-level one unless its rule is accepted), pause, resume, abort and retry, each
//! confirmed in the browser and audited.
//!
//! Pages take the session from the `silo_admin` cookie (HttpOnly, SameSite=Strict, so other
//! sites cannot post forms with it); without one they redirect to the login page.

use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use control_plane::rollouts::{
    FailureLimit, OnFailure, RolloutAction, RolloutDirection, RolloutRecord, RolloutSpec,
    RolloutState, StageCounts,
};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use migrator::reach::Reach;

use crate::rollout_views::{actions, findings_table, reach_section};
use serde::Deserialize;
use uuid::Uuid;
use web::client::ClientAddr;
use web::{ApiError, ErrorCode};

use crate::AdminState;
use crate::auth::{Admin, LoginRequest, login, session_cookie};

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6rem 1.2rem;display:flex;justify-content:space-between;align-items:center}
header a,header button{color:#fff}
/* A header button is outlined on the dark bar, never white on the browser's light grey. */
header button{background:transparent;border:1px solid #fff;border-radius:4px}
main{max-width:72rem;margin:1.5rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}
th,td{border:1px solid #d9dde3;padding:.35rem .5rem;text-align:left;font-size:.9rem;vertical-align:top}
th{background:#eef0f3}
.bar{background:#e3e6ea;height:.8rem;border-radius:3px;overflow:hidden;min-width:12rem}
.bar span{display:block;height:100%;background:#2f7d4f}
.failed{color:#a4161a}.paused{color:#a05a00}.completed,.succeeded{color:#2f7d4f}
form.inline{display:inline}
label{display:block;margin-top:.6rem;font-weight:600}
input,select{padding:.35rem;font-size:1rem}
button{padding:.4rem .9rem;font-size:.95rem;cursor:pointer;margin:.2rem .2rem .2rem 0}
.error{background:#ffecec;padding:.6rem;border-radius:4px}
.notice{background:#e9f6ee;padding:.6rem;border-radius:4px}
.warning{color:#a05a00}
fieldset.risks{border:1px solid #a4161a;background:#fff;margin:.8rem 0}
fieldset.risks label{font-weight:400}
nav a{margin:0 .3rem}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}
form.filters label{margin-top:0}
";

pub(crate) fn page(title: &str, admin: Option<&Admin>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " — Silo admin" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        a href="/admin" { strong { "Silo admin" } }
                        @if let Some(admin) = admin {
                            nav {
                                a href="/admin" id="nav-rollouts" { "Rollouts" } " | "
                                a href="/admin/tenants" id="nav-tenants" { "Tenants" }
                            }
                            span {
                                (admin.0.email) " "
                                form.inline method="post" action="/admin/logout" {
                                    button type="submit" id="logout" { "Log out" }
                                }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

pub(crate) fn to_login() -> Response {
    Redirect::to("/admin/login").into_response()
}

pub(crate) fn error_page(admin: &Admin, error: &ApiError) -> Response {
    let body = html! {
        p.error id="error" { (error.message.as_str()) }
        p { a href="/admin" { "Back to the dashboard" } }
    };
    (error.status(), page("Error", Some(admin), body)).into_response()
}

pub async fn login_page() -> Html<String> {
    login_form(None)
}

fn login_form(error: Option<&str>) -> Html<String> {
    page(
        "Log in",
        None,
        html! {
            h1 { "Super-admin login" }
            @if let Some(error) = error { p.error id="error" { (error) } }
            form method="post" action="/admin/login" {
                label for="email" { "Email" }
                input id="email" name="email" type="email" required autocomplete="username";
                label for="password" { "Password" }
                input id="password" name="password" type="password" required autocomplete="current-password";
                label for="totp_code" { "Authenticator code" }
                input id="totp_code" name="totp_code" inputmode="numeric" autocomplete="one-time-code" required;
                p { button type="submit" id="login" { "Log in" } }
            }
        },
    )
}

pub async fn login_submit(
    State(state): State<AdminState>,
    ClientAddr(client): ClientAddr,
    Form(request): Form<LoginRequest>,
) -> Response {
    match login(&state, client, request).await {
        Ok(answer) => (
            [(
                header::SET_COOKIE,
                session_cookie(&answer.token, state.session_lifetime),
            )],
            Redirect::to("/admin"),
        )
            .into_response(),
        Err(error) => (error.status(), login_form(Some(error.message.as_str()))).into_response(),
    }
}

pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let _ = crate::auth::delete_session(State(state), headers).await;
    (
        [(
            header::SET_COOKIE,
            "silo_admin=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict",
        )],
        Redirect::to("/admin/login"),
    )
        .into_response()
}

fn state_class(state: RolloutState) -> &'static str {
    state.as_str()
}

fn progress(counts: &StageCounts) -> Markup {
    let percent = if counts.total > 0 {
        counts.done() * 100 / counts.total
    } else {
        0
    };
    html! {
        div.bar title=(format!("{percent}%")) { span style=(format!("width:{percent}%")) {} }
    }
}

pub async fn home(admin: Result<Admin, ApiError>, State(state): State<AdminState>) -> Response {
    let Ok(admin) = admin else { return to_login() };
    match home_body(&state).await {
        Ok(body) => page("Dashboard", Some(&admin), body).into_response(),
        Err(error) => error_page(&admin, &error),
    }
}

async fn home_body(state: &AdminState) -> Result<Markup, ApiError> {
    let released = state.store.released_version().await?;
    let distribution = state.store.version_distribution().await?;
    let rollouts = state.store.rollouts().await?;
    let mut rows = Vec::new();
    for rollout in &rollouts {
        rows.push((rollout, state.store.stage_counts(rollout.id, None).await?));
    }
    let known = state.migrations.latest();
    Ok(html! {
        h1 { "Schema versions" }
        p { "Released version: " strong id="released" { (released.map_or_else(|| "none".to_owned(), |v| v.to_string())) }
            " · this build knows up to " (known) }
        table id="versions" {
            tr { th { "schema version" } th { "tenants" } }
            @for (version, tenants) in &distribution {
                tr { td { (version.map_or_else(|| "-".to_owned(), |v| v.to_string())) } td { (tenants) } }
            }
        }
        h2 { "Start a rollout" }
        form method="get" action="/admin/rollouts/new" id="new-rollout" {
            label for="to" { "Target version" }
            input id="to" name="to" type="number" min="1" max=(known) value=(known) required;
            label for="stages" { "Stages (cumulative %)" }
            input id="stages" name="stages" value="10,50,100" required;
            label for="concurrency" { "Tenants at once per database host" }
            input id="concurrency" name="concurrency" type="number" min="1" value="4" required;
            label for="max_failures" { "Failures per stage that pause it (a count, or a share like 5%)" }
            input id="max_failures" name="max_failures" value="0" required;
            label for="bake" { "Bake time between stages" }
            input id="bake" name="bake" value="0s" required;
            label for="on_failure" { "When a stage passes its failure limit" }
            select id="on_failure" name="on_failure" {
                option value="pause" selected { "pause, for me to fix and retry" }
                option value="revert" { "move the tenants it moved back, then abort (needs revert scripts)" }
            }
            label { input type="checkbox" name="manual_approval" value="on"; " Pause for approval after each stage" }
            p { button type="submit" id="preview" { "Preview the plan" } }
        }
        h2 { "Rollouts" }
        table id="rollouts" {
            tr { th { "rollout" } th { "target" } th { "state" } th { "progress" } th { "failed" } th { "started by" } th { "created" } }
            @for (rollout, counts) in &rows {
                tr {
                    td { a href=(format!("/admin/rollouts/{}", rollout.id)) { (rollout.id.to_string()[..8]) } }
                    td { "v" (rollout.target_version) }
                    td class=(state_class(rollout.state)) { (rollout.state.as_str()) }
                    td { (progress(counts)) (counts.done()) "/" (counts.total) }
                    td { (counts.failed) }
                    td { (rollout.created_by) }
                    td { (rollout.created_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                }
            }
        }
    })
}

/// The start form's fields (also carried through the preview page).
#[derive(Debug, Clone, Deserialize)]
pub struct StartForm {
    to: i32,
    stages: String,
    concurrency: i32,
    max_failures: String,
    bake: String,
    manual_approval: Option<String>,
    /// `pause` (the default) or `revert`.
    on_failure: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRollout, message)
}

impl StartForm {
    fn spec(&self, state: &AdminState, actor: String) -> Result<RolloutSpec, ApiError> {
        use control_plane::rollout_spec;
        let refused = |error: rollout_spec::SpecError| invalid(error.to_string());
        let stages = rollout_spec::parse_stages(&self.stages).map_err(refused)?;
        rollout_spec::check_target(self.to, state.migrations.latest()).map_err(refused)?;
        rollout_spec::check_concurrency(self.concurrency).map_err(refused)?;
        let failure_limit: FailureLimit = self.max_failures.parse().map_err(refused)?;
        let bake: Duration = humantime::parse_duration(self.bake.trim()).map_err(|_| {
            invalid(format!(
                "Bake time `{}` must be a duration like 0s or 10m.",
                self.bake
            ))
        })?;
        let on_failure_text = self.on_failure.as_deref().unwrap_or("pause");
        let on_failure = OnFailure::parse(on_failure_text).ok_or_else(|| {
            invalid(format!(
                "On failure `{on_failure_text}` must be `pause` or `revert`."
            ))
        })?;
        Ok(RolloutSpec {
            target_version: self.to,
            stages,
            concurrency_per_host: self.concurrency,
            failure_limit,
            bake,
            manual_approval: self.manual_approval.is_some(),
            verify: false,
            // Set from the fleet by the caller (`Reach`), which also checks the reverts.
            direction: RolloutDirection::Forward,
            on_failure,
            accepted_risks: Vec::new(),
            created_by: actor,
        })
    }
}

/// The lint findings of the migrations a rollout to `target` may still apply in the fleet.
async fn pending_findings(
    state: &AdminState,
    target: i32,
) -> Result<Vec<migrator::lint::Finding>, ApiError> {
    let floor = migrator::lint::fleet_floor(&state.store).await?;
    Ok(migrator::lint::lint(
        state.migrations.between(floor, target),
        &state.lint,
    ))
}

pub async fn preview(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Query(form): Query<StartForm>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let result = async {
        let spec = form.spec(&state, admin.actor())?;
        let plan = state.store.plan(&spec.stages).await?;
        let findings = pending_findings(&state, spec.target_version).await?;
        let error_rules = migrator::lint::error_rules(&findings);
        let reach = Reach::of(&state.store, &state.migrations, spec.target_version).await?;
        let can_start = reach.check(spec.on_failure).is_ok();
        Ok::<_, ApiError>(html! {
            @if reach.direction == RolloutDirection::Back {
                h1 { "Roll back to schema version " (spec.target_version) }
            } @else {
                h1 { "Roll out schema version " (spec.target_version) }
            }
            (reach_section(&reach, spec.on_failure))
            p { (plan.len()) " tenants, stages " (form.stages) ", " (form.concurrency) " at once per host, pause after "
                (form.max_failures) " failures per stage"
                @if spec.on_failure == OnFailure::Revert { " (then move back what it moved)" }
                ", bake " (form.bake)
                @if spec.manual_approval { ", approval after each stage" } "." }
            @for (index, percent) in spec.stages.iter().enumerate() {
                @let members: Vec<_> = plan.iter().filter(|t| usize::try_from(t.stage).ok() == Some(index)).collect();
                h3 { "Stage " (index + 1) " (up to " (percent) "%): " (members.len()) " tenants" }
                p.stage-members { @for (i, t) in members.iter().enumerate() {
                    @if i > 0 { ", " } (t.slug) @if t.canary { " (canary)" } " v" (t.schema_version.map_or_else(|| "-".to_owned(), |v| v.to_string()))
                } }
            }
            (findings_table(&findings))
            @if can_start {
            form method="post" action="/admin/rollouts" onsubmit=(CONFIRM_START) {
                @if !error_rules.is_empty() {
                    fieldset.risks id="accept-risks" {
                        legend { "Error-level findings: the rollout starts only if you accept each risk" }
                        @for rule in &error_rules {
                            label { input type="checkbox" name="accept_risk" value=(rule) id=(format!("accept-{rule}")); " I accept " code { (rule) } }
                        }
                    }
                }
                input type="hidden" name="to" value=(form.to);
                input type="hidden" name="stages" value=(form.stages);
                input type="hidden" name="concurrency" value=(form.concurrency);
                input type="hidden" name="max_failures" value=(form.max_failures);
                input type="hidden" name="bake" value=(form.bake);
                @if spec.manual_approval { input type="hidden" name="manual_approval" value="on"; }
                input type="hidden" name="on_failure" value=(spec.on_failure.as_str());
                button type="submit" id="confirm-start" { "Start rollout" }
                " " a href="/admin" { "Cancel" }
            }
            } @else {
                p { a href="/admin" { "Back to the dashboard" } }
            }
        })
    }
    .await;
    match result {
        Ok(body) => page("Plan preview", Some(&admin), body).into_response(),
        Err(error) => error_page(&admin, &error),
    }
}

/// The start form: its fields, and one `accept_risk` per accepted rule (repeated keys, which
/// only a list of pairs can hold).
fn start_form(body: &[u8]) -> Result<(StartForm, Vec<String>), ApiError> {
    let unreadable =
        |_| invalid("The start form could not be read; start again from the preview.".to_owned());
    let form: StartForm = serde_urlencoded::from_bytes(body).map_err(unreadable)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(unreadable)?;
    let accepted = pairs
        .into_iter()
        .filter(|(name, _)| name == "accept_risk")
        .map(|(_, rule)| rule)
        .collect();
    Ok((form, accepted))
}

pub async fn start(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    RawForm(body): RawForm,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let result = async {
        let (form, accepted) = start_form(&body)?;
        let mut spec = form.spec(&state, admin.actor())?;
        // The fleet decides the direction now, not at the preview; a rollback needs every
        // revert script (refused, nothing created, otherwise).
        let reach = Reach::of(&state.store, &state.migrations, spec.target_version).await?;
        reach.check(spec.on_failure).map_err(|refusal| {
            ApiError::new(ErrorCode::RevertMissing, format!("Not started: {refusal}."))
        })?;
        spec.direction = reach.direction;
        // Lint again: the fleet may have moved since the preview. A refusal changes nothing.
        let findings = pending_findings(&state, spec.target_version).await?;
        spec.accepted_risks = migrator::lint::check_accepted(&findings, &accepted)
            .map_err(|refusal| invalid(format!("Not started: {refusal}.")))?;
        let id = state.store.create_rollout(&spec).await?;
        Ok::<_, ApiError>(id)
    }
    .await;
    match result {
        Ok(id) => Redirect::to(&format!("/admin/rollouts/{id}")).into_response(),
        Err(error) => error_page(&admin, &error),
    }
}

#[derive(Debug, Deserialize)]
pub struct TenantFilter {
    status: Option<String>,
}

fn filter_of(filter: &TenantFilter) -> Option<&str> {
    filter.status.as_deref().filter(|s| {
        matches!(
            *s,
            "pending" | "running" | "succeeded" | "failed" | "skipped" | "reverted"
        )
    })
}

async fn rollout_live(
    state: &AdminState,
    rollout: &RolloutRecord,
    status: Option<&str>,
) -> Result<Markup, ApiError> {
    let mut stages = Vec::new();
    for (index, percent) in rollout.stages.iter().enumerate() {
        let counts = state
            .store
            .stage_counts(rollout.id, i32::try_from(index).ok())
            .await?;
        stages.push((index, *percent, counts));
    }
    let tenants = state.store.rollout_tenants(rollout.id, status).await?;
    Ok(html! {
        (actions(rollout))
        p { "State: " strong id="rollout-state" class=(state_class(rollout.state)) { (rollout.state.as_str()) }
            @if let Some(reason) = &rollout.pause_reason { " — " span id="pause-reason" { (reason) } }
            " · stage " (rollout.current_stage + 1) " of " (rollout.stages.len()) }
        table id="stages" {
            tr { th { "stage" } th { "progress" } th { "done" } th { "succeeded" } th { "skipped" } th { "failed" } th { "moved back" } th { "pending" } }
            @for (index, percent, counts) in &stages {
                tr {
                    td { (index + 1) " (" (percent) "%)" }
                    td { (progress(counts)) }
                    td { (counts.done()) "/" (counts.total) }
                    td { (counts.succeeded) } td { (counts.skipped) }
                    td class=(if counts.failed > 0 { "failed" } else { "" }) { (counts.failed) }
                    td { (counts.reverted) }
                    td { (counts.pending + counts.running) }
                }
            }
        }
        table id="tenants" {
            tr { th { "tenant" } th { "host" } th { "stage" } th { "status" } th { "from" } th { "to" } th { "attempts" } th { "error" } }
            @for tenant in &tenants {
                tr data-slug=(tenant.slug) {
                    td { (tenant.slug) @if tenant.canary { " (canary)" } }
                    td { (tenant.host.as_deref().unwrap_or("-")) }
                    td { (tenant.stage + 1) }
                    td class=(tenant.status) { (tenant.status) }
                    td { (tenant.from_version.map_or_else(|| "-".to_owned(), |v| v.to_string())) }
                    td { (tenant.to_version.map_or_else(|| "-".to_owned(), |v| v.to_string())) }
                    td { (tenant.attempts) }
                    td.error-text { (tenant.error.as_deref().unwrap_or("")) }
                }
            }
        }
    })
}

/// The start form's confirmation (an inline handler, allowed by its hash).
pub(crate) const CONFIRM_START: &str = "return confirm('Start this rollout now?')";

/// The rollout page's live refresh (allowed by its hash in the console's policy).
pub(crate) const LIVE_SCRIPT: &str = "
(function(){
  const box=document.getElementById('live');
  async function tick(){
    try{
      const r=await fetch(box.dataset.src,{credentials:'same-origin'});
      if(r.ok){box.innerHTML=await r.text();}
    }catch(e){}
    const s=document.getElementById('rollout-state');
    if(s && (s.textContent==='running'||s.textContent==='pending'||s.textContent==='reverting')){setTimeout(tick,1000);}
    else{document.getElementById('live-note').textContent='';}
  }
  setTimeout(tick,1000);
})();
";

pub async fn rollout_page(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path(id): Path<Uuid>,
    Query(filter): Query<TenantFilter>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let result = async {
        let rollout = state.store.rollout(id).await?;
        let status = filter_of(&filter);
        let live = rollout_live(&state, &rollout, status).await?;
        let src = format!(
            "/admin/rollouts/{id}/live{}",
            status.map(|s| format!("?status={s}")).unwrap_or_default()
        );
        Ok::<_, ApiError>(html! {
            @if rollout.direction == RolloutDirection::Back {
                h1 { "Rollback to schema version " (rollout.target_version) }
            } @else {
                h1 { "Rollout to schema version " (rollout.target_version) }
            }
            p { "Started by " (rollout.created_by) " at " (rollout.created_at.format("%Y-%m-%d %H:%M:%S UTC"))
                " · stages " (rollout.stages.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")) "%" }
            @if !rollout.accepted_risks.is_empty() {
                p.warning id="accepted-risks" { "Accepted lint risks: " (rollout.accepted_risks.join(", ")) }
            }
            @if rollout.on_failure == OnFailure::Revert {
                p id="on-failure" { "On a stage's failure limit: move the tenants it moved back, then abort." }
            }
            p { "Show: "
                a href=(format!("/admin/rollouts/{id}")) { "all" } " · "
                @for s in ["failed", "pending", "succeeded", "skipped", "reverted"] {
                    a href=(format!("/admin/rollouts/{id}?status={s}")) id=(format!("filter-{s}")) { (s) } " · "
                }
                span id="live-note" { "updating live" }
            }
            div id="live" data-src=(src) { (live) }
            script { (PreEscaped(LIVE_SCRIPT)) }
        })
    }
    .await;
    match result {
        Ok(body) => page("Rollout", Some(&admin), body).into_response(),
        Err(error) => error_page(&admin, &error),
    }
}

pub async fn rollout_fragment(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path(id): Path<Uuid>,
    Query(filter): Query<TenantFilter>,
) -> Result<Html<String>, ApiError> {
    admin?;
    let rollout = state.store.rollout(id).await?;
    Ok(Html(
        rollout_live(&state, &rollout, filter_of(&filter))
            .await?
            .into_string(),
    ))
}

pub async fn rollout_action(
    admin: Result<Admin, ApiError>,
    State(state): State<AdminState>,
    Path((id, action)): Path<(Uuid, String)>,
) -> Response {
    let Ok(admin) = admin else { return to_login() };
    let Some(action) = RolloutAction::parse(&action) else {
        return error_page(
            &admin,
            &ApiError::new(ErrorCode::NotFound, "No such action."),
        );
    };
    match state.store.rollout_action(id, action, &admin.actor()).await {
        Ok(_) => Redirect::to(&format!("/admin/rollouts/{id}")).into_response(),
        Err(error) => error_page(&admin, &ApiError::from(error)),
    }
}
