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
