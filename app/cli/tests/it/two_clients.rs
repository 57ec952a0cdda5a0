//! Two users' clients as `--profile`s of the real binary, against a real server process:
//! sign-up, an invitation, offline writes on both sides while the server is down (one of them a
//! track with its audio file), the server back on the same port and database, convergence read
//! through `--json`, and the audio fetched on the other side.

use crate::{cli::id, server_process::ServerProcess};
use serde_json::Value;
use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

/// One client: a profile in a shared data directory.
struct Profile<'a> {
    dir: &'a Path,
    name: &'static str,
}

impl Profile<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trackflow"))
            .arg("--data-dir")
            .arg(self.dir)
            .args(["--profile", self.name])
            .args(args)
            .env_remove("TRACKFLOW_LOG")
            .env_remove("TRACKFLOW_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run trackflow");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("output")
    }

    /// A command that must succeed, read through `--json`.
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all, None);
        assert!(out.status.success(), "{} {args:?}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    fn sign_up(&self, server: &str) -> Value {
        let out = self
            .run(&["--json", "signup", "--server", server, "--password-stdin"], Some("a long password\n"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", self.name);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("a long password"),
            "the password is never printed"
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// `sync` while the server is down: one line, non-zero, and the writes still queued.
    fn sync_offline(&self) {
        let out = self.run(&["sync"], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", self.name);
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("unreachable"), "{stderr}");
    }

    /// What this client shows of `project`: the project and its tracks.
    fn view(&self, project: &str) -> (Value, Value) {
        (self.json(&["project", "show", project]), self.json(&["track", "list", "--project", project]))
    }
}

/// A `trackflow server` over a new database, and the folder its clients keep their data in.
struct Stage {
    dir: tempfile::TempDir,
    server: ServerProcess,
}

impl Stage {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = ServerProcess::start(&dir.path().join("server.db"), "127.0.0.1:0");
        Self { dir, server }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    /// Where the clients' profiles live.
    fn clients(&self) -> std::path::PathBuf {
        self.dir.path().join("clients")
    }
}

/// Ana and Ben, each with a profile and signed up at `url`, and Ana's project "Night Drive" with
/// Ben invited as an editor: Ana's sign-up answer, the project's id and Ben's membership id.
fn band(ana: &Profile<'_>, ben: &Profile<'_>, url: &str) -> (Value, String, String) {
    ana.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    let ben_id = id(&ben.json(&["profile", "create", "--name", "Ben", "--email", "ben@example.com"]));
    let signed_up = ana.sign_up(url);
    ben.sign_up(url);
    let project = id(&ana.json(&["project", "create", "--name", "Night Drive"]));
    // Invited by the email of his account: the server says whose it is.
    let invite =
        ["collaborator", "add", "--project", &project, "--email", "Ben@Example.com", "--role", "editor"];
    let invited = ana.json(&invite);
    assert_eq!(invited["user_id"].as_str(), Some(ben_id.as_str()), "{invited}");
    let membership = id(&invited);
    (signed_up, project, membership)
}

#[test]
fn two_profiles_write_offline_reconnect_and_converge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("server.db");
    let server = ServerProcess::start(&db, "127.0.0.1:0");
    let (url, addr) = (server.url(), server.addr.clone());
    let clients = dir.path().join("clients");
    let ana = Profile { dir: &clients, name: "ana" };
    let ben = Profile { dir: &clients, name: "ben" };
    let (ana_signed_up, project, _) = band(&ana, &ben, &url);
    assert_eq!(ana_signed_up["queued"], 1, "the profile waits to be sent");
    let stranger =
        ["collaborator", "add", "--project", &project, "--email", "cy@example.com", "--role", "viewer"];
    let out = ana.run(&stranger, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("no account on") && stderr.contains("cy@example.com"), "{stderr}");
    let synced = ana.json(&["sync"]);
    assert_eq!((synced["phase"].as_str(), synced["pending"].as_u64()), (Some("idle"), Some(0)), "{synced}");
    ben.json(&["sync"]);
    assert_eq!(ben.json(&["project", "show", &project])["name"], "Night Drive");

    // The server goes away; both keep working.
    server.kill();
    ana.json(&["project", "update", &project, "--description", "Four tracks, one night"]);
    // Ben records a track: its audio file goes into his cache; the upload waits with the track.
    let recording = dir.path().join("Intro.wav");
    let audio = trackflow_tests::audio::wav(72_000);
    std::fs::write(&recording, &audio).expect("recording");
    let intro = ben.json(&["track", "add", &project, recording.to_str().expect("path")]);
    assert_eq!(intro["name"], "Intro", "named after the file");
    assert_eq!(intro["duration_ms"], 72_000, "as long as the file");
    ana.sync_offline();
    ben.sync_offline();
    let status = ben.json(&["status"]);
    assert_eq!(
        (status["state"]["phase"].as_str(), status["state"]["pending"].as_u64()),
        (Some("offline"), Some(2)),
        "the audio's upload and the track wait: {status}"
    );

    // Back on the same address and database.
    let _server = ServerProcess::start(&db, &addr);
    ben.json(&["sync"]);
    ana.json(&["sync"]);
    let (ana_view, ben_view) = (ana.view(&project), ben.view(&project));
    assert_eq!(ana_view.0["description"], "Four tracks, one night");
    // Ben's profile came down with the shared project: Ana's collaborator list names him.
    let members = ana.json(&["collaborator", "list", "--project", &project]);
    assert_eq!(
        (members[0]["name"].as_str(), members[0]["email"].as_str()),
        (Some("Ben"), Some("ben@example.com")),
        "{members}"
    );
    let out = ana.run(&["collaborator", "list", "--project", &project], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Ben <ben@example.com>  editor"), "{:?}", out);
    assert_eq!(ana_view.1.as_array().map(Vec::len), Some(1), "Ben's track reached Ana");
    ben.json(&["sync"]);
    assert_eq!(ana.view(&project), ben.view(&project), "both clients show the same project and tracks");
    for client in [&ana, &ben] {
        let state = &client.json(&["status"])["state"];
        assert_eq!((state["phase"].as_str(), state["pending"].as_u64()), (Some("idle"), Some(0)), "{state}");
    }
    assert!(ben_view.1.as_array().is_some_and(|t| t.len() == 1));

    // Ana plays it: the audio comes down on demand, the same bytes.
    let fetched = ana.json(&["track", "fetch", intro["id"].as_str().expect("id")]);
    let path = fetched["path"].as_str().expect("path");
    assert_eq!(std::fs::read(path).expect("fetched file"), audio, "Ana holds Ben's recording");
}

#[test]
fn sync_without_login_says_how_to_log_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let alone = Profile { dir: dir.path(), name: "alone" };
    let out = alone.run(&["sync"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not logged in") && stderr.contains("trackflow login --server URL"), "{stderr}");
    // With a profile, the hint names every flag login needs, the email filled in.
    let out = alone.run(&["profile", "create", "--name", "Al", "--email", "al@example.com"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = alone.run(&["sync"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("trackflow login --server URL --email al@example.com"), "{stderr}");
    assert!(stderr.contains("--password-stdin"), "{stderr}");
    let out = alone
        .run(&["login", "--server", "ftp://nowhere", "--email", "a@b.c", "--password-stdin"], Some("pw\n"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("must start with http"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_trackflow"))
        .args(["--profile", "../escape", "status"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --profile"));
}

/// `status` asks the server whether it still takes this device's token: a token it refuses
/// (expired, or logged out elsewhere) shows as not signed in, saying why.
#[test]
fn status_shows_a_token_the_server_refuses() {
    use diesel::{connection::SimpleConnection, Connection, SqliteConnection};
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ServerProcess::start(&dir.path().join("server.db"), "127.0.0.1:0");
    let ana = Profile { dir: dir.path(), name: "ana" };
    ana.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    ana.sign_up(&server.url());
    let status = ana.json(&["status"]);
    assert_eq!(
        (status["signed_in"].as_bool(), status["token_refused"].as_bool()),
        (Some(true), Some(false)),
        "{status}"
    );

    // The token stops being valid on the server's side (as when it expires).
    let db = dir.path().join("profiles").join("ana").join("trackflow.db");
    let mut conn =
        SqliteConnection::establish(db.to_str().expect("utf-8")).expect("open the client database");
    conn.batch_execute("UPDATE session SET access_token = 'no-longer-valid'").expect("replace the token");
    drop(conn);
    let status = ana.json(&["status"]);
    assert_eq!(
        (status["signed_in"].as_bool(), status["token_refused"].as_bool()),
        (Some(false), Some(true)),
        "{status}"
    );
    let out = ana.run(&["status"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("refused this device's token") && text.contains("trackflow login"), "{text}");
}

/// A write the server refuses for good, from the command line: `sync` succeeds, says it undid
/// the change, and lists the refused operation; the device shows the server's value again; and
/// a write the device now knows the role forbids is refused on the spot with one line.
#[test]
fn a_refused_write_is_undone_and_the_device_then_refuses_it_itself() {
    let stage = Stage::new();
    let (url, clients) = (stage.url(), stage.clients());
    let ana = Profile { dir: &clients, name: "ana" };
    let ben = Profile { dir: &clients, name: "ben" };
    let (_, project, membership) = band(&ana, &ben, &url);
    ana.json(&["sync"]);
    ben.json(&["sync"]);

    // Ben renames it while an editor; before he syncs, Ana makes him a viewer.
    ben.json(&["project", "update", &project, "--name", "Ben's Drive"]);
    ana.json(&["collaborator", "update", &membership, "--role", "viewer"]);
    ana.json(&["sync"]);
    let out = ben.run(&["sync"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "only a parked operation is left: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 refused change(s) undone to match the server"), "{stdout}");
    assert!(
        stdout.contains("failed: ") && stdout.contains("forbidden: viewers cannot change a project"),
        "{stdout}"
    );
    assert_eq!(ben.json(&["project", "show", &project])["name"], "Night Drive", "the server's name again");

    // Ben's device now knows he is a viewer: it refuses the next rename itself.
    let out = ben.run(&["--json", "project", "update", &project, "--name", "Again"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let error: Value = serde_json::from_str(stderr.trim()).expect("a JSON error");
    assert_eq!(error["error"]["code"], "forbidden", "{error}");
    let queue = ben.json(&["queue"]);
    assert_eq!(queue["operations"].as_array().map(Vec::len), Some(1), "nothing more queued: {queue}");
}

/// A page in the middle of the local database overwritten: the command that meets it says so in
/// one line and names the fix; `trackflow repair` rebuilds the database keeping the changes not
/// yet sent, fetches the rest from the server, and the device then equals a fresh device of the
/// same account.
#[test]
fn a_damaged_database_is_rebuilt_from_the_server_keeping_unsent_changes() {
    let stage = Stage::new();
    let (url, clients) = (stage.url(), stage.clients());
    let ana = Profile { dir: &clients, name: "ana" };
    ana.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    ana.sign_up(&url);
    let project = id(&ana.json(&["project", "create", "--name", "Night Drive"]));
    let track = id(&ana.json(&["track", "add", &project, "--name", "Intro", "--duration", "1:00"]));
    // Comments long enough to fill pages of their own, synced.
    for n in 0..12 {
        let text = format!("Filler {n:02} {}", "la ".repeat(600));
        ana.json(&["comment", "add", "--track", &track, "--at", "0:10", "--text", &text]);
    }
    ana.json(&["sync"]);
    // Changes not yet sent.
    ana.json(&["project", "update", &project, "--name", "Night Drive (final)"]);
    ana.json(&["track", "add", &project, "--name", "Outro", "--duration", "2:00"]);
    ana.json(&["comment", "add", "--track", &track, "--at", "0:20", "--text", "unsent"]);

    // The page holding comments nearest the middle of the file, overwritten.
    let db = clients.join("profiles").join("ana").join("trackflow.db");
    {
        // Everything into the main file first, as the last connection closing does.
        use diesel::{connection::SimpleConnection, Connection, SqliteConnection};
        let mut conn = SqliteConnection::establish(db.to_str().expect("utf-8")).expect("open the database");
        conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
    }
    let mut bytes = std::fs::read(&db).expect("the database");
    let pages = bytes.len() / 4096;
    let page = (0..pages)
        .filter(|p| bytes[p * 4096..(p + 1) * 4096].windows(7).any(|w| w == b"Filler "))
        .min_by_key(|p| p.abs_diff(pages / 2))
        .expect("a page of comments");
    bytes[page * 4096..(page + 1) * 4096].fill(0xA5);
    std::fs::write(&db, &bytes).expect("overwrite a page");

    let out = ana.run(&["--json", "comment", "list", "--track", &track], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let error: Value = serde_json::from_str(stderr.trim()).expect("a JSON error");
    assert_eq!(error["error"]["code"], "damaged_database", "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("trackflow repair")), "{error}");

    let repaired = ana.json(&["repair"]);
    assert_eq!(repaired["status"], "rebuilt", "{repaired}");
    assert_eq!(repaired["operations_kept"], 3, "the three changes not yet sent: {repaired}");
    assert_eq!(repaired["unreadable"], serde_json::json!({}), "{repaired}");
    assert_eq!(repaired["sync"]["pending"], 0, "sent and pulled: {repaired}");
    assert!(Path::new(repaired["damaged_copy"].as_str().expect("path")).exists(), "kept: {repaired}");
    assert_eq!(ana.json(&["repair"])["status"], "sound");

    // A second device of the same account shows exactly what the repaired one does.
    let again = Profile { dir: &clients, name: "again" };
    let out = again.run(
        &["--json", "login", "--server", &url, "--email", "ana@example.com", "--password-stdin"],
        Some("a long password\n"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    again.json(&["sync"]);
    let view = |p: &Profile<'_>| (p.view(&project), p.json(&["comment", "list", "--track", &track]));
    let (repaired_view, fresh_view) = (view(&ana), view(&again));
    assert_eq!(repaired_view.0 .0["name"], "Night Drive (final)");
    assert_eq!(repaired_view.0 .1.as_array().map(Vec::len), Some(2), "Intro and Outro");
    assert_eq!(repaired_view.1.as_array().map(Vec::len), Some(13), "twelve fillers and the unsent one");
    assert_eq!(repaired_view, fresh_view, "the repaired device equals the server");
}

/// Right after a failure that backs an operation off, `sync` waits for it (saying so) and sends
/// it again, instead of answering "idle" with the write still queued: the server fails to
/// store a track's audio once (its folder for that file is in the way), is fixed while `sync`
/// waits, and `sync` ends with nothing queued.
#[test]
fn sync_waits_for_an_operation_backed_off_after_a_failure() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = dir.path().join("blobs");
    let server = ServerProcess::start_with(&[
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--db".as_ref(),
        dir.path().join("server.db").as_os_str(),
        "--blobs".as_ref(),
        blobs.as_os_str(),
    ]);
    let ana = Profile { dir: &dir.path().join("clients"), name: "ana" };
    ana.json(&["profile", "create", "--name", "Ana", "--email", "ana@example.com"]);
    ana.sign_up(&server.url());
    let project = id(&ana.json(&["project", "create", "--name", "Night Drive"]));
    ana.json(&["sync"]);
    let recording = dir.path().join("Intro.wav");
    std::fs::write(&recording, trackflow_tests::audio::wav(3_000)).expect("recording");
    let track = ana.json(&["track", "add", &project, recording.to_str().expect("path")]);
    let hash = track["audio_sha256"].as_str().expect("audio").to_owned();
    // A file where the server keeps the blobs starting with these two digits: storing fails.
    let in_the_way = blobs.join(&hash[..2]);
    std::fs::write(&in_the_way, b"in the way").expect("block the folder");

    let mut sync = Command::new(env!("CARGO_BIN_EXE_trackflow"))
        .arg("--data-dir")
        .arg(ana.dir)
        .args(["--profile", ana.name, "sync"])
        .env_remove("TRACKFLOW_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sync");
    let stderr = std::io::BufReader::new(sync.stderr.take().expect("stderr"));
    let mut said = Vec::new();
    for line in stderr.lines() {
        let line = line.expect("a line");
        let waiting = line.starts_with("waiting ") && line.contains("held back after a failure");
        said.push(line);
        if waiting {
            // The server is fixed while sync waits.
            std::fs::remove_file(&in_the_way).expect("unblock the folder");
            break;
        }
    }
    let out = sync.wait_with_output().expect("sync ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said:?} {stdout} {}", String::from_utf8_lossy(&out.stderr));
    assert!(said.last().is_some_and(|l| l.contains("operation(s) held back")), "said it waited: {said:?}");
    let status = ana.json(&["status"]);
    assert_eq!(
        (status["state"]["pending"].as_u64(), status["state"]["failed"].as_u64()),
        (Some(0), Some(0)),
        "{status}"
    );
    assert!(blobs.join(&hash[..2]).join(&hash).is_file(), "the server holds the audio");
}

/// A comment written offline on a track the owner deleted meanwhile: after `sync` the comment
/// is gone on both sides, and `trackflow conflicts` tells its author, keeping the text.
#[test]
fn a_comment_on_a_track_deleted_meanwhile_is_listed_as_a_conflict_for_its_author() {
    let stage = Stage::new();
    let (url, clients) = (stage.url(), stage.clients());
    let ana = Profile { dir: &clients, name: "ana" };
    let ben = Profile { dir: &clients, name: "ben" };
    let (_, project, _) = band(&ana, &ben, &url);
    let track = id(&ana.json(&["track", "add", &project, "--name", "Intro", "--duration", "1:00"]));
    ana.json(&["sync"]);
    ben.json(&["sync"]);

    ana.json(&["track", "delete", &track]);
    ana.json(&["sync"]);
    let comment =
        id(&ben.json(&["comment", "add", "--track", &track, "--at", "0:30", "--text", "louder here"]));
    ben.json(&["sync"]);
    ana.json(&["sync"]);

    let listed = ben.json(&["conflicts"]);
    let open = listed.as_array().expect("a list");
    assert_eq!(open.len(), 1, "{listed}");
    assert_eq!(
        (open[0]["kind"].as_str(), open[0]["entity"]["id"].as_str()),
        (Some("parent_deleted"), Some(comment.as_str()))
    );
    let conflict = open[0]["id"].as_str().expect("id").to_owned();
    let shown = ben.run(&["conflicts", "show", &conflict], None);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("deleted with what it was in") && text.contains("content: yours \"louder here\""),
        "{text}"
    );
    let out = ben.run(&["conflicts", "resolve", &conflict, "mine"], None);
    assert_eq!(out.status.code(), Some(1), "nothing can keep it: {}", String::from_utf8_lossy(&out.stderr));
    ben.json(&["conflicts", "resolve", &conflict, "theirs"]);
    assert_eq!(ben.json(&["conflicts"]).as_array().map(Vec::len), Some(0));
    assert!(ana.json(&["conflicts"]).as_array().is_some_and(Vec::is_empty), "the owner is not asked");
    for client in [&ana, &ben] {
        let out = client.run(&["comment", "show", &comment], None);
        assert!(!out.status.success(), "the comment is gone everywhere");
    }
}

/// `watch --json` prints what another device changed, once the realtime stream brings it, and
/// `status` says that the stream connects.
#[test]
fn watch_prints_each_entity_another_device_changed() {
    let stage = Stage::new();
    let clients = stage.clients();
    let ana = Profile { dir: &clients, name: "ana" };
    let ben = Profile { dir: &clients, name: "ben" };
    let (_, project, _) = band(&ana, &ben, &stage.url());
    ana.json(&["sync"]);
    ben.json(&["sync"]);
    assert_eq!(ben.json(&["status"])["realtime"], true, "the event stream opens for Ben");

    let mut watch = Command::new(env!("CARGO_BIN_EXE_trackflow"))
        .arg("--data-dir")
        .arg(&clients)
        .args(["--profile", "ben", "--json", "watch"])
        .env_remove("TRACKFLOW_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run trackflow watch");
    let (lines, received) = std::sync::mpsc::channel::<Value>();
    let stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("a JSON line: {line}: {e}"));
            if lines.send(value).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str, wanted: &dyn Fn(&Value) -> bool| loop {
        match received.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(line) if wanted(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("watch printed no line with {what}: {e}"),
        }
    };
    wait_for("the stream connected", &|line| line["realtime_connected"] == true);

    ana.json(&["project", "update", &project, "--description", "Four tracks, one night"]);
    ana.json(&["sync"]);
    let line = wait_for("the project's change", &|line| line["change"]["entity"]["id"] == project.as_str());
    assert_eq!(
        (line["change"]["entity"]["entity_type"].as_str(), line["change"]["kind"].as_str()),
        (Some("project"), Some("updated")),
        "{line}"
    );
    assert_eq!(line["change"]["origin"], "pull", "{line}");
    assert!(line["seq"].as_u64().is_some_and(|seq| seq > 0), "{line}");

    watch.kill().expect("stop watch");
    watch.wait().expect("watch ended");
    reader.join().expect("reader");
}
