//! What the seeded simulation's driver (`it/simulation.rs`) and its client processes
//! (`src/bin/sim_client.rs`) say to each other: one JSON [`Command`] per line on the client's
//! stdin, one JSON [`Reply`] per line on its stdout, written after the command returned. A
//! write's reply is its acknowledgement: the driver counts a write only once it has read it.
//!
//! The server processes (`src/bin/sim_server.rs`) log every push result as one JSON
//! [`PushLog`] per line, for the check that no mutation is applied twice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A collaborator role, as the simulation picks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimRole {
    /// Reads and writes.
    Editor,
    /// Reads only.
    Viewer,
}

/// One user action on a device. Targets are picks among what the device sees when it runs the
/// action (`pick` modulo the number of visible rows of the type, ordered by id), so an
/// operation log replays whatever the state: an action with nothing to pick does nothing.
/// `name` and `text` number the text written (`Project 7`), `seed` an audio file or an order.
#[allow(missing_docs)] // every field is one of those above
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Creates a project owned by the device's user.
    CreateProject { name: u16 },
    /// Renames a project.
    RenameProject { pick: u32, name: u16 },
    /// Sets a project's description.
    DescribeProject { pick: u32, text: u16 },
    /// Deletes a project (and with it everything inside).
    DeleteProject { pick: u32 },
    /// Adds a track to a project; with `audio`, a generated audio file of that seed is
    /// imported and uploaded before the track.
    CreateTrack { pick: u32, name: u16, audio: Option<u32> },
    /// Renames a track.
    RenameTrack { pick: u32, name: u16 },
    /// Deletes a track (and its comments).
    DeleteTrack { pick: u32 },
    /// Comments on a track.
    Comment { pick: u32, text: u16 },
    /// Edits a comment.
    EditComment { pick: u32, text: u16 },
    /// Deletes a comment.
    DeleteComment { pick: u32 },
    /// Changes the device user's display name and creative role.
    EditProfile { name: u16 },
    /// Creates a playlist in a project.
    CreatePlaylist { pick: u32, name: u16 },
    /// Moves tracks: sets a playlist's order to a permutation (by `seed`) of some of its
    /// project's visible tracks.
    Reorder { pick: u32, seed: u32 },
    /// Adds `user` to a project with `role`.
    AddCollaborator { pick: u32, user: Uuid, role: SimRole },
    /// Changes a collaborator's role.
    ChangeRole { pick: u32, role: SimRole },
    /// Removes a collaborator.
    RemoveCollaborator { pick: u32 },
}

/// What the driver asks a client process.
#[allow(missing_docs)] // the fields are named by the variant's line
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Stores the session: `user` signed in to `server` with `token`.
    SignIn { user: Uuid, server: String, token: String },
    /// Forgets the token (what `trackflow logout` leaves): writes still queue.
    SignOut,
    /// Creates the user's profile on this device.
    CreateProfile { user: Uuid, name: String },
    /// Runs one user action.
    Act(Action),
    /// Runs one sync now (push, then pull).
    Sync,
    /// Syncs until nothing is left to send (operations parked as failed stay, and are
    /// reported by [`Command::Dump`]), or until `max_rounds` syncs.
    Settle { max_rounds: u32 },
    /// Reports what the device holds.
    Dump,
    /// Does what the status asks of the user: retries the operations parked after transient
    /// failures ("gave up after N attempts"), and discards those the server refused (with
    /// what waits behind them).
    Resolve,
}

/// A client process's answer to one command.
#[allow(missing_docs)] // the fields are named by the variant's line
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The process is up and its engine started (the first line it writes).
    Ready,
    /// The command returned; for a write, what it wrote: the entity, and the synced value of
    /// each field it set, as the entity's JSON fields name them.
    Done { entity: Option<(String, Uuid)>, fields: BTreeMap<String, Value> },
    /// Nothing to pick: the action did nothing.
    Nothing,
    /// The engine refused the command locally (validation, a missing row): nothing changed.
    Refused { error: String },
    /// The sync ran; `pending` operations are still waiting to be sent.
    Synced { pending: u64, failed: u64 },
    /// What the device holds.
    Dump(Dump),
    /// What [`Command::Resolve`] did: operations retried, and the entities of the operations
    /// discarded.
    Resolved { retried: u64, discarded: Vec<Uuid> },
}

/// Rows of a replica: (type, id, synced fields), ordered.
pub type Rows = Vec<(String, Uuid, BTreeMap<String, Value>)>;

/// Everything a device holds and reports, for the checks at quiescence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dump {
    /// Every visible row: (type, id) → its synced fields.
    pub rows: Rows,
    /// What the server shows the device's user, pulled from the start of every scope with the
    /// device's token (tombstones left out), in the same form.
    pub server: Rows,
    /// The operations parked as failed: what the user is shown as refused.
    pub failed: Vec<FailedOp>,
    /// Operations still pending or in flight.
    pub pending: u64,
    /// The failed count the status stream shows.
    pub status_failed: u64,
}

/// An operation parked as failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedOp {
    /// The operation's id (the mutation id the server saw).
    pub id: Uuid,
    /// The entity's type.
    pub entity_type: String,
    /// The entity's id.
    pub entity_id: Uuid,
    /// The reason the user is shown.
    pub reason: String,
}

/// One push result as a server process logs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushLog {
    /// The pushing user.
    pub user: Uuid,
    /// The mutation.
    pub mutation: Uuid,
    /// `applied`, `conflict`, `rejected` or `duplicate`.
    pub outcome: String,
    /// The version it was given (the first application's, for a duplicate); 0 when refused.
    pub version: i64,
    /// The refusal's code, for `rejected`.
    pub code: Option<String>,
}
