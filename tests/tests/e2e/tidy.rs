//! Boundaries that hold themselves, in the manner of rust-analyzer's tidy tests: these read the
//! workspace's manifests and sources and fail when a line of ARCHITECTURE.md stops being true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The workspace's library and binary crates (folder names), tests and benches aside.
const CRATES: &[&str] = &[
    "control-plane",
    "tenant-schema",
    "tenant-router",
    "tenant-app",
    "provisioner",
    "migrator",
    "web",
    "apex",
    "admin",
    "silo",
];

/// The `[dependencies]` of a crate (not dev- or build-dependencies).
fn dependencies(krate: &str) -> BTreeSet<String> {
    let path = workspace_root().join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("the manifest reads");
    let manifest: toml::Table = text.parse().expect("the manifest parses");
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    files_with_extension(dir, "rs")
}

/// Every file under `dir` (and its folders) whose name ends in `.extension`, with its text.
fn files_with_extension(dir: &Path, extension: &str) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("the source folder reads") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == extension) {
                let text = std::fs::read_to_string(&path).expect("the source reads");
                found.push((path, text));
            }
        }
    }
    found.sort();
    found
}

/// The identifier `text` starts with (letters, digits, `_`).
fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The text before a file's unit tests.
fn production_part(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |index| &text[..index])
}

#[test]
fn each_crate_depends_only_on_what_its_layer_may() {
    let silo_crates: BTreeSet<&str> = CRATES.iter().copied().collect();
    // (crate, what it must not depend on, why)
    let rules: &[(&str, &[&str], &str)] = &[
        (
            "control-plane",
            &["axum", "tower", "tower-http", "governor", "maud"],
            "the ground floor is the domain and the store; HTTP is the surfaces'",
        ),
        (
            "tenant-schema",
            &["sqlx", "tokio-postgres", "axum", "control-plane"],
            "the product's schema depends on no web or database crate besides refinery",
        ),
        (
            "tenant-router",
            &[
                "tenant-app",
                "apex",
                "admin",
                "provisioner",
                "migrator",
                "maud",
                "silo",
            ],
            "the router is platform: it knows nothing of the product or the other surfaces",
        ),
        (
            "tenant-app",
            &[
                "apex",
                "admin",
                "provisioner",
                "migrator",
                "silo",
                "deadpool-postgres",
                "sqlx",
            ],
            "the product reaches the platform only through the router's seam and the store",
        ),
        (
            "web",
            &[
                "tenant-router",
                "tenant-app",
                "apex",
                "admin",
                "provisioner",
                "migrator",
                "silo",
            ],
            "the shared HTTP toolkit sits right above the domain",
        ),
        (
            "provisioner",
            &[
                "axum",
                "web",
                "tenant-router",
                "tenant-app",
                "apex",
                "admin",
                "silo",
            ],
            "workers never serve HTTP",
        ),
        (
            "migrator",
            &[
                "axum",
                "web",
                "tenant-router",
                "tenant-app",
                "apex",
                "admin",
                "provisioner",
                "silo",
                "clap",
            ],
            "the rollout engine is a library; its CLI lives in silo",
        ),
        (
            "apex",
            &[
                "tenant-router",
                "tenant-app",
                "admin",
                "provisioner",
                "migrator",
                "silo",
            ],
            "the apex surface stands beside the others, not on them",
        ),
        (
            "admin",
            &["tenant-router", "tenant-app", "apex", "silo"],
            "the admin surface acts through the store, the provisioner and the migrator",
        ),
    ];
    let mut broken = Vec::new();
    for (krate, forbidden, why) in rules {
        let depends = dependencies(krate);
        for name in *forbidden {
            if depends.contains(*name) {
                broken.push(format!("{krate} depends on {name}: {why}"));
            }
        }
    }
    // The ground floor depends on no other Silo crate at all.
    for name in dependencies("control-plane") {
        if silo_crates.contains(name.as_str()) {
            broken.push(format!(
                "control-plane depends on {name}: it is the lowest crate"
            ));
        }
    }
    assert!(
        broken.is_empty(),
        "crate boundaries broken:\n{}",
        broken.join("\n")
    );
}

/// A crate's modules (top-level files and folders of `src`, binaries aside) and, for each, the
/// sibling modules its production code names (`crate::x`, `use crate::{x, …}`, `super::x`).
fn module_graph(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace_root().join(krate).join("src");
    let module_of = |path: &Path| -> Option<String> {
        let relative = path.strip_prefix(&src).ok()?;
        let first = relative.components().next()?.as_os_str().to_str()?;
        let name = first.strip_suffix(".rs").unwrap_or(first);
        (!matches!(name, "lib" | "main" | "bin")).then(|| name.to_owned())
    };
    let files = sources(&src);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(path, _)| module_of(path))
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|module| (module.clone(), BTreeSet::new()))
        .collect();
    for (path, text) in &files {
        let Some(module) = module_of(path) else {
            continue;
        };
        let code = production_part(text);
        let mut named = BTreeSet::new();
        for prefix in ["crate::", "super::"] {
            for (index, _) in code.match_indices(prefix) {
                let rest = &code[index + prefix.len()..];
                if let Some(group) = rest.strip_prefix('{') {
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    named.extend(group.split(',').map(|part| identifier(part.trim())));
                } else {
                    named.insert(identifier(rest));
                }
            }
        }
        let edges = graph
            .get_mut(&module)
            .expect("every module is in the graph");
        edges.extend(
            named
                .into_iter()
                .filter(|name| *name != module && modules.contains(name)),
        );
    }
    graph
}

/// One circle in `graph`, if there is any.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|seen| seen == node) {
            let mut circle = path[start..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in &graph[node] {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_circle_of_modules_inside_a_crate() {
    // The test's own detector, on a made-up graph, so a detector that finds nothing fails.
    let mut sample = BTreeMap::new();
    sample.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    sample.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_circle(&sample),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );

    let circles: Vec<String> = CRATES
        .iter()
        .filter_map(|krate| {
            find_circle(&module_graph(krate))
                .map(|circle| format!("{krate}: {}", circle.join(" → ")))
        })
        .collect();
    assert!(
        circles.is_empty(),
        "modules that name each other:\n{}",
        circles.join("\n")
    );
}

/// The tenant app's tables, read from the product's own migrations.
fn tenant_app_tables() -> Vec<String> {
    let mut tables = Vec::new();
    for (_, text) in files_with_extension(&workspace_root().join("tenant-schema/migrations"), "sql")
    {
        for (index, _) in text.match_indices("CREATE TABLE ") {
            let rest = &text[index + "CREATE TABLE ".len()..];
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            tables.push(identifier(rest));
        }
    }
    tables
}

#[test]
fn the_router_names_no_table_of_the_tenant_app() {
    let tables = tenant_app_tables();
    assert!(
        tables.iter().any(|table| table == "items") && tables.len() >= 5,
        "the product's tables are found: {tables:?}"
    );
    let mut found = Vec::new();
    for (path, text) in sources(&workspace_root().join("tenant-router/src")) {
        let upper = text.to_ascii_uppercase();
        for table in &tables {
            let table_upper = table.to_ascii_uppercase();
            for keyword in ["FROM ", "JOIN ", "INTO ", "UPDATE ", "TABLE "] {
                let needle = format!("{keyword}{table_upper}");
                for (index, _) in upper.match_indices(&needle) {
                    let after = upper[index + needle.len()..].chars().next();
                    if !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                        found.push(format!("{}: {keyword}{table}", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "the router queries the product's tables:\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_seam_opens_tenant_connections_for_the_tenant_app() {
    let forbidden = [
        "Purpose::TenantDatabaseUrl",
        "connect_tenant",
        "tokio_postgres::connect",
        "tokio_postgres::Config",
        "deadpool_postgres::",
    ];
    let mut found = Vec::new();
    for (path, text) in sources(&workspace_root().join("tenant-app/src")) {
        for needle in forbidden {
            if text.contains(needle) {
                found.push(format!("{}: {needle}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the tenant app opens tenant connections itself instead of through tenant_router::seam:\n{}",
        found.join("\n")
    );
}

/// The router skips the session reset for a connection whose request finished in the tenant
/// app (`BudgetedClient::serve`): that is safe only while the tenant app's SQL leaves nothing on
/// a session. So it sets nothing beyond its transaction (`SET LOCAL` is fine), takes no
/// session-level advisory lock, makes no temporary table, cursor or prepared statement by SQL,
/// listens to nothing, reads no sequence's session value, and opens transactions only through
/// the client's `transaction()` (which ends them, even when dropped) — never by raw SQL or a
/// multi-statement script.
#[test]
fn the_tenant_app_leaves_no_session_state_on_its_connections() {
    let forbidden = [
        "\"set ",
        "; set ",
        "set_config(",
        "session authorization",
        "set role",
        "listen ",
        "create temp",
        "temporary table",
        "pg_advisory_lock",
        "pg_try_advisory_lock",
        "pg_advisory_unlock",
        "\"prepare ",
        "\"declare ",
        "currval(",
        "lastval(",
        "\"begin",
        "\"start transaction",
        "\"commit",
        "\"rollback",
        "batch_execute(",
        "simple_query(",
    ];
    let mut found = Vec::new();
    for (path, text) in sources(&workspace_root().join("tenant-app/src")) {
        let code = production_part(&text).to_lowercase();
        for needle in forbidden {
            for (at, _) in code.match_indices(needle) {
                let after = &code[at + needle.len()..];
                // `SET name = …` / `SET name TO …` (not `SET LOCAL`, not page text).
                if needle.ends_with("set ") {
                    let name = identifier(after);
                    let rest = after[name.len()..].trim_start();
                    let a_setting = !name.is_empty()
                        && name != "local"
                        && (rest.starts_with('=') || rest.starts_with("to "));
                    if !a_setting {
                        continue;
                    }
                }
                found.push(format!("{}: {needle}", path.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the tenant app's SQL may leave session state on a pooled connection:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_error_code_is_documented_where_it_is_answered() {
    use silo::openapi::{OPERATIONS, responses_of};
    // Codes that only HTML pages answer (no JSON operation gives them).
    let page_only: &[(web::ErrorCode, &str)] = &[
        (
            web::ErrorCode::InvalidRollout,
            "the dashboard's start form; rollouts are started from pages and the migrator CLI",
        ),
        (
            web::ErrorCode::RevertMissing,
            "the dashboard's preview and start form (the CLI says `revert_missing` in words)",
        ),
        (
            web::ErrorCode::InvalidSignInLink,
            "the tenant app's one-time sign-in link, followed by a browser",
        ),
        (
            web::ErrorCode::InvalidResetLink,
            "the tenant app's password reset page, opened from a mailed link",
        ),
    ];
    let documented: BTreeSet<&str> = OPERATIONS
        .iter()
        .flat_map(|op| responses_of(op).into_values().flatten())
        .collect();
    let document = silo::openapi::document()
        .to_json()
        .expect("the document serialises");
    let missing: Vec<&str> = web::ErrorCode::ALL
        .iter()
        .filter(|code| !page_only.iter().any(|(page, _)| page == *code))
        .map(|code| code.as_str())
        .filter(|code| !documented.contains(code) || !document.contains(&format!("\"{code}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes no documented operation answers: {missing:?}"
    );
}

#[test]
fn production_files_stay_short_or_say_why() {
    const LIMIT: usize = 600;
    let mut long = Vec::new();
    for krate in CRATES {
        for (path, text) in sources(&workspace_root().join(krate).join("src")) {
            let lines = production_part(&text).lines().count();
            let head: String = text.lines().take(12).collect::<Vec<_>>().join("\n");
            if lines > LIMIT && !head.contains("Longer than") {
                long.push(format!("{} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over {LIMIT} lines without a `Longer than …` reason at the top:\n{}",
        long.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_notifications_come_from_one_publisher_per_kind_of_row() {
    let app = crate::harness::TestApp::spawn().await;
    let control = app.control_plane().await;
    let publishers: Vec<String> = control
        .query(
            "SELECT proname::text FROM pg_proc \
             WHERE prosrc LIKE '%pg_notify%' AND pronamespace = 'public'::regnamespace \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    // The tenant row's own publisher (it also announces a renamed tenant's old slug) and one for
    // every row that belongs to a tenant.
    assert_eq!(
        publishers,
        [
            "silo_publish_tenant_change",
            "silo_publish_tenant_row_change"
        ]
    );
    app.finish().await;
}
