//! Two jobs at build time. `refinery::embed_migrations!` reads `migrations/` but does not tell
//! cargo to watch the folder: without `rerun-if-changed`, a migration added to a cached build tree
//! is silently left out. And revert scripts (`V{n}__name.revert.sql`, which refinery's file
//! pattern skips) are embedded here, as a generated table of `include_str!`s, so every binary
//! knows them as it knows the forward migrations.
use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let folder = std::path::Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("migrations");
    let mut reverts: Vec<(i32, String, String)> = Vec::new();
    for entry in std::fs::read_dir(&folder).expect("the migrations folder reads") {
        let path = entry.expect("a directory entry").path();
        let Some(file) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        let Some(stem) = file.strip_suffix(".revert.sql") else {
            continue;
        };
        let version = stem
            .strip_prefix('V')
            .and_then(|rest| rest.split_once("__"))
            .and_then(|(version, _)| version.parse::<i32>().ok())
            .unwrap_or_else(|| panic!("{file}: a revert script is named V{{n}}__name.revert.sql"));
        reverts.push((version, file.to_owned(), path.display().to_string()));
    }
    reverts.sort();
    let mut table = String::from("pub(crate) const REVERTS: &[(i32, &str, &str)] = &[\n");
    for (version, file, path) in &reverts {
        writeln!(table, "    ({version}, {file:?}, include_str!({path:?})),").expect("a String");
    }
    table.push_str("];\n");
    let out =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets it")).join("reverts.rs");
    std::fs::write(out, table).expect("OUT_DIR is writable");
}
