//! The `trackflow` binary, run as a user would: offline commands against a temporary data
//! directory, JSON output, and one-line errors with non-zero exit codes.

use std::process::{Command, Output};

struct Cli {
    dir: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run trackflow")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_trackflow"));
        command
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .env_remove("TRACKFLOW_LOG")
            .env_remove("TRACKFLOW_PASSWORD")
            .env_remove("TRACKFLOW_SERVER");
        command
    }

    /// Runs a command that must succeed and returns its JSON output.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Runs a command that must fail; returns (exit code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The `id` of what a command printed.
pub(crate) fn id(value: &serde_json::Value) -> String {
    value["id"].as_str().expect("id").to_owned()
}

fn one_line(stderr: &str) {
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected, got: {stderr:?}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
}

#[test]
fn an_offline_session_from_profile_to_playlist() {
    let cli = Cli::new();
    let me = cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let project = cli.json(&["project", "create", "--name", "First EP", "--description", "demo"]);
    assert_eq!(project["owner_id"], me["id"]);
    let p = id(&project);
    let intro = cli.json(&["track", "add", &p, "--name", "Intro", "--duration", "1:30"]);
    assert_eq!(intro["duration_ms"], 90_000);
    let t = id(&intro);
    let comment = cli.json(&["comment", "add", "--track", &t, "--at", "0:45.5", "--text", "nice"]);
    assert_eq!(comment["timestamp_ms"], 45_500);
    let playlist = cli.json(&["playlist", "create", "--project", &p, "--name", "Mix", "--track", &t]);
    assert_eq!(playlist["track_ids"], serde_json::json!([t]));
    let renamed = cli.json(&["project", "update", &p, "--name", "Renamed EP"]);
    assert_eq!(renamed["name"], "Renamed EP");
    assert_eq!(renamed["description"], "demo", "fields not named stay");

    let listed = cli.json(&["project", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(cli.json(&["track", "list", "--project", &p]).as_array().map(Vec::len), Some(1));
    assert_eq!(cli.json(&["comment", "list", "--track", &t]).as_array().map(Vec::len), Some(1));

    let queue = cli.json(&["queue"]);
    assert_eq!(queue["counts"]["pending"], 6, "profile, project, track, comment, playlist, rename");
    let kinds: Vec<&str> = queue["operations"]
        .as_array()
        .expect("ops")
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["create", "create", "create", "create", "create", "update"]);

    cli.json(&["track", "delete", &t]);
    assert_eq!(cli.json(&["track", "list", "--project", &p]).as_array().map(Vec::len), Some(0));
    let human = cli.run(&["project", "show", &p]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("Renamed EP"));
}

#[test]
fn mistakes_get_one_clear_line_and_a_non_zero_exit() {
    let cli = Cli::new();
    let (code, err) = cli.fails(&["project", "create", "--name", "Orphan"]);
    assert_eq!(code, 1);
    one_line(&err);
    assert!(err.contains("trackflow profile create"), "{err}");

    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let table: [(&[&str], i32, &str); 11] = [
        (&["project", "create"], 2, "not provided: --name <NAME>"),
        (&["project", "update", "01a21dc5-0000-7000-8000-000000000000"], 2, "<--name <NAME>|--description"),
        (&["profile", "update"], 2, "<--name <NAME>|--email <EMAIL>"),
        (
            &[
                "comment",
                "add",
                "--track",
                "01a21dc5-0000-7000-8000-000000000000",
                "--at",
                "-5",
                "--text",
                "x",
            ],
            2,
            "'-5' is negative",
        ),
        (&["project", "show", "not-an-id"], 2, "invalid project id"),
        (
            &["project", "show", "01a21dc5-0000-7000-8000-000000000000"],
            1,
            "project 01a21dc5-0000-7000-8000-000000000000 not found",
        ),
        (&["project", "create", "--name", "   "], 1, "invalid name"),
        (
            &["track", "add", "01a21dc5-0000-7000-8000-000000000000", "--name", "x", "--duration", "soon"],
            2,
            "is not a time",
        ),
        (
            &["track", "add", "01a21dc5-0000-7000-8000-000000000000", "--name", "x", "--duration", "10"],
            1,
            "not found",
        ),
        (&["profile", "update", "--email", "nope"], 1, "invalid email"),
        (&["frobnicate"], 2, "unrecognized subcommand"),
    ];
    for (args, expected_code, expected_text) in table {
        let (code, err) = cli.fails(args);
        assert_eq!(code, expected_code, "{args:?}: {err}");
        one_line(&err);
        assert!(err.contains(expected_text), "{args:?}: {err}");
    }
    // Nothing was queued by the failed commands: only the profile's create.
    assert_eq!(cli.json(&["queue"])["counts"]["pending"], 1);
}

#[test]
fn the_queue_reports_health_and_only_failed_operations_can_be_retried_or_discarded() {
    let cli = Cli::new();
    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let queue = cli.json(&["queue"]);
    let health = &queue["health"];
    assert_eq!(
        (health["status"].as_str(), health["pending"].as_u64(), health["failed"].as_u64()),
        (Some("healthy"), Some(1), Some(0))
    );
    assert!(health["oldest_pending_age_ms"].is_u64(), "{health}");
    let op = queue["operations"][0]["id"].as_str().expect("op id").to_owned();

    let (code, err) = cli.fails(&["queue", "discard", &op]);
    one_line(&err);
    assert!(code == 1 && err.contains("is pending, not failed"), "{err}");
    assert_eq!(cli.json(&["queue", "retry", "--all"])["retried"], 0);
    let (code, err) = cli.fails(&["queue", "retry", &op]);
    assert!(code == 1 && err.contains("is pending, not failed"), "a pending operation is not retried: {err}");
    let (code, err) = cli.fails(&["queue", "retry"]);
    assert!(code == 2 && err.contains("required"), "{err}");
    let (code, err) = cli.fails(&["queue", "discard", "not-an-id"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(cli.json(&["queue"])["counts"]["pending"], 1, "nothing changed");
    let text = String::from_utf8(cli.run(&["queue"]).stdout).expect("utf-8");
    assert!(text.starts_with("upstream healthy: 1 pending, 0 in flight, 0 failed"), "{text}");
}

#[test]
fn the_demo_ends_with_every_client_matching_the_server() {
    let cli = Cli::new();
    let out = cli.run(&["demo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Ben syncs: offline, 3 changes wait in the outbox"), "{text}");
    for name in ["Ana", "Ben"] {
        assert!(
            text.contains(&format!("✓ {name}'s client holds exactly what the server shows {name}")),
            "{text}"
        );
    }
    // The demo used --data-dir, so each client is there to inspect, as a profile.
    let projects = cli.json(&["--profile", "ben", "project", "list"]);
    assert_eq!(projects[0]["name"], "Night Drive EP (final)", "{projects}");
    // And it refuses to run over what it left.
    let (code, err) = cli.fails(&["demo"]);
    one_line(&err);
    assert!(code == 1 && err.contains("needs an empty directory"), "{err}");

    // With --json it tells nothing as it goes and reports one object.
    let out = Cli::new().run(&["--json", "demo"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["converged"], true, "{report}");
    assert_eq!(report["project"]["name"], "Night Drive EP (final)", "{report}");
    let clients = report["clients"].as_array().expect("clients");
    assert!(clients.len() == 2 && clients.iter().all(|c| c["rows"].as_u64() > Some(0)), "{report}");
}

#[test]
fn an_interrupted_profile_setup_is_finished_not_duplicated() {
    use diesel::{connection::SimpleConnection, Connection};
    let cli = Cli::new();
    // Initialise the database, then leave a session without its profile, as a setup killed
    // between its two steps would.
    cli.fails(&["profile", "show"]);
    let user = "01a21dc5-0000-7000-8000-00000000abcd";
    let db = cli.dir.path().join("trackflow.db");
    let mut conn = diesel::SqliteConnection::establish(&db.to_string_lossy()).expect("open db");
    conn.batch_execute(&format!("INSERT INTO session (id, user_id) VALUES (1, '{user}')")).expect("session");

    let (code, err) = cli.fails(&["project", "create", "--name", "Too early"]);
    assert_eq!(code, 1);
    assert!(err.contains("profile setup was interrupted"), "{err}");

    let me = cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    assert_eq!(me["id"], user, "the interrupted setup's user is completed");
    let (code, err) = cli.fails(&["profile", "create", "--name", "Bo", "--email", "bo@example.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("already has a profile"), "{err}");
    assert_eq!(cli.json(&["queue"])["counts"]["pending"], 1, "one profile, queued once");
}

/// `trackflow server` as a real process: it reports where it listens, answers health, and on
/// SIGINT (Ctrl-C) finishes and exits 0.
#[cfg(unix)]
#[test]
fn server_runs_until_interrupted() {
    use std::{
        io::{Read, Write},
        net::TcpStream,
        time::Duration,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("server.db");
    let server = crate::server_process::ServerProcess::start(&db, "127.0.0.1:0");
    let addr = server.addr.clone();

    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");

    let (exit, rest) = server.interrupt();
    assert!(exit.success(), "{exit:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    assert!(db.exists(), "the database file was created");
}

#[test]
fn status_and_conflicts_report_offline_and_refuse_unknown_conflicts() {
    let cli = Cli::new();
    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let status = cli.json(&["status"]);
    assert_eq!(
        (status["upstream"]["pending"].as_u64(), status["open_conflicts"].as_u64()),
        (Some(1), Some(0)),
        "{status}"
    );
    assert_eq!(status["statistics"], serde_json::json!([]), "never pulled");
    let text = String::from_utf8(cli.run(&["status"]).stdout).expect("utf-8");
    assert!(text.contains("0 open conflicts") && text.contains("never pulled"), "{text}");
    assert_eq!(cli.json(&["conflicts"]), serde_json::json!([]));

    let unknown = uuid::Uuid::now_v7().to_string();
    let (code, err) = cli.fails(&["conflicts", "resolve", &unknown, "mine"]);
    one_line(&err);
    assert!(code == 1 && err.contains("does not exist"), "{err}");
    let (code, err) = cli.fails(&["conflicts", "resolve", &unknown, "--merged", "not json"]);
    one_line(&err);
    assert!(code == 1 && err.contains("--merged must be a JSON object"), "{err}");
    let (code, err) = cli.fails(&["conflicts", "resolve", &unknown]);
    assert!(code == 2 && err.contains("required"), "{err}");
    let (code, err) = cli.fails(&["conflicts", "show", &unknown]);
    one_line(&err);
    assert!(code == 1 && err.contains("no conflict"), "{err}");
}

/// The server refuses settings that cannot work before it opens anything: a token valid for no
/// time, no connections, no room for a file. Each is a usage error naming the flag.
#[test]
fn the_server_refuses_settings_that_cannot_work() {
    let cli = Cli::new();
    for (flag, value) in
        [("--token-days", "0"), ("--token-days", "3651"), ("--connections", "0"), ("--max-blob-mib", "0")]
    {
        let (code, stderr) =
            cli.fails(&["server", "--db", "sqlite::memory:", "--listen", "127.0.0.1:0", flag, value]);
        assert_eq!(code, 2, "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(value), "{flag} {value}: {stderr}");
    }
}

/// A reader that goes away early (`trackflow --json project list | head -n 1`) ends the command
/// quietly: exit 0, no panic on the broken pipe.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let cli = Cli::new();
    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    for i in 0..3 {
        cli.json(&["project", "create", "--name", &format!("P{i}")]);
    }
    let mut child = cli
        .command(&["--json", "project", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reading end closes before the command prints anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
}

/// With `--json`, an error is one JSON object on stderr with a stable code, usage errors too.
#[test]
fn with_json_errors_are_json_on_stderr() {
    let cli = Cli::new();
    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let table: [(&[&str], i32, &str, &str); 4] = [
        (&["--json", "project", "create"], 2, "usage", "--name <NAME>"),
        (&["--json", "project", "show", "01a21dc5-0000-7000-8000-000000000000"], 1, "not_found", "not found"),
        (&["--json", "project", "create", "--name", " "], 1, "invalid_field", "invalid name"),
        (&["project", "show", "--json", "not-an-id"], 2, "usage", "invalid project id"),
    ];
    for (args, expected_code, code, text) in table {
        let (exit, stderr) = cli.fails(args);
        assert_eq!(exit, expected_code, "{args:?}: {stderr}");
        let error: serde_json::Value = serde_json::from_str(stderr.trim()).expect("one JSON object");
        assert_eq!(error["error"]["code"], code, "{args:?}: {stderr}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains(text)), "{args:?}: {stderr}");
    }
}

/// One HTTP/1.1 request over a fresh connection; the whole answer.
#[cfg(unix)]
fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// A request's text that reaches the server's text log (here a pull's scope, quoted in the
/// refusal logged at debug) cannot forge a line or carry terminal codes: the log is written to a
/// pipe, so it has no colour codes, and the newline and escape sequence arrive escaped.
#[cfg(unix)]
#[test]
fn request_text_cannot_forge_log_lines() {
    use std::ffi::OsStr;
    let args: [&OsStr; 6] = [
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--db".as_ref(),
        "sqlite::memory:".as_ref(),
        "--log".as_ref(),
        "debug".as_ref(),
    ];
    let server = crate::server_process::ServerProcess::start_with(&args);
    let body = r#"{"email":"ana@example.com","password":"correct horse"}"#;
    let signup = http(
        &server.addr,
        &format!(
            "POST /v1/auth/signup HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let token = signup.split("\"token\":\"").nth(1).and_then(|t| t.split('"').next()).expect("a token");
    let pull = http(
        &server.addr,
        &format!(
            "GET /v1/sync/pull?scope=x%0AERROR%20forged%1B%5B31m HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(pull.starts_with("HTTP/1.1 422"), "{pull}");
    let (_, lines) = server.interrupt();
    assert!(
        lines.iter().any(|l| l.contains("\\nERROR forged\\x1b[31m")),
        "the scope was logged, escaped: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l.starts_with("ERROR forged")), "a forged line: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains('\u{1b}')), "a terminal code in the log: {lines:?}");
}

/// The help opens with what the tool does for its user.
#[test]
fn the_help_opens_with_a_line_for_users() {
    let out = Cli::new().run(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.starts_with("Work on music projects offline"), "{help}");
}

/// `server --help` lists what the server uses, not the client's options.
#[test]
fn the_servers_help_lists_only_what_the_server_uses() {
    let cli = Cli::new();
    let out = cli.run(&["server", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    for used in ["--listen", "--db", "--blobs", "--token-days", "--data-dir", "--log"] {
        assert!(help.contains(used), "{used} missing: {help}");
    }
    for unused in ["--profile", "--json"] {
        assert!(!help.contains(unused), "{unused} listed: {help}");
    }
    // The client's help still lists them, and the server still accepts them (hidden only).
    let client = String::from_utf8_lossy(&cli.run(&["project", "--help"]).stdout).into_owned();
    assert!(client.contains("--profile") && client.contains("--json"), "{client}");
    let out = cli.run(&["--json", "server", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2), "a usage error, not an unknown flag");
}

/// Audio from a file: a track added with one takes its length from it (a typed length must
/// agree), gets audio later, and has it replaced (its length follows); an empty file, a file
/// that is not audio and a contradicting length are refused with one line and change nothing.
#[test]
fn audio_comes_from_files_that_say_how_long_they_are() {
    use trackflow_tests::audio;
    let cli = Cli::new();
    cli.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let p = id(&cli.json(&["project", "create", "--name", "EP"]));
    let file = |name: &str, bytes: &[u8]| {
        let path = cli.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write a file");
        path.to_str().expect("path").to_owned()
    };
    let (empty, notes) = (file("empty.wav", b""), file("notes.wav", b"RIFF and some text"));
    let refusals: [(&[&str], &str); 4] = [
        (&["track", "add", &p, &empty], "is empty"),
        (&["track", "add", &p, &notes], "is not a WAV, FLAC or MP3 audio file"),
        (&["track", "add", &p, "--name", "Silent"], "give --duration for a track without audio"),
        (
            &["track", "add", &p, &file("long.wav", &audio::wav(72_000)), "--duration", "1:30"],
            "--duration 1:30 contradicts the audio file, which lasts 1:12",
        ),
    ];
    for (args, expected) in refusals {
        let out = cli.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.trim_end().lines().count() == 1 && stderr.contains(expected), "{args:?}: {stderr}");
    }
    assert_eq!(
        cli.json(&["track", "list", "--project", &p]).as_array().map(Vec::len),
        Some(0),
        "nothing made"
    );

    // The length comes from the file, in each format; a typed one within a second agrees.
    for (name, bytes, expected) in [
        ("take.wav", audio::wav(2_500), 2_500),
        ("take.flac", audio::flac(44_100 * 3), 3_000),
        ("take.mp3", audio::mp3(100), 2_612),
    ] {
        let track = cli.json(&["track", "add", &p, &file(name, &bytes)]);
        assert_eq!((track["name"].as_str(), track["duration_ms"].as_i64()), (Some("take"), Some(expected)));
    }
    let rounded =
        cli.json(&["track", "add", &p, &file("intro.wav", &audio::wav(72_300)), "--duration", "1:12"]);
    assert_eq!(rounded["duration_ms"], 72_300, "the file's length is kept");

    // Audio later, then replaced: the length follows the file.
    let track = id(&cli.json(&["track", "add", &p, "--name", "Later", "--duration", "0:30"]));
    let first = audio::wav(20_000);
    let attached = cli.json(&["track", "update", &track, "--file", &file("first.wav", &first)]);
    assert_eq!(attached["duration_ms"], 20_000);
    let hash = attached["audio_sha256"].as_str().expect("attached").to_owned();
    let fetched = cli.json(&["track", "fetch", &track]);
    assert_eq!(std::fs::read(fetched["path"].as_str().expect("path")).expect("cached"), first);
    let out = cli.run(&["track", "update", &track, "--file", &empty]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"), "checked before anything else");
    let replaced = cli.json(&["track", "update", &track, "--file", &file("second.wav", &audio::wav(45_000))]);
    assert_eq!(replaced["duration_ms"], 45_000);
    assert_ne!(replaced["audio_sha256"].as_str(), Some(hash.as_str()), "replaced");

    // Shorter audio may not leave a comment past the end.
    cli.json(&["comment", "add", "--track", &track, "--at", "0:40", "--text", "the bridge"]);
    let out = cli.run(&["track", "update", &track, "--file", &file("short.wav", &audio::wav(10_000))]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("comment(s) lie past the new end"), "{stderr}");
    assert_eq!(cli.json(&["track", "show", &track])["duration_ms"], 45_000, "unchanged");
}
