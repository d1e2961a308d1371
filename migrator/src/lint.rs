//! Lint before apply: every tenant-schema migration a rollout would run is parsed with squawk's
//! PostgreSQL parser and checked by its rules for changes that hurt a live database (table
//! rewrites, `ACCESS EXCLUSIVE` locks, `CREATE INDEX` without `CONCURRENTLY`, `NOT NULL` without
//! a default, type changes, renames and drops that break the code still running).
//!
//! Rules are squawk's names (`require-concurrent-index-creation`, `renaming-column`, …) plus
//! our own `syntax-error` for SQL squawk cannot parse. Most are errors; the style advice listed
//! in [`DEFAULT_WARNINGS`] is a warning. Settings may switch a rule off (`lint_allow`) or make
//! it a warning (`lint_warn`, which also switches on one of squawk's opt-in rules). An error
//! stops `migrator rollout start` and the dashboard unless the operator accepts that rule.

use std::collections::BTreeSet;

use serde::Serialize;
use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;
use tenant_schema::Migration;

use crate::MigrationSet;

/// Our rule for SQL the parser cannot read: nothing else can be checked in that file.
pub const SYNTAX_ERROR_RULE: &str = "syntax-error";

/// Rules that are advice on style rather than danger to a running database: warnings unless
/// the settings say otherwise.
pub const DEFAULT_WARNINGS: &[&str] = &[
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamp-tz",
    "ban-char-field",
    "prefer-robust-stmts",
    "identifier-too-long",
    "require-enum-value-ordering",
    "prefer-repack",
];

/// squawk rules Silo switches off: the migrator sets `lock_timeout` and `statement_timeout` on
/// the connection before every migration, so a migration need not set them itself.
const OFF_BY_DEFAULT: &[Rule] = &[Rule::RequireLockTimeout, Rule::RequireStatementTimeout];

/// How bad a finding is: an error stops a rollout unless its rule is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// One thing the lint found in one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub version: i32,
    /// The migration's file name, `V{version}__{name}.sql`.
    pub file: String,
    /// 1-based line of the statement (or token) the finding is about.
    pub line: usize,
    pub rule: String,
    pub level: Level,
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
}

/// A rule name in the settings or in `--accept-risk` that no rule has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{name}` in {place} is not a lint rule; use the names `migrator lint` prints (e.g. require-concurrent-index-creation)"
)]
pub struct UnknownRule {
    pub place: String,
    pub name: String,
}

/// Which rules are off and which are only warnings, from `[migrations] lint_allow` and
/// `lint_warn` in `silo.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintConfig {
    allow: BTreeSet<String>,
    warn: BTreeSet<String>,
}

impl LintConfig {
    /// Checks every name; `lint_allow` wins over `lint_warn` for a rule named in both.
    pub fn new(allow: &[String], warn: &[String]) -> Result<Self, UnknownRule> {
        Ok(Self {
            allow: rule_names(allow, "[migrations] lint_allow")?,
            warn: rule_names(warn, "[migrations] lint_warn")?,
        })
    }

    /// The lint the settings' `[migrations]` table asks for.
    pub fn from_settings(
        settings: &control_plane::settings::MigrationSettings,
    ) -> Result<Self, UnknownRule> {
        Self::new(&settings.lint_allow, &settings.lint_warn)
    }

    fn level(&self, rule: &str) -> Level {
        if self.warn.contains(rule) || DEFAULT_WARNINGS.contains(&rule) {
            Level::Warning
        } else {
            Level::Error
        }
    }

    fn linter(&self, in_transaction: bool) -> Linter {
        let parsed = |names: &BTreeSet<String>| -> Vec<Rule> {
            names.iter().filter_map(|name| name.parse().ok()).collect()
        };
        let mut exclude = parsed(&self.allow);
        let include: Vec<Rule> = parsed(&self.warn)
            .into_iter()
            .filter(|rule| !exclude.contains(rule))
            .collect();
        exclude.extend(
            OFF_BY_DEFAULT
                .iter()
                .filter(|rule| !include.contains(*rule)),
        );
        let mut linter = Linter::with_rules(&include, &exclude);
        // refinery runs each migration in a transaction of its own, unless it is marked to run
        // outside one (then `CONCURRENTLY` is allowed and expected).
        linter.settings.assume_in_transaction = in_transaction;
        linter
    }
}

/// Checks rule names (from settings or `--accept-risk`) and returns them in squawk's spelling.
pub fn rule_names(names: &[String], place: &str) -> Result<BTreeSet<String>, UnknownRule> {
    names
        .iter()
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name == SYNTAX_ERROR_RULE {
                return Ok(name.to_owned());
            }
            name.parse::<Rule>()
                .map(|rule| rule.to_string())
                .map_err(|_| UnknownRule {
                    place: place.to_owned(),
                    name: name.to_owned(),
                })
        })
        .collect()
}

/// The findings in one migration's SQL, in file order.
pub fn lint_sql(version: i32, file: &str, sql: &str, config: &LintConfig) -> Vec<Finding> {
    let finding = |offset: usize, rule: String, message: String, help: Option<String>| Finding {
        version,
        file: file.to_owned(),
        line: line_of(sql, offset),
        level: config.level(&rule),
        rule,
        message,
        help,
    };
    let parse = SourceFile::parse(sql);
    let syntax_errors = parse.errors();
    if !syntax_errors.is_empty() {
        // The rules would be checking a guess; report what the parser could not read instead.
        if config.allow.contains(SYNTAX_ERROR_RULE) {
            return Vec::new();
        }
        return syntax_errors
            .iter()
            .map(|error| {
                finding(
                    usize::from(error.range().start()),
                    SYNTAX_ERROR_RULE.to_owned(),
                    format!("The SQL does not parse: {}.", error.message()),
                    Some("Fix the statement; nothing else in this file was checked.".to_owned()),
                )
            })
            .collect();
    }
    config
        .linter(!tenant_schema::runs_outside_transaction(sql))
        .lint(&parse, sql)
        .into_iter()
        .map(|violation| {
            finding(
                usize::from(violation.text_range.start()),
                violation.code.to_string(),
                violation.message,
                violation.help,
            )
        })
        .collect()
}

/// The findings in `migrations`, migration by migration.
pub fn lint<'a>(
    migrations: impl IntoIterator<Item = &'a Migration>,
    config: &LintConfig,
) -> Vec<Finding> {
    migrations
        .into_iter()
        .flat_map(|migration| {
            let file = format!("V{}__{}.sql", migration.version(), migration.name());
            lint_sql(
                migration.version(),
                &file,
                migration.sql().unwrap_or_default(),
                config,
            )
        })
        .collect()
}

impl MigrationSet {
    /// The migrations a database at version `from` applies to reach `to`.
    pub fn between(&self, from: i32, to: i32) -> impl Iterator<Item = &Migration> {
        self.migrations()
            .iter()
            .filter(move |migration| migration.version() > from && migration.version() <= to)
    }
}

/// The rules of the error-level findings, each once.
pub fn error_rules(findings: &[Finding]) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|finding| finding.level == Level::Error)
        .map(|finding| finding.rule.clone())
        .collect()
}

/// The error rules in `findings` that `accepted` does not name: a rollout may start only when
/// this is empty.
pub fn unaccepted(findings: &[Finding], accepted: &BTreeSet<String>) -> Vec<String> {
    error_rules(findings)
        .into_iter()
        .filter(|rule| !accepted.contains(rule))
        .collect()
}

/// Why a rollout may not start with the risks it accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskRefusal {
    #[error(transparent)]
    UnknownRule(#[from] UnknownRule),
    #[error(
        "the migrations to apply have error-level lint findings ({}): fix them, or accept each of these risks by name (`--accept-risk {}` on the command line, the checkboxes on the dashboard)",
        .0.join(", "), .0.join(",")
    )]
    Unaccepted(Vec<String>),
    #[error(
        "accepted risks {} match no error-level finding in the migrations to apply; accept only what `migrator lint` reports",
        .0.join(", ")
    )]
    NotFound(Vec<String>),
}

/// Checks the risks an operator accepts against the findings: every error rule must be named,
/// and every name must be an error rule found. Returns the accepted rules to record.
pub fn check_accepted(
    findings: &[Finding],
    accepted: &[String],
) -> Result<Vec<String>, RiskRefusal> {
    let accepted = rule_names(accepted, "the accepted risks")?;
    let missing = unaccepted(findings, &accepted);
    if !missing.is_empty() {
        return Err(RiskRefusal::Unaccepted(missing));
    }
    let found = error_rules(findings);
    let stray: Vec<String> = accepted.difference(&found).cloned().collect();
    if !stray.is_empty() {
        return Err(RiskRefusal::NotFound(stray));
    }
    Ok(accepted.into_iter().collect())
}

/// The oldest schema version a servable tenant is at, or the released version when that is
/// lower (new tenants start there), or 0: the migrations above it are the ones a rollout may
/// still apply somewhere.
pub async fn fleet_floor(
    store: &control_plane::Store,
) -> Result<i32, control_plane::store::StoreError> {
    let oldest_tenant = store
        .version_distribution()
        .await?
        .into_iter()
        .filter_map(|(version, _)| version)
        .min();
    let released = store.released_version().await?;
    Ok(oldest_tenant.into_iter().chain(released).min().unwrap_or(0))
}

fn line_of(sql: &str, offset: usize) -> usize {
    let end = offset.min(sql.len());
    sql.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings(sql: &str, config: &LintConfig) -> Vec<(usize, String, Level)> {
        lint_sql(3, "V3__test.sql", sql, config)
            .into_iter()
            .map(|finding| (finding.line, finding.rule, finding.level))
            .collect()
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    /// Each risky statement, on line 2 after a comment, and the error rules it must raise.
    #[test]
    fn risky_statements_raise_their_rules_on_their_lines() {
        let cases: &[(&str, &[&str])] = &[
            (
                "CREATE INDEX i ON items (name);",
                &["require-concurrent-index-creation"],
            ),
            (
                "ALTER TABLE items ADD COLUMN x int NOT NULL;",
                &["adding-required-field"],
            ),
            (
                "ALTER TABLE items ALTER COLUMN name TYPE varchar(10);",
                &["changing-column-type"],
            ),
            (
                "ALTER TABLE items RENAME COLUMN name TO title;",
                &["renaming-column"],
            ),
            ("ALTER TABLE items RENAME TO products;", &["renaming-table"]),
            (
                "ALTER TABLE items DROP COLUMN barcode;",
                &["ban-drop-column"],
            ),
            ("DROP TABLE items;", &["ban-drop-table"]),
            (
                "ALTER TABLE items ALTER COLUMN barcode SET NOT NULL;",
                &["adding-not-nullable-field"],
            ),
            (
                "ALTER TABLE items ADD CONSTRAINT positive CHECK (sale_price_cents > 0);",
                &["constraint-missing-not-valid"],
            ),
            (
                "ALTER TABLE items ADD COLUMN code text UNIQUE;",
                &["disallowed-unique-constraint"],
            ),
            ("SELECT FROM WHERE ;", &[SYNTAX_ERROR_RULE]),
        ];
        for (statement, expected) in cases {
            let sql = format!("-- a migration\n{statement}\n");
            let found = findings(&sql, &LintConfig::default());
            let errors: BTreeSet<&str> = found
                .iter()
                .filter(|(_, _, level)| *level == Level::Error)
                .map(|(_, rule, _)| rule.as_str())
                .collect();
            for rule in *expected {
                assert!(errors.contains(rule), "{statement}: {found:?}");
            }
            assert!(
                found.iter().all(|(line, _, _)| *line == 2),
                "{statement}: {found:?}"
            );
        }
    }

    /// A migration marked to run outside a transaction may build indexes concurrently; unmarked,
    /// the same statements are refused (PostgreSQL would refuse them inside refinery's transaction).
    #[test]
    fn concurrent_indexes_belong_in_a_migration_marked_to_run_outside_a_transaction() {
        let statements = "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_idx ON items (name);\n\
                          CREATE INDEX CONCURRENTLY IF NOT EXISTS b_idx ON items (sku);";
        let marked = format!("-- silo:no-transaction\n{statements}");
        assert_eq!(findings(&marked, &LintConfig::default()), Vec::new());
        let unmarked = findings(statements, &LintConfig::default());
        assert!(
            unmarked.iter().any(|(_, rule, level)| rule
                == "ban-concurrent-index-creation-in-transaction"
                && *level == Level::Error),
            "{unmarked:?}"
        );
    }

    /// Safe changes raise no error; only the concurrent index gets squawk's advice to make the
    /// statement re-runnable (it runs outside a transaction, so a failure leaves it half-done).
    #[test]
    fn safe_changes_raise_no_errors() {
        let cases: &[(&str, &[&str])] = &[
            (
                "CREATE INDEX CONCURRENTLY items_name_idx ON items (name);",
                &["prefer-robust-stmts"],
            ),
            (
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_name_idx ON items (name);",
                &[],
            ),
            ("ALTER TABLE items ADD COLUMN notes text;", &[]),
            (
                "ALTER TABLE items ADD COLUMN points bigint NOT NULL DEFAULT 0;",
                &[],
            ),
            (
                "CREATE TABLE loyalty_cards (id bigint PRIMARY KEY, holder text NOT NULL);\n\
                 CREATE INDEX loyalty_cards_holder_idx ON loyalty_cards (holder);",
                &[],
            ),
        ];
        for (sql, warnings) in cases {
            let found = findings(sql, &LintConfig::default());
            let expected: Vec<(usize, String, Level)> = warnings
                .iter()
                .map(|rule| (1, (*rule).to_owned(), Level::Warning))
                .collect();
            assert_eq!(found, expected, "{sql}");
        }
    }

    #[test]
    fn findings_carry_the_file_and_a_message_with_help() {
        let found = lint_sql(
            7,
            "V7__index.sql",
            "\n\n\nCREATE INDEX i ON items (name);",
            &LintConfig::default(),
        );
        assert_eq!(found.len(), 1);
        let finding = &found[0];
        assert_eq!(
            (finding.version, finding.file.as_str(), finding.line),
            (7, "V7__index.sql", 4)
        );
        assert!(finding.message.contains("blocked"), "{finding:?}");
        assert!(
            finding
                .help
                .as_deref()
                .unwrap_or("")
                .contains("concurrently"),
            "{finding:?}"
        );
    }

    #[test]
    fn style_rules_are_warnings_by_default() {
        let found = findings(
            "ALTER TABLE items ADD COLUMN seen timestamp;",
            &LintConfig::default(),
        );
        assert_eq!(
            found,
            [(1, "prefer-timestamp-tz".to_owned(), Level::Warning)]
        );
    }

    #[test]
    fn settings_allow_or_warn_rules_and_refuse_unknown_names() {
        let sql = "CREATE INDEX i ON items (name);\nALTER TABLE items RENAME COLUMN name TO title;";
        let config = LintConfig::new(
            &names(&["require-concurrent-index-creation"]),
            &names(&["renaming-column"]),
        )
        .unwrap();
        assert_eq!(
            findings(sql, &config),
            [(2, "renaming-column".to_owned(), Level::Warning)]
        );
        // Allow wins over warn; a name in lint_warn also switches on an opt-in squawk rule.
        let config = LintConfig::new(
            &names(&["renaming-column"]),
            &names(&["renaming-column", "ban-add-column"]),
        )
        .unwrap();
        assert_eq!(
            findings(
                "ALTER TABLE items RENAME COLUMN name TO title;\nALTER TABLE items ADD COLUMN n text;",
                &config
            ),
            [(2, "ban-add-column".to_owned(), Level::Warning)]
        );
        let config = LintConfig::new(&names(&[SYNTAX_ERROR_RULE]), &[]).unwrap();
        assert!(findings("SELECT FROM WHERE ;", &config).is_empty());
        let error = LintConfig::new(&names(&["no-such-rule"]), &[]).unwrap_err();
        assert!(error.to_string().contains("lint_allow"), "{error}");
        assert!(error.to_string().contains("no-such-rule"), "{error}");
        assert!(LintConfig::new(&[], &names(&["renaming-colum"])).is_err());
    }

    #[test]
    fn a_rollout_needs_every_error_rule_accepted() {
        let found = findings_of(
            "CREATE INDEX i ON items (name);\nALTER TABLE items DROP COLUMN barcode;\n\
             ALTER TABLE items ADD COLUMN seen timestamp;",
        );
        let accepted = rule_names(&names(&["ban-drop-column"]), "--accept-risk").unwrap();
        assert_eq!(
            unaccepted(&found, &accepted),
            ["require-concurrent-index-creation"]
        );
        let accepted = rule_names(
            &names(&[" ban-drop-column", "require-concurrent-index-creation "]),
            "--accept-risk",
        )
        .unwrap();
        assert!(unaccepted(&found, &accepted).is_empty());
        assert!(rule_names(&names(&["typo"]), "--accept-risk").is_err());

        let refused = check_accepted(&found, &names(&["ban-drop-column"])).unwrap_err();
        assert_eq!(
            refused,
            RiskRefusal::Unaccepted(names(&["require-concurrent-index-creation"]))
        );
        assert!(
            refused
                .to_string()
                .contains("--accept-risk require-concurrent-index-creation"),
            "{refused}"
        );
        assert_eq!(
            check_accepted(
                &found,
                &names(&[
                    "require-concurrent-index-creation",
                    "ban-drop-column",
                    "renaming-table"
                ])
            ),
            Err(RiskRefusal::NotFound(names(&["renaming-table"])))
        );
        assert!(matches!(
            check_accepted(&found, &names(&["nope"])),
            Err(RiskRefusal::UnknownRule(_))
        ));
        assert_eq!(
            check_accepted(
                &found,
                &names(&["require-concurrent-index-creation", "ban-drop-column"])
            ),
            Ok(names(&[
                "ban-drop-column",
                "require-concurrent-index-creation"
            ]))
        );
        // Nothing to accept: nothing needs naming, and warnings need no acceptance.
        assert_eq!(check_accepted(&[], &[]), Ok(Vec::new()));
        let warning_only = findings_of("ALTER TABLE items ADD COLUMN seen timestamp;");
        assert_eq!(check_accepted(&warning_only, &[]), Ok(Vec::new()));
    }

    fn findings_of(sql: &str) -> Vec<Finding> {
        lint_sql(3, "V3__test.sql", sql, &LintConfig::default())
    }

    #[test]
    fn a_set_lints_only_the_versions_between() {
        let set =
            MigrationSet::with_extra(&[("V3__index", "CREATE INDEX i ON items (name);")]).unwrap();
        let pending = lint(set.between(2, 3), &LintConfig::default());
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].file, "V3__index.sql");
        assert!(lint(set.between(3, 3), &LintConfig::default()).is_empty());
    }

    /// The shipped migrations must pass: a risky one fails `cargo test` here, before any fleet
    /// sees it.
    #[test]
    fn the_shipped_migrations_have_no_error_level_findings() {
        let set = MigrationSet::embedded();
        assert!(!set.migrations().is_empty());
        let errors: Vec<Finding> = lint(set.migrations(), &LintConfig::default())
            .into_iter()
            .filter(|finding| finding.level == Level::Error)
            .collect();
        assert!(
            errors.is_empty(),
            "shipped migrations need expand/contract: {errors:#?}"
        );
    }
}
