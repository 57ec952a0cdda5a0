//! Crash safety of the local store: a writer process is killed with SIGKILL at random moments,
//! and after every kill the database must be intact, every acknowledged write must be there
//! exactly once with its outbox operation, and no operation may exist without its row.
//!
//! `TRACKFLOW_CRASH_CYCLES` sets the number of kills (default 200); `TRACKFLOW_CRASH_SEED`
//! replays a run (the seed is printed at the start). Every `CYCLES_PER_DATABASE` kills the test
//! starts over on a fresh database, so each check stays cheap however long the run.

use diesel::{prelude::*, sql_types::Text};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
};
use trackflow_tests::Ack;

/// Kills survived by one database file before the next cycle starts a fresh one.
const CYCLES_PER_DATABASE: u64 = 50;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(QueryableByName)]
struct Text1 {
    #[diesel(sql_type = Text)]
    value: String,
}

#[derive(QueryableByName)]
struct Op {
    #[diesel(sql_type = Text)]
    entity_type: String,
    #[diesel(sql_type = Text)]
    entity_id: String,
    #[diesel(sql_type = Text)]
    kind: String,
}

/// What the acknowledgements so far promise.
#[derive(Default)]
struct Promised {
    projects: HashSet<String>,
    tracks: HashSet<String>,
    updates: HashMap<String, usize>,
}

impl Promised {
    fn record(&mut self, ack: &Ack) {
        match ack {
            Ack::Project(id) => {
                self.projects.insert(id.to_string());
            }
            Ack::Track(id) => {
                self.tracks.insert(id.to_string());
            }
            Ack::Update(id) => *self.updates.entry(id.to_string()).or_default() += 1,
        }
    }
}

fn ids(conn: &mut SqliteConnection, table: &str) -> HashSet<String> {
    diesel::sql_query(format!("SELECT id AS value FROM {table}"))
        .load::<Text1>(conn)
        .expect("read ids")
        .into_iter()
        .map(|r| r.value)
        .collect()
}

/// Checks the database against what was acknowledged; returns a description of the first
/// violation.
fn verify(path: &Path, promised: &Promised) -> Result<(), String> {
    let mut conn = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| e.to_string())?;
    let integrity = diesel::sql_query("SELECT integrity_check AS value FROM pragma_integrity_check")
        .load::<Text1>(&mut conn)
        .map_err(|e| e.to_string())?;
    if integrity.len() != 1 || integrity[0].value != "ok" {
        return Err(format!("integrity_check: {:?}", integrity.iter().map(|r| &r.value).collect::<Vec<_>>()));
    }
    // A kill during the very first open may land before the migration committed. Migrations
    // run in one transaction, so the schema is then wholly absent, never half there.
    let schema_tables = ["projects", "audio_tracks", "pending_operations", "sync_metadata", "local_settings"];
    let present = diesel::sql_query(format!(
        "SELECT name AS value FROM sqlite_master WHERE type = 'table' AND name IN ({})",
        schema_tables.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ")
    ))
    .load::<Text1>(&mut conn)
    .map_err(|e| e.to_string())?;
    if present.is_empty() {
        return match promised.projects.is_empty() && promised.tracks.is_empty() {
            true => Ok(()),
            false => Err("acknowledged writes but no schema".to_owned()),
        };
    }
    if present.len() != schema_tables.len() {
        return Err(format!(
            "half-migrated schema: only {:?}",
            present.iter().map(|t| &t.value).collect::<Vec<_>>()
        ));
    }
    let projects = ids(&mut conn, "projects");
    let tracks = ids(&mut conn, "audio_tracks");
    let ops = diesel::sql_query("SELECT entity_type, entity_id, kind FROM pending_operations")
        .load::<Op>(&mut conn)
        .map_err(|e| e.to_string())?;

    let mut creates: HashMap<&str, usize> = HashMap::new();
    let mut updates: HashMap<&str, usize> = HashMap::new();
    for op in &ops {
        let rows = match op.entity_type.as_str() {
            "project" => &projects,
            "audio_track" => &tracks,
            other => return Err(format!("unexpected operation on {other}")),
        };
        if !rows.contains(&op.entity_id) {
            return Err(format!(
                "{} operation on {} {} without its row",
                op.kind, op.entity_type, op.entity_id
            ));
        }
        match op.kind.as_str() {
            "create" => *creates.entry(&op.entity_id).or_default() += 1,
            "update" => *updates.entry(&op.entity_id).or_default() += 1,
            other => return Err(format!("unexpected {other} operation")),
        }
    }
    // Nothing is acknowledged by a server here, so every row must still have exactly one
    // queued create — acknowledged or not, a row never exists without its operation.
    for id in projects.iter().chain(&tracks) {
        match creates.get(id.as_str()) {
            Some(1) => {}
            n => return Err(format!("row {id} has {} create operations", n.copied().unwrap_or(0))),
        }
    }
    for id in promised.projects.iter().chain(&promised.tracks) {
        if !projects.contains(id) && !tracks.contains(id) {
            return Err(format!("acknowledged create of {id} is lost"));
        }
    }
    // The kill may land after an update committed but before its line was printed: one
    // operation more than acknowledged is allowed, one fewer is a lost write.
    for (id, acked) in &promised.updates {
        let queued = updates.get(id.as_str()).copied().unwrap_or(0);
        if queued < *acked || queued > acked + 1 {
            return Err(format!("project {id}: {acked} acknowledged updates but {queued} queued"));
        }
    }
    Ok(())
}

#[test]
fn sigkill_at_random_moments_never_loses_or_duplicates_acknowledged_writes() {
    let cycles = env_number("TRACKFLOW_CRASH_CYCLES", 200);
    let seed = env_number("TRACKFLOW_CRASH_SEED", rand::random());
    println!("crash test: {cycles} cycles, seed {seed} (replay with TRACKFLOW_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut db = dir.path().join("crash-0.db");
    let mut promised = Promised::default();
    let (mut total_acks, mut total_projects, mut total_tracks) = (0usize, 0usize, 0usize);

    for cycle in 0..cycles {
        if cycle > 0 && cycle % CYCLES_PER_DATABASE == 0 {
            total_projects += promised.projects.len();
            total_tracks += promised.tracks.len();
            promised = Promised::default();
            db = dir.path().join(format!("crash-{}.db", cycle / CYCLES_PER_DATABASE));
        }
        // Kill after 0..40 acknowledgements: sometimes while the store is still opening or
        // migrating, mostly in the middle of a later write.
        let kill_after = rng.random_range(0..40);
        let mut child = Command::new(env!("CARGO_BIN_EXE_trackflow-crash-writer"))
            .arg(&db)
            .arg(rng.random::<u64>().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < kill_after {
            match lines.next() {
                Some(Ok(line)) => {
                    let ack = Ack::parse(&line).unwrap_or_else(|| panic!("cycle {cycle}: bad line {line:?}"));
                    promised.record(&ack);
                    seen += 1;
                }
                other => panic!("cycle {cycle} (seed {seed}): writer stopped early: {other:?}"),
            }
        }
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");
        // Lines already in the pipe were acknowledged before the kill: they count too.
        for line in lines.map_while(Result::ok) {
            if let Some(ack) = Ack::parse(&line) {
                promised.record(&ack);
            }
        }
        total_acks += seen;
        if let Err(violation) = verify(&db, &promised) {
            panic!("cycle {cycle} (seed {seed}): {violation}");
        }
    }
    total_projects += promised.projects.len();
    total_tracks += promised.tracks.len();
    println!(
        "crash test: {cycles} kills, {total_acks} acknowledged writes read before kills, \
         {total_projects} projects and {total_tracks} tracks promised"
    );
    assert!(total_projects > cycles as usize / 4, "the writer made progress");
}
