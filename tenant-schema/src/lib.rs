//! The tenant application's schema: refinery SQL migrations for the sample back office, embedded
//! so every binary knows the full list, with checksums, without reading files at run time.
//!
//! Boundary: this crate depends on no web or database crate besides refinery.

mod embedded {
    refinery::embed_migrations!("migrations");
}

pub use refinery::{Migration, Runner};

/// The table, in each tenant database, that records which migrations were applied.
pub const HISTORY_TABLE: &str = "silo_schema_history";

/// What a tenant uses, as its plan's limits count it: one row of `branches`, `users` (active)
/// and `items`, each a bigint. Shared by the router (limits, `GET /api/v1/plan`) and the usage
/// sampler, so both count the same way.
pub const USAGE_COUNTS_SQL: &str = "SELECT (SELECT count(*) FROM branches) AS branches, \
     (SELECT count(*) FROM users WHERE is_active) AS users, \
     (SELECT count(*) FROM items) AS items";

/// A runner over every embedded migration, recording its history in [`HISTORY_TABLE`].
pub fn runner() -> Runner {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    runner
}

/// Every embedded migration, ordered by version.
pub fn migrations() -> Vec<Migration> {
    let mut all = runner().get_migrations().clone();
    all.sort_by_key(Migration::version);
    all
}

/// The newest schema version this build knows.
pub fn latest_version() -> i32 {
    migrations()
        .iter()
        .map(Migration::version)
        .max()
        .expect("tenant-schema embeds at least one migration")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one() {
        let versions: Vec<i32> = migrations().iter().map(Migration::version).collect();
        let expected: Vec<i32> = (1..=versions.len() as i32).collect();
        assert_eq!(
            versions, expected,
            "migrations must be numbered V1, V2, … without gaps"
        );
        assert_eq!(latest_version(), versions.len() as i32);
    }

    /// The embedded list is exactly the files on disk (the build script makes cargo rebuild
    /// when the folder changes; this catches a build that did not).
    #[test]
    fn every_file_in_the_folder_is_embedded() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<(i32, String)> = std::fs::read_dir(&folder)
            .expect("the migrations folder reads")
            .map(|entry| entry.expect("a directory entry").file_name())
            .filter_map(|name| {
                let name = name.to_str()?.strip_suffix(".sql")?.to_owned();
                let (version, title) = name.strip_prefix('V')?.split_once("__")?;
                Some((version.parse().ok()?, title.to_owned()))
            })
            .collect();
        on_disk.sort();
        let embedded: Vec<(i32, String)> = migrations()
            .iter()
            .map(|migration| (migration.version(), migration.name().to_owned()))
            .collect();
        assert!(!on_disk.is_empty());
        assert_eq!(embedded, on_disk);
    }
}
