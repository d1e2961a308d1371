//! `migrator lint`, and the lint findings `migrator plan` and `migrator rollout start` show:
//! which migrations are pending, their findings as lines or JSON. The rules and their levels
//! are `migrator::lint`'s.

use std::io::Write;

use control_plane::{Settings, Store};
use migrator::MigrationSet;
use migrator::lint::{Finding, Level, LintConfig};
use serde_json::{Value, json};

/// The findings in the migrations above `from` up to `to`.
pub(super) struct Linted {
    pub from: i32,
    pub to: i32,
    pub findings: Vec<Finding>,
}

/// The lint the settings ask for; a rule name no rule has is refused with the setting named.
pub(super) fn lint_config(settings: &Settings) -> anyhow::Result<LintConfig> {
    LintConfig::from_settings(&settings.migrations).map_err(anyhow::Error::new)
}

impl Linted {
    pub fn new(migrations: &MigrationSet, config: &LintConfig, from: i32, to: i32) -> Self {
        Self {
            from,
            to,
            findings: migrator::lint::lint(migrations.between(from, to), config),
        }
    }

    /// The migrations a rollout to `to` may still apply somewhere in the fleet.
    pub async fn pending(
        store: &Store,
        settings: &Settings,
        migrations: &MigrationSet,
        to: i32,
    ) -> anyhow::Result<Self> {
        let config = lint_config(settings)?;
        let from = migrator::lint::fleet_floor(store).await?;
        Ok(Self::new(migrations, &config, from, to))
    }

    pub fn error_rules(&self) -> Vec<String> {
        migrator::lint::error_rules(&self.findings)
            .into_iter()
            .collect()
    }

    fn count(&self, level: Level) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.level == level)
            .count()
    }

    pub fn json(&self) -> Value {
        json!({"from_version": self.from, "to_version": self.to,
               "errors": self.count(Level::Error), "warnings": self.count(Level::Warning),
               "error_rules": self.error_rules(), "findings": self.findings})
    }

    /// One line per finding (`file:line: level rule: message`, then its help), and a summary.
    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.from >= self.to {
            return writeln!(
                out,
                "Lint: no pending migrations (the fleet is at version {} or later).",
                self.to
            );
        }
        for finding in &self.findings {
            writeln!(
                out,
                "{}:{}: {} {}: {}",
                finding.file,
                finding.line,
                finding.level.as_str(),
                finding.rule,
                finding.message
            )?;
            if let Some(help) = &finding.help {
                writeln!(out, "    help: {help}")?;
            }
        }
        let errors = self.error_rules();
        write!(
            out,
            "Lint of versions {} to {}: {} errors, {} warnings.",
            self.from + 1,
            self.to,
            self.count(Level::Error),
            self.count(Level::Warning)
        )?;
        if errors.is_empty() {
            writeln!(out)
        } else {
            writeln!(
                out,
                " A rollout starts only with --accept-risk {}.",
                errors.join(",")
            )
        }
    }
}
