//! Schema evolution across builds: versions 1, 2 and 3 of `trackflow-example-tasks` (version 2
//! adds a task's estimate and board labels, version 3 renames a task's title), every device
//! and server a process of its own (a process installs one registry; this driver installs none
//! and speaks to them in JSON lines).
//!
//! - A server on version 2 with devices on both versions: they edit the same task offline and
//!   reconnect in both orders; every device ends equal to what the server shows a fresh device
//!   of its version, the older device never clobbering the field it cannot read, and once it
//!   upgrades it shows everything without pulling again.
//! - A device on version 2 with a server still on version 1: its push is refused as the
//!   server's schema being older, kept queued, and goes through once the server is upgraded.
//! - A server that declares version 2 breaking: a device on version 1 is told to upgrade
//!   (426), keeps its queued write, and sends it once upgraded.
//! - A server on version 3, which renames a task's title to its name: a device on version 1
//!   keeps syncing under the old name, and once upgraded sends what it queued before under
//!   the new one.
#![allow(missing_docs)]

use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
};
use trackflow_client::{
    domain::{protocol::SignUpRequest, UserId},
    remote::{AuthClient, RemoteOptions},
};
use trackflow_tests::ServerProcess;

/// A `tasks-server` process at a schema version over `db`, listening on `address`.
fn start_server(db: &Path, address: &str, version: &str) -> ServerProcess {
    ServerProcess::start(
        env!("CARGO_BIN_EXE_tasks-server"),
        [db.as_os_str(), address.as_ref(), version.as_ref()],
    )
}

/// A signed-up user: what a device needs to sign in.
struct Account {
    user: UserId,
    token: String,
}

async fn sign_up(server: &ServerProcess, email: &str) -> Account {
    let user = UserId::new();
    let request =
        SignUpRequest { email: email.into(), password: "a long password".into(), user_id: Some(user) };
    let auth = AuthClient::new(&RemoteOptions::default()).expect("client");
    Account { user, token: auth.sign_up(&server.url, &request).await.expect("sign up").token }
}

/// A `tasks-device` process at a schema version over its own data directory.
struct Device {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    name: &'static str,
}

impl Device {
    fn start(
        name: &'static str,
        dir: &Path,
        server: &ServerProcess,
        account: &Account,
        version: &str,
    ) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tasks-device"))
            .arg(dir)
            .arg(&server.url)
            .arg(account.user.to_string())
            .arg(&account.token)
            .arg(version)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tasks-device");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Self { child, stdin, stdout, dir: dir.to_owned(), name }
    }

    /// Sends `command` and returns the answer; a refusal fails the test.
    fn ask(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").expect("send");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("answer");
        let answer: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{}: {line:?}: {e}", self.name));
        assert!(answer.get("error").is_none(), "{}: {command} refused: {answer}", self.name);
        answer
    }

    fn create(&mut self, command: Value) -> String {
        self.ask(command)["id"].as_str().expect("an id").to_owned()
    }

    /// Syncs once; it must leave nothing queued or failed.
    fn sync(&mut self) {
        let state = self.ask(json!({"op": "sync"}));
        assert_eq!(
            (&state["pending"], &state["failed"], &state["last_error"]),
            (&json!(0), &json!(0), &Value::Null),
            "{}: {state}",
            self.name
        );
    }

    fn rows(&mut self) -> Value {
        self.ask(json!({"op": "rows"}))
    }

    /// Ends the process (its input closed, it shuts its engine down) and returns its directory.
    fn stop(mut self) -> PathBuf {
        drop(self.stdin);
        assert!(self.child.wait().expect("wait").success(), "{} exits cleanly", self.name);
        std::mem::take(&mut self.dir)
    }
}

/// Returns once the wall clock has moved on by two milliseconds: the next write on any device
/// of this machine reads a later time than every write before the call (both devices' clocks
/// are this machine's).
fn later_millisecond() {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let start = now();
    while now() < start + std::time::Duration::from_millis(2) {
        std::hint::spin_loop();
    }
}

fn task(rows: &Value, id: &str) -> Value {
    rows[format!("task {id}")].clone()
}

#[test]
fn devices_on_both_versions_edit_offline_and_end_equal_to_a_newer_server() {
    let dir = tempfile::tempdir().expect("dir");
    let server = start_server(&dir.path().join("server.db"), "127.0.0.1:0", "v2");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let account = runtime.block_on(sign_up(&server, "kim@example.com"));
    let mut old = Device::start("v1", &dir.path().join("old"), &server, &account, "v1");
    let mut new = Device::start("v2", &dir.path().join("new"), &server, &account, "v2");

    // The older device makes a board and a task; the newer one estimates the task, adds a
    // label and a second task; both sync.
    let board = old.create(json!({"op": "board", "title": "Release"}));
    let notes = old.create(json!({"op": "task", "board": board, "title": "Notes"}));
    old.sync();
    new.sync();
    new.ask(json!({"op": "edit", "task": notes, "estimate": 30}));
    new.create(json!({"op": "label", "board": board, "name": "urgent"}));
    let art = new.create(json!({"op": "task", "board": board, "title": "Cover art", "estimate": 15}));
    new.sync();
    old.sync();
    assert_eq!(task(&old.rows(), &art)["title"], "Cover art", "the older device has the new task");
    assert!(task(&old.rows(), &art).get("estimate").is_none(), "without the field it cannot read");

    // Offline edits of the same task, reconnecting older first, then newer first.
    let round =
        |old: &mut Device, new: &mut Device, id: &str, title: &str, estimate: u32, older_first: bool| {
            old.ask(json!({"op": "edit", "task": id, "title": title}));
            new.ask(json!({"op": "edit", "task": id, "estimate": estimate, "done": true}));
            if older_first {
                old.sync();
                new.sync();
                old.sync();
            } else {
                new.sync();
                old.sync();
                new.sync();
            }
        };
    round(&mut old, &mut new, &notes, "Liner notes", 45, true);
    round(&mut old, &mut new, &art, "Cover art, final", 20, false);

    // What the server shows each version: a fresh device's first pull.
    let mut fresh_new = Device::start("fresh v2", &dir.path().join("fresh-new"), &server, &account, "v2");
    let mut fresh_old = Device::start("fresh v1", &dir.path().join("fresh-old"), &server, &account, "v1");
    fresh_new.sync();
    fresh_old.sync();
    let (on_server, as_v1) = (fresh_new.rows(), fresh_old.rows());
    assert_eq!(new.rows(), on_server, "the newer device equals the server");
    assert_eq!(old.rows(), as_v1, "the older device equals what the server shows its version");
    for (id, title, estimate) in [(&notes, "Liner notes", 45), (&art, "Cover art, final", 20)] {
        let merged = task(&on_server, id);
        assert_eq!(
            (&merged["title"], &merged["estimate"], &merged["done"]),
            (&json!(title), &json!(estimate), &json!(true)),
            "both devices' edits kept: {merged}"
        );
    }
    assert_eq!(on_server.as_object().map(|rows| rows.len()), Some(4), "the board, two tasks and the label");

    // The older device edits offline, then upgrades (its local schema migrates): everything
    // it kept is in place at once, before any pull, and its queued edit goes out after.
    old.ask(json!({"op": "edit", "task": notes, "done": false}));
    let old_dir = old.stop();
    let mut upgraded = Device::start("v1 upgraded", &old_dir, &server, &account, "v2");
    let mut expected = on_server.clone();
    expected[format!("task {notes}")]["done"] = json!(false);
    assert_eq!(upgraded.rows(), expected, "the upgraded device shows the server's rows without pulling");
    upgraded.sync();
    new.sync();
    assert_eq!(upgraded.rows(), expected);
    assert_eq!(new.rows(), expected, "the edit queued before the upgrade reached the server");
    for device in [new, fresh_new, fresh_old, upgraded] {
        device.stop();
    }
}

#[test]
fn a_newer_device_waits_for_an_older_server_to_be_upgraded() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("server.db");
    let server = start_server(&db, "127.0.0.1:0", "v1");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let account = runtime.block_on(sign_up(&server, "kim@example.com"));
    let mut device = Device::start("v2", &dir.path().join("device"), &server, &account, "v2");
    let board = device.create(json!({"op": "board", "title": "Release"}));
    // A task without an estimate sends it as null: nothing the old server could hold, so it goes.
    let plain = device.create(json!({"op": "task", "board": board, "title": "Plain"}));
    device.sync();
    device.create(json!({"op": "task", "board": board, "title": "Notes", "estimate": 30}));
    let state = device.ask(json!({"op": "sync"}));
    // The estimated task is refused (its whole push) and waits.
    assert_eq!(
        (&state["pending"], &state["failed"]),
        (&json!(1), &json!(0)),
        "kept queued, nothing failed: {state}"
    );
    let error = state["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("the server must be upgraded: not_in_schema"), "{state}");

    // The server is upgraded in place (same database, same address); the device, still
    // running, sends the task with its next sync.
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let server = start_server(&db, &address, "v2");
    device.sync();
    let mut fresh = Device::start("fresh v2", &dir.path().join("fresh"), &server, &account, "v2");
    fresh.sync();
    assert_eq!(device.rows(), fresh.rows(), "the device equals the server");
    let rows = fresh.rows();
    let tasks: Vec<&Value> = rows
        .as_object()
        .expect("rows")
        .iter()
        .filter(|(k, _)| k.starts_with("task "))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(tasks.len(), 2);
    assert!(rows[format!("task {plain}")]["estimate"].is_null());
    assert!(tasks.iter().any(|t| t["estimate"] == 30), "the field the old server did not know: {rows}");
    device.stop();
    fresh.stop();
}

#[test]
fn a_breaking_change_tells_older_devices_to_upgrade_and_keeps_their_work() {
    let dir = tempfile::tempdir().expect("dir");
    let server = start_server(&dir.path().join("server.db"), "127.0.0.1:0", "v2-breaking");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let account = runtime.block_on(sign_up(&server, "kim@example.com"));
    let mut old = Device::start("v1", &dir.path().join("old"), &server, &account, "v1");
    let board = old.create(json!({"op": "board", "title": "Release"}));
    let state = old.ask(json!({"op": "sync"}));
    assert_eq!(
        (&state["phase"], &state["pending"], &state["failed"], &state["upgrade_required"]),
        (&json!("Error"), &json!(1), &json!(0), &json!(2)),
        "told to upgrade, the board kept queued: {state}"
    );
    let error = state["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("upgrade required") && error.contains("schema version 2"), "{state}");

    // Upgraded, the same device sends it; the server shows it.
    let old_dir = old.stop();
    let mut upgraded = Device::start("v1 upgraded", &old_dir, &server, &account, "v2");
    upgraded.sync();
    let mut fresh = Device::start("fresh v2", &dir.path().join("fresh"), &server, &account, "v2");
    fresh.sync();
    let rows = fresh.rows();
    assert_eq!(rows[format!("board {board}")]["title"], "Release");
    assert_eq!(upgraded.rows(), rows);
    upgraded.stop();
    fresh.stop();
}

#[test]
fn a_renamed_field_syncs_with_older_devices_and_an_upgrade_sends_what_was_queued_under_the_new_name() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("server.db");
    let server = start_server(&db, "127.0.0.1:0", "v1");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let account = runtime.block_on(sign_up(&server, "kim@example.com"));
    let mut old = Device::start("v1", &dir.path().join("old"), &server, &account, "v1");
    let mut new = Device::start("v3", &dir.path().join("new"), &server, &account, "v3");

    // The older device titles a task on a server still on version 1; the newer device reads
    // the title as the task's name.
    let board = old.create(json!({"op": "board", "title": "Release"}));
    let notes = old.create(json!({"op": "task", "board": board, "title": "Notes"}));
    old.sync();
    new.sync();
    assert_eq!(task(&new.rows(), &notes)["name"], "Notes", "{}", new.rows());

    // The server is upgraded in place to version 3 (its rows still say `title`); the newer
    // device renames the task, and the older one reads the new name as its title.
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let server = start_server(&db, &address, "v3");
    new.ask(json!({"op": "edit", "task": notes, "title": "Release notes"}));
    new.sync();
    old.sync();
    assert_eq!(task(&old.rows(), &notes)["title"], "Release notes", "the older device reads its title");

    // Offline edits of the same task on both, then both reconnect: the older device's title is
    // the task's name, the newer device's estimate stays.
    old.ask(json!({"op": "edit", "task": notes, "title": "Liner notes"}));
    new.ask(json!({"op": "edit", "task": notes, "estimate": 45}));
    new.sync();
    old.sync();
    new.sync();
    let merged = task(&new.rows(), &notes);
    assert_eq!((&merged["name"], &merged["estimate"]), (&json!("Liner notes"), &json!(45)), "{merged}");
    assert!(merged.get("title").is_none(), "nothing under the old name: {merged}");

    // Both rename it offline, the older device first: its write loses (a conflict outcome,
    // whose merged row it reads under its own name), and both end with the later name.
    old.ask(json!({"op": "edit", "task": notes, "title": "Notes (old)"}));
    later_millisecond();
    new.ask(json!({"op": "edit", "task": notes, "title": "Notes (new)"}));
    new.sync();
    old.sync();
    assert_eq!(task(&old.rows(), &notes)["title"], "Notes (new)", "the later write wins");
    let conflicts = old.ask(json!({"op": "conflicts"}));
    let lost = &conflicts[0];
    assert_eq!(
        (&lost["fields"], &lost["remote"]["title"], lost["remote"].get("name")),
        (&json!(["title"]), &json!("Notes (new)"), None),
        "the conflict in the older device's names: {conflicts}"
    );

    // The older device edits the title and adds a task offline, then upgrades to version 3:
    // its local migration renames the column, the engine moves its queued writes to the new
    // name, and they go out.
    old.ask(json!({"op": "edit", "task": notes, "title": "Final notes"}));
    let art = old.create(json!({"op": "task", "board": board, "title": "Cover art"}));
    let old_dir = old.stop();
    let mut upgraded = Device::start("v1 upgraded", &old_dir, &server, &account, "v3");
    let before = upgraded.rows();
    assert_eq!(task(&before, &notes)["name"], "Final notes", "the column renamed: {before}");
    upgraded.sync();
    new.sync();
    for (id, name) in [(&notes, "Final notes"), (&art, "Cover art")] {
        assert_eq!(task(&new.rows(), id)["name"], name, "the queued write reached the server");
    }

    // Every device equals what the server shows a fresh device of its version.
    let mut fresh_new = Device::start("fresh v3", &dir.path().join("fresh-new"), &server, &account, "v3");
    let mut fresh_old = Device::start("fresh v1", &dir.path().join("fresh-old"), &server, &account, "v1");
    fresh_new.sync();
    fresh_old.sync();
    let (on_server, as_v1) = (fresh_new.rows(), fresh_old.rows());
    assert_eq!(new.rows(), on_server);
    assert_eq!(upgraded.rows(), on_server);
    assert_eq!(task(&as_v1, &notes)["title"], "Final notes", "a version 1 device reads the title: {as_v1}");
    for device in [new, upgraded, fresh_new, fresh_old] {
        device.stop();
    }
}

/// Pushes `body` to `server` as a client announcing schema `version`; returns each mutation's
/// outcome (`applied`, `duplicate`, `rejected`).
async fn push_raw(server: &str, token: &str, version: u32, body: &Value) -> Vec<String> {
    let response = reqwest::Client::new()
        .post(format!("{server}/v1/sync/push"))
        .bearer_auth(token)
        .header("trackflow-schema-version", version.to_string())
        .json(body)
        .send()
        .await
        .expect("push");
    let answer: Value = response.json().await.expect("an answer");
    let results = answer["results"].as_array().unwrap_or_else(|| panic!("results: {answer}"));
    results.iter().map(|r| r["status"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn a_write_applied_before_a_rename_and_sent_again_after_it_is_a_duplicate() {
    use trackflow_client::domain::{Hlc, NodeId};
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("server.db");
    let server = start_server(&db, "127.0.0.1:0", "v1");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let account = runtime.block_on(sign_up(&server, "kim@example.com"));
    let node = NodeId::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let wall_ms = u64::try_from(now.as_millis()).expect("millis");
    let hlc = serde_json::to_value(Hlc { wall_ms, counter: 0, node }).expect("hlc");
    let (board, task) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let change = |value: Value| json!({"value": value, "hlc": hlc});
    let create_task = |title: &str| {
        json!({
            "id": uuid::Uuid::from_u128(2), "entity_type": "task", "entity_id": task, "kind": "create",
            "base_version": 0,
            "fields": {
                "board_id": change(json!(board)), title: change(json!("Notes")),
                "done": change(json!(false)), "created_at": change(json!(1_800_000_000_000_i64)),
            },
        })
    };
    let create_board = json!({
        "id": uuid::Uuid::from_u128(1), "entity_type": "board", "entity_id": board, "kind": "create",
        "base_version": 0,
        "fields": {
            "owner_id": change(json!(account.user)), "title": change(json!("Release")),
            "created_at": change(json!(1_800_000_000_000_i64)),
        },
    });
    let push = |title: &str| json!({"client_id": node, "mutations": [create_board, create_task(title)]});
    let first = runtime.block_on(push_raw(&server.url, &account.token, 1, &push("title")));
    assert_eq!(first, ["applied", "applied"]);

    // The answer was lost; meanwhile the server is upgraded to version 3, which renames the
    // task's title. The same writes come again, from the version 1 device and from the same
    // device upgraded (its queued write moved to the new name): both are duplicates.
    let address = server.url.trim_start_matches("http://").to_owned();
    drop(server);
    let server = start_server(&db, &address, "v3");
    let again = runtime.block_on(push_raw(&server.url, &account.token, 1, &push("title")));
    assert_eq!(again, ["duplicate", "duplicate"], "from the version 1 device");
    let moved = runtime.block_on(push_raw(&server.url, &account.token, 3, &push("name")));
    assert_eq!(moved, ["duplicate", "duplicate"], "from the device upgraded to version 3");
}
