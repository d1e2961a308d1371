//! Pieces of the migration dashboard's pages that only render what they are given: what a
//! rollout would do (direction, "does nothing", revert availability), the lint findings, and a
//! rollout's action buttons (only those its state allows).

use control_plane::rollouts::{OnFailure, RolloutAction, RolloutDirection, RolloutRecord};
use maud::{Markup, html};
use migrator::reach::{Reach, RevertMissing};

/// Which way the rollout goes, whether it does anything, and which migrations can be undone.
pub(crate) fn reach_section(reach: &Reach, on_failure: OnFailure) -> Markup {
    let refusal = reach.check(on_failure).err();
    html! {
        p id="direction" { "Direction: " strong { (reach.direction.as_str()) }
            @if reach.direction == RolloutDirection::Back { " (a rollback: revert scripts run, newest first)" }
            " · " (reach.moves) " of " (reach.tenants) " tenants would move to version " (reach.target) "." }
        @if reach.does_nothing() {
            p.warning id="does-nothing" { "This rollout does nothing: every tenant is already at version " (reach.target) "." }
        }
        @if !reach.migrations.is_empty() {
            table id="reverts" {
                tr { th { "migration" } th { "can be rolled back" } }
                @for migration in &reach.migrations {
                    tr data-version=(migration.version) {
                        td { "V" (migration.version) }
                        td class=(if migration.available { "succeeded" } else { "failed" }) {
                            @if migration.available { "yes, by " } @else { "no: there is no " }
                            code { (migration.file) }
                        }
                    }
                }
            }
        }
        @if let Some(refusal) = &refusal {
            p.failed id="revert-missing" { code { (RevertMissing::CODE) } ": " (refusal) }
        }
    }
}

pub(crate) fn findings_table(findings: &[migrator::lint::Finding]) -> Markup {
    html! {
        h2 { "Lint of the migrations to apply" }
        @if findings.is_empty() {
            p.notice id="lint-clean" { "No lint findings." }
        } @else {
            table id="lint-findings" {
                tr { th { "file" } th { "line" } th { "level" } th { "rule" } th { "what and why" } }
                @for finding in findings {
                    tr data-rule=(finding.rule) {
                        td { (finding.file) } td { (finding.line) }
                        td class=(if finding.level == migrator::lint::Level::Error { "failed" } else { "warning" }) { (finding.level.as_str()) }
                        td { code { (finding.rule) } }
                        td { (finding.message) @if let Some(help) = &finding.help { br; em { (help) } } }
                    }
                }
            }
        }
    }
}

/// The operator's buttons, each with the question it asks first. The questions are constants
/// so the console's CSP can allow exactly their `onsubmit` handlers ([`confirm_handlers`]).
const ACTIONS: [(RolloutAction, &str, &str); 4] = [
    (
        RolloutAction::Pause,
        "Pause",
        "return confirm('Pause this rollout? Tenants under way finish.')",
    ),
    (
        RolloutAction::Resume,
        "Resume",
        "return confirm('Resume this rollout?')",
    ),
    (
        RolloutAction::Retry,
        "Retry failed",
        "return confirm('Retry the failed tenants?')",
    ),
    (
        RolloutAction::Abort,
        "Abort",
        "return confirm('Abort this rollout for good?')",
    ),
];

/// The inline handlers the rollout pages use, for the console's script policy.
pub(crate) fn confirm_handlers() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|(_, _, handler)| *handler)
}

/// The operator's buttons: only the actions the rollout's state allows (a finished rollout
/// offers none but a completed one's retry). Part of the live fragment, so they follow the state.
pub(crate) fn actions(rollout: &RolloutRecord) -> Markup {
    let id = rollout.id;
    let allowed = rollout.state.allowed_actions();
    html! {
        // A `div`: a `<p>` cannot hold forms (the browser closes it before the first one).
        div id="actions" {
            @for (wanted, label, handler) in ACTIONS {
                @if allowed.contains(&wanted) {
                    form.inline method="post" action=(format!("/admin/rollouts/{id}/{}", wanted.as_str()))
                        onsubmit=(handler) {
                        button type="submit" id=(format!("action-{}", wanted.as_str())) { (label) }
                    }
                }
            }
        }
    }
}
