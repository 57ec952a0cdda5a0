//! `embed_migrations!` reads the migration directories at compile time: rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/server-sqlite");
    println!("cargo:rerun-if-changed=../../migrations/server-postgres");
}
