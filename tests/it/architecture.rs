//! Architecture invariants as tests (docs/ARCHITECTURE.md): they read the workspace's manifests
//! and the dependency tree, and fail when the layout drifts. A new crate, a new dependency
//! between crates or a new user of Diesel is a decision: make it here, on purpose.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};
use toml::Value;

/// The workspace root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn read_toml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One workspace member's manifest.
struct Member {
    dir: PathBuf,
    manifest: Value,
}

impl Member {
    fn name(&self) -> &str {
        self.manifest["package"]["name"].as_str().expect("package name")
    }

    /// The names of the dependencies in `table` (`dependencies`, `dev-dependencies`).
    fn deps(&self, table: &str) -> BTreeSet<String> {
        self.manifest
            .get(table)
            .and_then(Value::as_table)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The workspace's own crates among the normal dependencies.
    fn internal_deps(&self) -> BTreeSet<String> {
        self.deps("dependencies").into_iter().filter(|d| d.starts_with("trackflow")).collect()
    }

    fn publishable(&self) -> bool {
        self.manifest["package"].get("publish").and_then(Value::as_bool) != Some(false)
    }
}

fn workspace() -> (Value, Vec<Member>) {
    let root = root();
    let manifest = read_toml(&root.join("Cargo.toml"));
    let members = manifest["workspace"]["members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|m| {
            let dir = root.join(m.as_str().expect("member path"));
            Member { manifest: read_toml(&dir.join("Cargo.toml")), dir }
        })
        .collect();
    (manifest, members)
}

/// Which workspace crates each crate may depend on (normal dependencies). Inner layers depend on
/// the domain and, where they implement a port over Diesel, on the shared Diesel plumbing; only
/// the client crate, the CLI, the benchmarks and the test suites put them together.
fn allowed_internal_deps() -> BTreeMap<&'static str, &'static [&'static str]> {
    const ANY: &[&str] = &["*"];
    BTreeMap::from([
        ("trackflow-domain", &[][..]),
        ("trackflow-db", &["trackflow-domain"][..]),
        ("trackflow-store", &["trackflow-domain", "trackflow-db"][..]),
        ("trackflow-server-store", &["trackflow-domain", "trackflow-db"][..]),
        ("trackflow-remote", &["trackflow-domain"][..]),
        ("trackflow-executors", &["trackflow-domain"][..]),
        ("trackflow-usecases", &["trackflow-domain"][..]),
        ("trackflow-server", &["trackflow-domain"][..]),
        (
            "trackflow-client",
            &[
                "trackflow-domain",
                "trackflow-store",
                "trackflow-remote",
                "trackflow-executors",
                "trackflow-usecases",
            ][..],
        ),
        ("trackflow", ANY),
        ("trackflow-bench", ANY),
        ("trackflow-tests", ANY),
        // The outside program: the client crate alone, as any program embedding the engine.
        ("trackflow-example-tasks", &["trackflow-client"][..]),
        // The music model: declarations on the domain's public API, nothing of the engine's
        // machinery (the client crate re-exports the same API).
        ("trackflow-music", &["trackflow-domain"][..]),
    ])
}

#[test]
fn every_crate_depends_only_on_the_crates_its_layer_allows() {
    let allowed = allowed_internal_deps();
    let (_, members) = workspace();
    let names: BTreeSet<&str> = members.iter().map(Member::name).collect();
    assert_eq!(names, allowed.keys().copied().collect(), "every workspace crate has a row in the table");
    for member in &members {
        let permitted = allowed[member.name()];
        if permitted == ["*"] {
            continue;
        }
        for dep in member.internal_deps() {
            assert!(permitted.contains(&dep.as_str()), "{} may not depend on {dep}", member.name());
        }
    }
}

#[test]
fn the_domain_depends_on_nothing_heavy() {
    const ALLOWED: &[&str] = &["async-trait", "mockall", "serde", "serde_json", "shaku", "thiserror", "uuid"];
    let (_, members) = workspace();
    let domain = members.iter().find(|m| m.name() == "trackflow-domain").expect("the domain crate");
    for dep in domain.deps("dependencies") {
        assert!(ALLOWED.contains(&dep.as_str()), "trackflow-domain may not depend on {dep}");
    }
    let mockall = &domain.manifest["dependencies"]["mockall"];
    assert_eq!(mockall.get("optional").and_then(Value::as_bool), Some(true), "mockall only behind `mock`");
}

#[test]
fn diesel_is_used_by_the_store_crates_alone_and_postgres_by_the_server_store_alone() {
    // The benchmarks time a bare Diesel insert as the floor of a local write; the test suites
    // read databases directly. Neither ships.
    const STORES: &[&str] = &["trackflow-db", "trackflow-store", "trackflow-server-store"];
    const MEASURING: &[&str] = &["trackflow-bench", "trackflow-tests"];
    let (workspace_manifest, members) = workspace();
    let postgres = |spec: &Value| {
        spec.get("features")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|f| f.as_str() == Some("postgres")))
    };
    let shared = &workspace_manifest["workspace"]["dependencies"];
    for name in ["diesel", "diesel_migrations"] {
        assert!(!postgres(&shared[name]), "the workspace's {name} entry must not enable postgres");
    }
    for member in &members {
        for name in ["diesel", "diesel_migrations"] {
            let Some(spec) = member.manifest.get("dependencies").and_then(|d| d.get(name)) else { continue };
            assert!(
                STORES.contains(&member.name()) || MEASURING.contains(&member.name()),
                "{} may not use {name}: Diesel belongs in the store crates",
                member.name()
            );
            assert_eq!(
                postgres(spec),
                member.name() == "trackflow-server-store",
                "{}: only trackflow-server-store enables diesel's postgres backend",
                member.name()
            );
        }
    }
}

#[test]
fn the_client_crate_compiles_no_server_cli_or_postgres_driver() {
    const FORBIDDEN: &[&str] =
        &["axum", "clap", "indicatif", "pq-sys", "trackflow-server", "trackflow-server-store", "trackflow"];
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root())
        .args(["tree", "--offline", "--locked", "-p", "trackflow-client", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("running cargo tree");
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let packages: BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(
        packages.contains("trackflow-store") && packages.contains("reqwest"),
        "the tree was read: {packages:?}"
    );
    for forbidden in FORBIDDEN {
        assert!(!packages.contains(forbidden), "trackflow-client's normal dependencies include {forbidden}");
    }
}

#[test]
fn internal_dependencies_carry_versions_and_published_crates_are_documented() {
    let (workspace_manifest, members) = workspace();
    for (name, spec) in workspace_manifest["workspace"]["dependencies"].as_table().expect("dependencies") {
        if name.starts_with("trackflow") {
            assert!(spec.get("version").is_some(), "workspace dependency {name} has no version");
        }
    }
    for member in members.iter().filter(|m| m.publishable()) {
        let name = member.name();
        let description = member.manifest["package"].get("description").and_then(Value::as_str);
        assert!(description.is_some_and(|d| !d.is_empty()), "{name} has no description");
        for dep in member.internal_deps() {
            let spec = &member.manifest["dependencies"][dep.as_str()];
            let inherited = spec.get("workspace").and_then(Value::as_bool) == Some(true);
            assert!(inherited || spec.get("version").is_some(), "{name}: {dep} has no version");
        }
        let lib = member.dir.join("src/lib.rs");
        let entry = if lib.exists() { lib } else { member.dir.join("src/main.rs") };
        let source = std::fs::read_to_string(&entry).expect("crate root");
        assert!(source.starts_with("//! "), "{name}: {} opens without crate docs", entry.display());
    }
}

/// The engine's non-test code names no type of the music model, nor its ids, patches or crate:
/// it works on declarations. The music model lives in `trackflow-music`, on the public API.
#[test]
fn the_engine_names_no_music_type() {
    const MUSIC: &[&str] = &[
        "Project",
        "AudioTrack",
        "AudioComment",
        "Playlist",
        "ProjectCollaborator",
        "UserProfile",
        "ProjectId",
        "AudioTrackId",
        "AudioCommentId",
        "PlaylistId",
        "CollaboratorId",
        "ProjectPatch",
        "AudioTrackPatch",
        "AudioCommentPatch",
        "PlaylistPatch",
        "ProjectCollaboratorPatch",
        "UserProfilePatch",
        "trackflow_music",
    ];
    const ENGINE: &[&str] = &[
        "domain/src",
        "data/common/src",
        "data/store/src",
        "data/server/src",
        "data/remote/src",
        "executors/src",
        "usecases/src",
        "server/src",
    ];
    let root = root();
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = ENGINE.iter().chain(["app/src"].iter()).map(|d| root.join(d)).collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
            continue;
        }
        let relative = path.strip_prefix(&root).expect("inside").to_string_lossy().into_owned();
        if path.extension().is_none_or(|e| e != "rs") || relative.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        // Non-test code: what comes before the file's test module.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let names = code.lines().filter(|l| !l.trim_start().starts_with("//")).any(|line| {
            line.split(|c: char| !c.is_alphanumeric() && c != '_').any(|word| MUSIC.contains(&word))
        });
        if names {
            found.push(relative);
        }
    }
    found.sort();
    assert!(found.is_empty(), "engine code naming a music type: {found:?}");
}
