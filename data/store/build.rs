//! `embed_migrations!` reads the migration directory at compile time: rebuild when it changes.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/local");
}
