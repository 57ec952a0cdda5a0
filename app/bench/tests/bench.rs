//! The `trackflow-bench` binary, run as a user would, at sizes small enough for CI: it checks
//! its own counts, so a lost or doubled row fails it.

use std::process::Command;

/// The downstream benchmark end to end at a small size: a client process of its own pulls
/// everything, then each incremental change, and the benchmark checks every count (it fails if
/// a row is missing or applied twice).
#[test]
fn the_downstream_benchmark_runs_its_client_process_and_checks_the_counts() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_string_lossy().into_owned();
    let args = [
        "--json",
        "downstream",
        "--dir",
        &dir,
        "--downstream-rows",
        "300",
        "--downstream-rounds",
        "1",
        "--downstream-pulls",
        "2",
    ];
    let out =
        Command::new(env!("CARGO_BIN_EXE_trackflow-bench")).args(args).output().expect("run trackflow-bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let names: Vec<&str> = reports[0]["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("initial sync, 300 rows")), "{names:?}");
    assert_eq!(names.iter().filter(|n| n.starts_with("incremental pull")).count(), 2, "{names:?}");
}

/// Runs `trackflow-bench --json <args>` and returns its measurements' names.
fn measurement_names(args: &[&str]) -> Vec<String> {
    let out =
        Command::new(env!("CARGO_BIN_EXE_trackflow-bench")).args(args).output().expect("run trackflow-bench");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let measurements = reports[0]["measurements"].as_array().expect("measurements").clone();
    measurements.iter().filter_map(|m| m["name"].as_str().map(str::to_owned)).collect()
}

/// The startup benchmark at a small size: its client processes open the seeded databases and
/// list the tracks it wrote (it fails if the count differs), and run a first upstream pass.
#[test]
fn the_startup_benchmark_starts_client_processes_over_its_databases() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_string_lossy().into_owned();
    let args = ["--json", "startup", "--dir", &dir, "--startup-rows", "1200", "--startup-queued", "30"];
    let names = measurement_names(&[&args[..], &["--startup-pass-queued", "300"]].concat());
    assert!(
        names.iter().any(|n| n.starts_with("process start to first list, 1200 rows, 30 queued")),
        "{names:?}"
    );
    assert_eq!(names.iter().filter(|n| n.starts_with("first upstream pass")).count(), 2, "{names:?}");
}

/// The live benchmark at a small size: every live query it waits on gives its new result (it
/// fails if one ends or a pulled page's tracks are missing).
#[test]
fn the_live_benchmark_gets_each_new_result() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_string_lossy().into_owned();
    let names = measurement_names(&["--json", "live", "--dir", &dir, "--iterations", "40", "--warmup", "4"]);
    assert!(names.iter().any(|n| n == "local write, then the live query's new result"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("memory per open live query")), "{names:?}");
}

/// The listeners benchmark at a small size, against a server process of its own: every push
/// reaches every entitled stream and none other (it fails otherwise).
#[test]
fn the_listeners_benchmark_pokes_every_entitled_stream() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_string_lossy().into_owned();
    let args = ["--json", "listeners", "--dir", &dir, "--listeners", "20", "--listener-writers", "4"];
    let names = measurement_names(&[&args[..], &["--listener-seconds", "1"]].concat());
    assert!(names.iter().any(|n| n.starts_with("push sent to poke received, 20 streams")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("server memory per open stream")), "{names:?}");
}

/// The scale-out benchmark at a small size, when PostgreSQL is configured: two server
/// processes share its database.
#[test]
fn the_scale_out_benchmark_pushes_through_two_server_processes() {
    let Some(admin) = trackflow_server_store::test_postgres_url("the_scale_out_benchmark") else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_string_lossy().into_owned();
    let args = ["--json", "scale-out", "--dir", &dir, "--postgres", &admin, "--push-clients", "4"];
    let names = measurement_names(&[&args[..], &["--push-batches", "1"]].concat());
    assert_eq!(
        names,
        [
            "postgres push batch 1, 4 clients, 1 instance(s)",
            "postgres push batch 1, 4 clients, 2 instance(s)"
        ]
    );
}
