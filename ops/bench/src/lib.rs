//! Shared pieces of the benchmark programs: a private cluster, a Silo on port 0, and statistics.

use std::time::Duration;

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub per_second: f64,
}

/// Summarises latencies measured over `elapsed` of wall time.
pub fn summarise(mut samples: Vec<Duration>, elapsed: Duration) -> Summary {
    samples.sort();
    let at = |quantile: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    Summary {
        count: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        max_ms: at(1.0),
        per_second: samples.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
    }
}

/// One row of a markdown table.
pub fn row(name: &str, summary: &Summary, note: &str) -> String {
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {note} |",
        summary.count, summary.p50_ms, summary.p95_ms, summary.max_ms, summary.per_second
    )
}

pub const TABLE_HEADER: &str =
    "| run | n | p50 ms | p95 ms | max ms | per second | note |\n|---|---|---|---|---|---|---|";
