//! Where log lines go and how they look: `SILO_LOG` filters (tracing's `EnvFilter` syntax),
//! `SILO_LOG_FORMAT` picks `text` (for people) or `json` (one object per line, for collectors).
//! A JSON line carries its event's fields and the fields of every span it happened in, so a
//! tenant request's lines name the tenant (`"tenant": "<slug>"`) at the top level.

use std::fmt;

use tracing::Subscriber;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    /// The format `SILO_LOG_FORMAT` names (unset: text); an unknown name is an error naming it.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("SILO_LOG_FORMAT") {
            Err(_) => Ok(Self::Text),
            Ok(value) => Self::parse(&value),
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "SILO_LOG_FORMAT must be `text` or `json`, not `{other}`"
            )),
        }
    }
}

/// Installs the process's subscriber, writing to stderr; `default_filter` applies when
/// `SILO_LOG` is unset.
pub fn init(default_filter: &str) -> Result<(), String> {
    let format = LogFormat::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SILO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .event_format(JsonLines)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .init(),
    }
    Ok(())
}

/// One JSON object per event: `timestamp`, `level`, `target`, `message` and the event's fields,
/// then each enclosing span's fields (innermost wins), flattened, so `tenant` is a top-level key.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".to_owned(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        let metadata = event.metadata();
        line.insert("level".to_owned(), metadata.level().as_str().into());
        line.insert("target".to_owned(), metadata.target().into());
        // Outer spans first, so an inner span's field of the same name wins.
        if let Some(scope) = context.event_scope() {
            for span in scope.from_root() {
                line.insert("span".to_owned(), span.name().into());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(fields)) =
                    serde_json::from_str::<serde_json::Value>(fields.as_str())
                {
                    line.extend(fields);
                }
            }
        }
        let mut visitor = JsonVisitor(&mut line);
        event.record(&mut visitor);
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields into the line.
struct JsonVisitor<'line>(&'line mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

/// Log lines a test's subscriber writes, to read back.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Captured {
    /// What was written so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("utf-8 logs")
    }
}

#[cfg(test)]
impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_name_the_tenant_of_the_span_they_happened_in() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .json()
            .event_format(JsonLines)
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(attempt = 1, "outside any tenant");
            let request = tracing::info_span!("request", path = "/items");
            let _request = request.enter();
            let tenant = tracing::info_span!("tenant", tenant = "acme");
            let _tenant = tenant.enter();
            tracing::warn!(status = 503_u64, "pool \"busy\"");
        });
        let text =
            String::from_utf8(captured.0.lock().expect("not poisoned").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside any tenant");
        assert_eq!(lines[0]["attempt"], 1);
        assert!(lines[0].get("tenant").is_none(), "{text}");
        assert_eq!(lines[1]["tenant"], "acme");
        assert_eq!(lines[1]["path"], "/items");
        assert_eq!(lines[1]["span"], "tenant");
        assert_eq!(lines[1]["level"], "WARN");
        assert_eq!(lines[1]["status"], 503);
        assert_eq!(lines[1]["message"], "pool \"busy\"");
    }

    #[test]
    fn the_format_is_text_or_json_and_anything_else_is_named() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse(" JSON "), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        let error = LogFormat::parse("yaml").expect_err("refused");
        assert!(
            error.contains("yaml") && error.contains("SILO_LOG_FORMAT"),
            "{error}"
        );
    }
}
