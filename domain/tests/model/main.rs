//! The engine's rules exercised on a real model, the music one (`trackflow-music`): the domain
//! crate names no program's types, so its tests that need some take them from there, as an
//! outside program would.

mod authorization;
mod downstream;
mod mutation_plan;
mod operation;
mod protocol;

/// Installs the music model's registry (idempotent), so entity type names read back.
fn music() {
    trackflow_music::install().expect("the music registry installs");
}
