//! Migrations (and revert scripts) marked `-- silo:no-transaction`: statements PostgreSQL refuses
//! inside a transaction, such as `CREATE INDEX CONCURRENTLY`, run one at a time in autocommit,
//! under the session's `lock_timeout` and `statement_timeout`.
//!
//! A concurrent index build that fails half-way (a duplicate for a unique index, a lock
//! timeout, a killed process) leaves an INVALID index: it slows every write and a
//! `CREATE INDEX … IF NOT EXISTS` would silently keep it. So before running, invalid indexes the
//! script names are dropped (left by an earlier attempt); after a failure the ones it left —
//! named in it, or new since it started (an index it did not name) — are dropped and the error
//! says so; after success any left is dropped and reported as a failure.
//! Never kept silently. Statements may run again after a crash before the history row was
//! written: such scripts must be re-runnable (`IF NOT EXISTS`, as the lint advises).

use control_plane::store::quote_identifier;
use squawk_syntax::SourceFile;
use squawk_syntax::ast::AstNode as _;
use tenant_schema::Migration;
use tokio_postgres::Client;

use crate::MigrateError;

/// Applies `migration` outside a transaction and records it in refinery's history table, in the
/// row format refinery writes (so refinery's own checks read it like any other).
pub(crate) async fn apply(client: &mut Client, migration: &Migration) -> Result<(), MigrateError> {
    let sql = migration.sql().unwrap_or_default();
    run(client, migration.version(), sql).await?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    client
        .execute(
            &format!(
                "INSERT INTO {} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)",
                tenant_schema::HISTORY_TABLE
            ),
            &[
                &migration.version(),
                &migration.name(),
                &applied_on,
                &migration.checksum().to_string(),
            ],
        )
        .await?;
    tracing::info!(
        version = migration.version(),
        "applied outside a transaction"
    );
    Ok(())
}

/// Runs `sql`'s statements one by one in autocommit, cleaning up the invalid indexes it leaves.
pub(crate) async fn run(client: &Client, version: i32, sql: &str) -> Result<(), MigrateError> {
    for dropped in drop_invalid_indexes(client, sql, None).await? {
        tracing::warn!(version, index = %dropped, "dropped an invalid index left by an earlier attempt");
    }
    // An index the script builds without naming it gets a name PostgreSQL chooses: what is
    // invalid after a statement and was not before is the script's too.
    let before = invalid_indexes(client, "", Some(&[])).await?;
    let before = Some(before.as_slice());
    for (number, statement) in statements(sql).into_iter().enumerate() {
        if let Err(error) = client.batch_execute(statement).await {
            let cleanup = match drop_invalid_indexes(client, sql, before).await {
                Ok(dropped) if dropped.is_empty() => "no invalid index was left behind".to_owned(),
                Ok(dropped) => format!(
                    "dropped the invalid index {} it left behind; fix the cause and retry",
                    dropped.join(", ")
                ),
                Err(cleanup_error) => format!(
                    "could not look for invalid indexes it left ({cleanup_error}): check \
                     pg_index.indisvalid and DROP INDEX CONCURRENTLY them before retrying"
                ),
            };
            return Err(MigrateError::OutsideTransaction {
                version,
                statement: number + 1,
                error,
                cleanup,
            });
        }
    }
    let left = invalid_indexes(client, sql, before).await?;
    if let Some(index) = left.first() {
        let cleanup = match drop_invalid_indexes(client, sql, before).await {
            Ok(_) => "it was dropped; retry".to_owned(),
            Err(error) => format!("dropping it failed ({error}): DROP INDEX CONCURRENTLY it"),
        };
        return Err(MigrateError::InvalidIndexLeft {
            version,
            index: index.clone(),
            cleanup,
        });
    }
    Ok(())
}

/// The statements of `sql`, each alone (a simple query with several statements would run them
/// in one implicit transaction). SQL the parser cannot read goes whole: PostgreSQL's error is
/// the one to show.
fn statements(sql: &str) -> Vec<&str> {
    let parse = SourceFile::parse(sql);
    if !parse.errors().is_empty() {
        return vec![sql];
    }
    parse
        .tree()
        .stmts()
        .filter_map(|statement| {
            let range = statement.syntax().text_range();
            sql.get(usize::from(range.start())..usize::from(range.end()))
        })
        .collect()
}

/// Invalid indexes (`schema.name`, quoted) that no session is building now and that `sql` names
/// or, given the invalid indexes from before the script ran, that are new since them (so
/// `before` = `Some(&[])` gives every one).
async fn invalid_indexes(
    client: &Client,
    sql: &str,
    before: Option<&[String]>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE NOT i.indisvalid AND NOT EXISTS \
               (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let qualified = format!(
                "{}.{}",
                quote_identifier(row.get(0)),
                quote_identifier(row.get(1))
            );
            let new_since = before.is_some_and(|before| !before.contains(&qualified));
            (names(sql, row.get(1)) || new_since).then_some(qualified)
        })
        .collect())
}

async fn drop_invalid_indexes(
    client: &Client,
    sql: &str,
    before: Option<&[String]>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let invalid = invalid_indexes(client, sql, before).await?;
    for index in &invalid {
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"))
            .await?;
    }
    Ok(invalid)
}

/// Whether `sql` mentions `name` as a whole identifier (case-insensitively, as unquoted names
/// fold to lower case).
fn names(sql: &str, name: &str) -> bool {
    let sql = sql.to_lowercase();
    let name = name.to_lowercase();
    let is_identifier = |c: char| c.is_alphanumeric() || c == '_' || c == '$';
    sql.match_indices(&name).any(|(at, _)| {
        let before = sql[..at].chars().next_back();
        let after = sql[at + name.len()..].chars().next();
        !before.is_some_and(is_identifier) && !after.is_some_and(is_identifier)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_one_by_one() {
        let sql = "-- silo:no-transaction\nCREATE INDEX CONCURRENTLY a ON t (x);\n\
                   DO $$ BEGIN PERFORM 1; END $$;\nDROP INDEX CONCURRENTLY IF EXISTS b;";
        let found = statements(sql);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("CREATE INDEX CONCURRENTLY a"));
        assert!(found[1].contains("PERFORM 1; END $$"));
        assert!(found[2].starts_with("DROP INDEX"));
    }

    #[test]
    fn an_index_is_named_only_as_a_whole_identifier() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY Items_Name_Idx ON items (name);";
        assert!(names(sql, "items_name_idx"));
        assert!(!names(sql, "items_name"));
        assert!(!names(sql, "name_idx"));
        assert!(names(sql, "items"));
    }
}
