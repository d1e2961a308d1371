//! Importing items from a CSV file in a browser (staff and owners): a file field, and where the
//! newest import stands — its progress while it runs (the page asks the browser to reload it
//! every two seconds with a `Refresh` header: no script), then how many items arrived or every
//! problem by line and column. The import itself is a job ([`crate::imports`]).

use axum::extract::{Multipart, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse as _, Redirect, Response};
use control_plane::imports::ItemImport;
use maud::{Markup, html};

use super::form::Problems;
use super::{Frame, Signed};
use crate::AppState;
use crate::auth::Role;
use crate::imports::queue_import;
use web::ApiError;

const PAGE: (&str, &str) = ("Import items", "/items");

fn status(import: &ItemImport) -> Markup {
    html! {
        section class="card" id="import-status" data-state=(import.state) {
            @match import.state.as_str() {
                "queued" => { h2 { "Waiting to start" } p { "The import starts in a moment." } },
                "running" => {
                    h2 { "Importing" }
                    @if import.rows_total > 0 {
                        p { (import.rows_done) " of " (import.rows_total) " rows written." }
                        progress value=(import.rows_done) max=(import.rows_total) { }
                    } @else {
                        p { "Checking the file." }
                    }
                },
                "imported" => {
                    h2 { "Imported" }
                    p id="import-result" { (import.rows_done) " items were added." }
                    p { a href="/items" { "See the items" } }
                },
                _ => {
                    h2 { "Nothing was imported" }
                    p id="import-result" {
                        @if import.problem_count == 1 { "The file has a problem" }
                        @else { "The file has " (import.problem_count) " problems" }
                        "; fix the file and import it again."
                        @if import.problem_count > i32::try_from(import.problems.len()).unwrap_or(i32::MAX) {
                            " The first " (import.problems.len()) " are listed."
                        }
                    }
                    table class="stack" id="import-problems" {
                        thead { tr { th { "Line" } th { "Column" } th { "Problem" } } }
                        tbody {
                            @for problem in &import.problems {
                                tr {
                                    td data-label="Line" { @if problem.line == 0 { "the file" } @else { (problem.line) } }
                                    td data-label="Column" { (problem.field.as_deref().unwrap_or("")) }
                                    td data-label="Problem" { (problem.message) }
                                }
                            }
                        }
                    }
                },
            }
        }
    }
}

fn content(latest: Option<&ItemImport>, problems: &Problems) -> Markup {
    let open = latest.is_some_and(ItemImport::is_open);
    html! {
        @if let Some(import) = latest { (status(import)) }
        @if !open {
            section class="card" style="margin-top:1rem" {
                h2 { "Import a CSV file" }
                p { "The first row names the columns: " code { "sku" } " and " code { "name" }
                    " are required; " code { "barcode" } ", " code { "unit" } ", "
                    code { "cost_price" } ", " code { "sale_price" } " (like 12.50), "
                    code { "requires_prescription" } " (yes or no) and " code { "reorder_level" }
                    " may follow, in any order. Every row is checked first: if any has a problem, "
                    "nothing is imported and each problem is listed by line." }
                @if let Some(general) = &problems.general {
                    p class="notice error" role="alert" { (general) }
                }
                form class="stacked" method="post" action="/items/import" enctype="multipart/form-data" novalidate {
                    div class="field" {
                        label for="file" { "CSV file" }
                        input id="file" name="file" type="file" accept=".csv,text/csv"
                            aria-invalid=[problems.problem("file").map(|_| "true")]
                            aria-describedby=[problems.problem("file").map(|_| "file-error")]
                            autofocus[problems.problem("file").is_some()];
                        @if let Some(problem) = problems.problem("file") {
                            p class="field-error" id="file-error" { "CSV file " (problem) "." }
                        }
                    }
                    button class="primary" type="submit" { "Import" }
                }
            }
        }
    }
}

/// The page for `latest`: reloaded every two seconds while the import is open.
fn answer(frame: &Frame, latest: Option<&ItemImport>, problems: &Problems) -> Response {
    let mut response = frame.render_form(PAGE.0, PAGE.1, content(latest, problems), problems);
    if latest.is_some_and(ItemImport::is_open) {
        response
            .headers_mut()
            .insert("refresh", HeaderValue::from_static("2"));
    }
    response
}

/// `GET /items/import`.
pub async fn show(State(state): State<AppState>, signed: Signed) -> Response {
    let frame = signed.frame();
    if let Err(refused) = signed.may(&frame, PAGE, "inventory", Role::Staff).await {
        return refused;
    }
    match state
        .router
        .store()
        .latest_import(signed.0.connection.tenant.id)
        .await
    {
        Ok(latest) => answer(&frame, latest.as_ref(), &Problems::default()),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /items/import` (`multipart/form-data`, the file in `file`): queues the import, then
/// `303` back to the page, which follows it.
pub async fn submit(
    State(state): State<AppState>,
    signed: Signed,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let frame = signed.frame();
    if let Err(refused) = signed.may(&frame, PAGE, "inventory", Role::Staff).await {
        return refused;
    }
    let file = match multipart {
        Ok(multipart) => file_of(multipart).await,
        Err(_) => None,
    };
    let Some(file) = file else {
        let mut problems = Problems::default();
        problems.add("file", "must be chosen: a CSV file");
        return answer(&frame, None, &problems);
    };
    match queue_import(&state.router, &signed.0, &file).await {
        Ok(_) => Redirect::to("/items/import").into_response(),
        // One at a time: the page shows the import still under way.
        Err(error) if error.status() == StatusCode::CONFLICT => {
            let latest = state
                .router
                .store()
                .latest_import(signed.0.connection.tenant.id)
                .await
                .ok()
                .flatten();
            let mut response = answer(&frame, latest.as_ref(), &Problems::of(&error));
            *response.status_mut() = StatusCode::CONFLICT;
            response
        }
        Err(error) => frame.form_refused(PAGE, error, |problems| content(None, problems)),
    }
}

/// The bytes of the form's `file` part, if it has one that is not empty.
async fn file_of(mut multipart: Multipart) -> Option<axum::body::Bytes> {
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some("file") {
            return field.bytes().await.ok().filter(|bytes| !bytes.is_empty());
        }
    }
    None
}
