//! `refinery::embed_migrations!` reads `migrations/` at build time but does not tell cargo to watch
//! the folder: without this, a migration added to a cached build tree is silently left out.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
