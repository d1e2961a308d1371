//! The sales report in a browser: a date range, sales by day as a chart drawn here as SVG (no
//! chart library, nothing from a CDN) and as a table, the best sellers, and the same figures as
//! CSV. It calls the API's report handler, so module and range checks are the API's.

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use chrono::NaiveDate;
use maud::{Markup, html};
use serde::Deserialize;

use super::form::{Input, Problems};
use super::{Frame, Signed, money};
use crate::common::Params;
use crate::reports::{self, DaySales, ReportQuery, SalesReport};

const CURRENT: &str = "/reports";

/// `?from=&to=` as typed (empty: the default range).
#[derive(Debug, Default, Deserialize)]
pub struct RangeForm {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

impl RangeForm {
    /// The API's query, noting dates that cannot be read.
    fn query(&self, problems: &mut Problems) -> ReportQuery {
        let mut date = |field: &str, text: &str| {
            let text = text.trim();
            if text.is_empty() {
                return None;
            }
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok();
            if date.is_none() {
                problems.add(field, "must be a date such as 2026-12-31");
            }
            date
        };
        ReportQuery {
            from: date("from", &self.from),
            to: date("to", &self.to),
            branch_id: None,
        }
    }
}

async fn report(
    signed: Signed,
    form: &RangeForm,
) -> Result<SalesReport, (Frame, Problems, Option<web::ApiError>)> {
    let frame = signed.frame();
    let mut problems = Problems::default();
    let query = form.query(&mut problems);
    if !problems.is_empty() {
        return Err((frame, problems, None));
    }
    match reports::sales_report(signed.0, Params(query)).await {
        Ok(Json(report)) => Ok(report),
        Err(error) if error.fields.is_some() => Err((frame, Problems::of(&error), None)),
        Err(error) => Err((frame, Problems::default(), Some(error))),
    }
}

/// `GET /reports?from=&to=`.
pub async fn sales(signed: Signed, query: Result<Query<RangeForm>, QueryRejection>) -> Response {
    let Query(form) = query.unwrap_or_default();
    let frame = signed.frame();
    match report(signed, &form).await {
        Ok(report) => {
            let content = html! {
                (range_form(&form, &Problems::default()))
                div class="cards" {
                    section class="card" { h2 { "Sales" } p class="figure" id="report-sales" { (report.sales) } }
                    section class="card" { h2 { "Total" } p class="figure" id="report-total" { (money(report.total_cents)) } }
                }
                section class="card" style="margin-top:1rem" {
                    h2 { "Sales by day" }
                    (chart(&report))
                    p { a id="csv" href={ "/reports/sales.csv?from=" (report.from) "&to=" (report.to) } download { "Download CSV" } }
                }
                section class="card" style="margin-top:1rem" {
                    h2 { "Best sellers" }
                    @if report.top_items.is_empty() {
                        p class="muted" { "No sales in this range." }
                    } @else {
                        table class="stack" id="top-items" {
                            thead { tr { th { "Item" } th class="number" { "Quantity" } th class="number" { "Total" } } }
                            tbody {
                                @for item in &report.top_items {
                                    tr {
                                        td data-label="Item" { (item.name) }
                                        td class="number" data-label="Quantity" { (item.quantity) }
                                        td class="number" data-label="Total" { (money(item.total_cents)) }
                                    }
                                }
                            }
                        }
                    }
                }
            };
            frame.render("Reports", CURRENT, content)
        }
        Err((frame, problems, None)) => {
            frame.render_form("Reports", CURRENT, range_form(&form, &problems), &problems)
        }
        Err((frame, _, Some(error))) => frame.refusal("Reports", CURRENT, error),
    }
}

fn range_form(form: &RangeForm, problems: &Problems) -> Markup {
    let focus = problems.first(&["from", "to"]);
    let mut from = Input::text("from", "From", &form.from);
    from.kind = "date";
    let mut to = Input::text("to", "To", &form.to);
    to.kind = "date";
    html! {
        form class="toolbar stacked range" method="get" action="/reports" {
            div { (from.render(problems, focus)) }
            div { (to.render(problems, focus)) }
            button type="submit" { "Show" }
        }
    }
}

/// Every day of the range with its sales (days without any are zero).
fn every_day(report: &SalesReport) -> Vec<(NaiveDate, i64, i64)> {
    let mut recorded = report.days.iter().peekable();
    report
        .from
        .iter_days()
        .take_while(|day| *day <= report.to)
        .map(|day| match recorded.peek() {
            Some(DaySales {
                day: at,
                sales,
                total_cents,
            }) if *at == day => {
                let row = (day, *sales, *total_cents);
                recorded.next();
                row
            }
            _ => (day, 0, 0),
        })
        .collect()
}

const CHART_WIDTH: f64 = 720.0;
const CHART_HEIGHT: f64 = 220.0;
const AXIS: f64 = 22.0;

/// A bar per day, scaled to the range's best day; each bar says its day and total on hover and
/// to screen readers.
fn chart(report: &SalesReport) -> Markup {
    let days = every_day(report);
    let best = days
        .iter()
        .map(|(_, _, total)| *total)
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = CHART_WIDTH / days.len().max(1) as f64;
    let plot = CHART_HEIGHT - AXIS;
    let label = format!(
        "Sales by day from {} to {}; best day {}",
        report.from,
        report.to,
        money(best)
    );
    html! {
        svg id="sales-chart" role="img" aria-label=(label) viewBox={ "0 0 " (CHART_WIDTH) " " (CHART_HEIGHT) }
            preserveAspectRatio="none" style="width:100%;height:auto;max-height:16rem" {
            title { (label) }
            line x1="0" y1=(plot) x2=(CHART_WIDTH) y2=(plot) stroke="#8a93a3" stroke-width="1" {}
            @for (index, (day, sales, total)) in days.iter().enumerate() {
                @let height = plot * (*total as f64) / (best as f64);
                rect class="bar" x=(format!("{:.1}", index as f64 * slot + slot * 0.15))
                    y=(format!("{:.1}", plot - height)) width=(format!("{:.1}", slot * 0.7))
                    height=(format!("{:.1}", height)) fill="var(--brand)" data-day=(day) {
                    title { (day) ": " (money(*total)) " (" (sales) " sales)" }
                }
            }
            text x="0" y=(CHART_HEIGHT - 4.0) font-size="12" fill="#4a5263" { (report.from) }
            text x=(CHART_WIDTH) y=(CHART_HEIGHT - 4.0) font-size="12" fill="#4a5263" text-anchor="end" { (report.to) }
            text x="2" y="12" font-size="12" fill="#4a5263" { (money(best)) }
        }
    }
}

/// `GET /reports/sales.csv?from=&to=`: day, sales, total (in cents and as an amount).
pub async fn sales_csv(
    signed: Signed,
    query: Result<Query<RangeForm>, QueryRejection>,
) -> Response {
    let Query(form) = query.unwrap_or_default();
    match report(signed, &form).await {
        Ok(report) => {
            let mut csv = String::from("day,sales,total_cents,total\n");
            for (day, sales, total) in every_day(&report) {
                csv.push_str(&format!(
                    "{day},{sales},{total},{}.{:02}\n",
                    total / 100,
                    total % 100
                ));
            }
            let disposition = format!(
                "attachment; filename=\"sales-{}-to-{}.csv\"",
                report.from, report.to
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (header::CONTENT_DISPOSITION, disposition),
                ],
                csv,
            )
                .into_response()
        }
        Err((frame, problems, None)) => {
            frame.render_form("Reports", CURRENT, range_form(&form, &problems), &problems)
        }
        Err((frame, _, Some(error))) => frame.refusal("Reports", CURRENT, error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_day_of_the_range_is_charted_and_empty_days_are_zero() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).expect("a date");
        let report = SalesReport {
            from: day(1),
            to: day(4),
            sales: 3,
            total_cents: 900,
            days: vec![
                DaySales {
                    day: day(2),
                    sales: 2,
                    total_cents: 600,
                },
                DaySales {
                    day: day(4),
                    sales: 1,
                    total_cents: 300,
                },
            ],
            top_items: vec![],
        };
        let days = every_day(&report);
        assert_eq!(
            days,
            [
                (day(1), 0, 0),
                (day(2), 2, 600),
                (day(3), 0, 0),
                (day(4), 1, 300)
            ]
        );
        let svg = chart(&report).into_string();
        assert_eq!(svg.matches("class=\"bar\"").count(), 4);
        // The best day fills the plot; half as much, half the height.
        assert!(svg.contains(r#"data-day="2026-12-02""#), "{svg}");
        assert!(
            svg.contains(r#"height="198.0""#) && svg.contains(r#"height="99.0""#),
            "{svg}"
        );
    }
}
