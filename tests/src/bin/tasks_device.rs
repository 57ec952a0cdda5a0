//! A device of the `trackflow-example-tasks` program at version 1, 2 or 3 of its schema, in a
//! process of its own (a process installs one registry), for the schema evolution tests. It
//! reads one JSON command per line on stdin and answers each with one JSON line on stdout:
//!
//! - `{"op": "board", "title": T}`, `{"op": "task", "board": ID, "title": T, "estimate": N}`,
//!   `{"op": "label", "board": ID, "name": N}` (version 2): create; answer `{"id": ID}`.
//! - `{"op": "edit", "task": ID, "title": T, "done": B, "estimate": N}`: each field optional
//!   (`title` is the task's name at version 3).
//! - `{"op": "sync"}`: push and pull once; answer the status (`phase`, `pending`, `failed`,
//!   `last_error`).
//! - `{"op": "rows"}`: every visible row, `{"<type> <id>": {fields}}`.
//! - `{"op": "conflicts"}`: the conflicts recorded, `[{"fields": [lost], "remote": {fields}}]`.
//!
//! A refused command answers `{"error": "..."}`. Nothing syncs but on `sync`.
//!
//! Usage: `tasks-device DATA_DIR SERVER_URL USER_ID TOKEN v1|v2|v3`.

use anyhow::Context;
use std::{
    collections::BTreeMap,
    io::{BufRead, Write},
};
use trackflow_client::{
    domain::{
        entities::EntityType,
        serde_json::{self, json, Value},
        uuid::Uuid,
        Timestamp, UserId,
    },
    EngineOptions, SyncEngine,
};
use trackflow_example_tasks::{v2, v3, Board, BoardId, Task, TaskId, TaskPatch};

const NOW: Timestamp = Timestamp(1_800_000_000_000);

fn text(command: &Value, key: &str) -> anyhow::Result<String> {
    command[key].as_str().map(str::to_owned).with_context(|| format!("`{key}` must be a string"))
}

fn id(command: &Value, key: &str) -> anyhow::Result<Uuid> {
    text(command, key)?.parse().with_context(|| format!("`{key}` must be an id"))
}

fn estimate(command: &Value) -> Option<u32> {
    command["estimate"].as_u64().and_then(|n| u32::try_from(n).ok())
}

async fn run(engine: &SyncEngine, version: u32, user: UserId, command: &Value) -> anyhow::Result<Value> {
    let board = |key| id(command, key).map(BoardId::from_uuid);
    Ok(match command["op"].as_str().unwrap_or_default() {
        "board" => {
            let board =
                engine.repository::<Board>().create(Board::new(user, &text(command, "title")?, NOW)?).await?;
            json!({"id": board.id().as_uuid()})
        }
        "task" if version >= 3 => {
            let task = v3::Task::new(board("board")?, &text(command, "title")?, estimate(command), NOW)?;
            json!({"id": engine.repository::<v3::Task>().create(task).await?.id().as_uuid()})
        }
        "task" if version == 2 => {
            let task = v2::Task::new(board("board")?, &text(command, "title")?, estimate(command), NOW)?;
            json!({"id": engine.repository::<v2::Task>().create(task).await?.id().as_uuid()})
        }
        "task" => {
            let task = Task::new(board("board")?, &text(command, "title")?, NOW)?;
            json!({"id": engine.repository::<Task>().create(task).await?.id().as_uuid()})
        }
        "label" if version >= 2 => {
            let label = v2::Label::new(board("board")?, &text(command, "name")?, NOW)?;
            json!({"id": engine.repository::<v2::Label>().create(label).await?.id().as_uuid()})
        }
        "edit" => {
            let task = TaskId::from_uuid(id(command, "task")?);
            // `title` names the task's title, or its name from version 3 on.
            let title = command["title"].as_str().map(str::to_owned);
            let done = command["done"].as_bool();
            let estimate = command.get("estimate").map(|_| estimate(command));
            match version {
                3 => {
                    let patch = v3::TaskPatch { name: title, done, estimate };
                    engine.repository::<v3::Task>().update(task, patch).await?;
                }
                2 => {
                    let patch = v2::TaskPatch { task: TaskPatch { title, done }, estimate };
                    engine.repository::<v2::Task>().update(task, patch).await?;
                }
                _ => {
                    anyhow::ensure!(estimate.is_none(), "version 1 has no estimate");
                    engine.repository::<Task>().update(task, TaskPatch { title, done }).await?;
                }
            }
            json!({})
        }
        "sync" => {
            let state = engine.sync_now().await;
            json!({
                "phase": format!("{:?}", state.phase), "pending": state.pending, "failed": state.failed,
                "last_error": state.last_error, "upgrade_required": state.upgrade_required,
            })
        }
        "rows" => {
            let mut rows = BTreeMap::new();
            for &entity_type in EntityType::all() {
                for row in engine.repositories().visible(entity_type).await? {
                    rows.insert(row.entity_ref().to_string(), row.fields());
                }
            }
            serde_json::to_value(rows)?
        }
        "conflicts" => {
            let conflicts = engine.conflicts().list(false).await?;
            let conflicts: Vec<Value> =
                conflicts.into_iter().map(|c| json!({"fields": c.fields, "remote": c.remote})).collect();
            json!(conflicts)
        }
        other => anyhow::bail!("unknown command {other:?}"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, server, user, token, version] = &args[..] else {
        anyhow::bail!("usage: tasks-device DATA_DIR SERVER_URL USER_ID TOKEN v1|v2|v3");
    };
    let (version, registry) = match version.as_str() {
        "v1" => (1, trackflow_example_tasks::registry()?),
        "v2" => (2, v2::registry()?),
        "v3" => (3, v3::registry()?),
        other => anyhow::bail!("unknown schema version {other:?}"),
    };
    registry.install()?;
    let options = EngineOptions { periodic: None, realtime: false, ..EngineOptions::default() };
    let engine = SyncEngine::open(dir.as_ref(), options).await?;
    let user: UserId = user.parse()?;
    engine.sign_in(user, server, token).await?;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let command: Value = serde_json::from_str(&line?)?;
        let reply = run(&engine, version, user, &command)
            .await
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        writeln!(stdout.lock(), "{reply}")?;
    }
    engine.shutdown().await;
    Ok(())
}
