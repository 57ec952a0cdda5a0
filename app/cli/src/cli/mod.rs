//! The `trackflow` command-line interface. Every entity command works offline against the local
//! database in `--data-dir`; writes are queued for sync.

mod account;
mod commands;
mod output;
mod position;
mod sync;

use clap::{Args, CommandFactory, Parser, Subcommand};
use std::{path::PathBuf, process::ExitCode};
use trackflow_domain::{CollaboratorRole, UserId};
use trackflow_music::{AudioCommentId, AudioTrackId, CollaboratorId, PlaylistId, ProjectId};

pub use position::{format_position, parse_position};

/// TrackFlow Sync: offline-first music collaboration.
#[derive(Debug, Parser)]
#[command(
    name = "trackflow",
    version,
    about = "Work on music projects offline (profiles, projects, tracks, comments, playlists) and sync \
             them with your collaborators through a TrackFlow Sync server.",
    long_about = None
)]
pub struct Cli {
    /// Directory of the local database (default: the platform's data directory).
    #[arg(long, global = true, env = "TRACKFLOW_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A named client of its own, in `profiles/NAME` under the data directory: several
    /// clients (users or devices) side by side on one machine.
    #[arg(long, global = true, env = "TRACKFLOW_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// The config file (default: `config.toml` in the data directory, if there is one).
    #[arg(long, global = true, env = "TRACKFLOW_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log filter, in `RUST_LOG` syntax (default: off).
    #[arg(long, global = true, env = "TRACKFLOW_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format.
    #[arg(long, global = true, env = "TRACKFLOW_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<crate::config::LogFormat>,

    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Your user profile (create it first: every other write is made as this user).
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Projects you own or collaborate on.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Audio tracks of a project.
    #[command(subcommand)]
    Track(TrackCommand),
    /// Comments at positions in a track.
    #[command(subcommand)]
    Comment(CommentCommand),
    /// Playlists of a project.
    #[command(subcommand)]
    Playlist(PlaylistCommand),
    /// Who else works on a project.
    #[command(subcommand)]
    Collaborator(CollaboratorCommand),
    /// Local changes waiting to be synced, and upstream health; retry or discard failed ones.
    Queue(QueueArgs),
    /// Conflicts a manual policy kept for you: list them, show one, resolve one.
    Conflicts(ConflictsArgs),
    /// Create an account on a sync server for this device's user, and sign in.
    Signup(AuthArgs),
    /// Sign in to an existing account: a second device of yours, or after `logout`.
    Login(AuthArgs),
    /// Sign out: the token is revoked; queued changes stay and sync after the next login.
    Logout,
    /// Sync now: push what is queued, then pull what changed (minimum intervals apply to
    /// background syncs only).
    Sync,
    /// Keep syncing in the background and print the sync state whenever it changes, until
    /// Ctrl-C.
    Watch,
    /// Sync status: the sync state, the outbox, open conflicts, and what the last pull of each
    /// scope did.
    Status,
    /// Check the local database; if it is damaged, rebuild it from the server, keeping every
    /// change not yet sent (the damaged file is kept beside it).
    Repair,
    /// The main job on one machine: a sync server and two musicians' clients, one offline for a
    /// while, conflicting edits, reconnection, and a check that every client matches the server
    /// (in --data-dir if given and empty, else a temporary directory).
    Demo,
    /// Run the sync server until Ctrl-C (or SIGTERM), then finish requests in flight and stop.
    Server(crate::server::ServerArgs),
}

/// `trackflow signup` and `trackflow login`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// The sync server's URL (default: the config file's `server`, or the last one used).
    #[arg(long, env = "TRACKFLOW_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The account's email (signup defaults to your profile's).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of standard input (else `TRACKFLOW_PASSWORD`,
    /// else a prompt on the terminal). It is never printed or logged.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `trackflow queue [retry|discard]`
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// What to do; without one, shows health and every queued operation.
    #[command(subcommand)]
    pub action: Option<QueueCommand>,
}

/// `trackflow queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Send failed operations again, from a fresh attempt count.
    Retry {
        /// Operation ids (see `trackflow queue`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        ids: Vec<trackflow_domain::OperationId>,
        /// Every failed operation.
        #[arg(long)]
        all: bool,
    },
    /// Drop failed operations for good, with every queued operation that depends on them. The
    /// server never receives these changes; the rows they changed show the server's state
    /// again after the next sync (or already do, if it ran since they failed).
    Discard {
        /// Operation ids (see `trackflow queue`).
        #[arg(required = true)]
        ids: Vec<trackflow_domain::OperationId>,
    },
}

/// `trackflow conflicts [show|resolve]`
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    /// What to do; without one, lists the unresolved conflicts.
    #[command(subcommand)]
    pub action: Option<ConflictsCommand>,
    /// List resolved conflicts too.
    #[arg(long)]
    pub all: bool,
}

/// `trackflow conflicts ...`
#[derive(Debug, Subcommand)]
pub enum ConflictsCommand {
    /// Both sides of one conflict.
    Show {
        /// Conflict id (see `trackflow conflicts`).
        id: trackflow_domain::ConflictId,
    },
    /// Settle a conflict: the chosen values are written as a new change, which wins everywhere.
    Resolve {
        /// Conflict id.
        id: trackflow_domain::ConflictId,
        /// Whose values: `mine` or `theirs`; or give `--merged`.
        #[arg(value_parser = ["mine", "theirs"], required_unless_present = "merged", conflicts_with = "merged")]
        side: Option<String>,
        /// A JSON object of values for the fields in conflict, e.g. '{"name":"Both"}'.
        #[arg(long)]
        merged: Option<String>,
    },
}

/// `trackflow profile ...`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Create this device's user.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Email address.
        #[arg(long)]
        email: String,
    },
    /// Show your profile.
    Show,
    /// Change your profile.
    Update(ProfileUpdate),
}

/// Fields of `trackflow profile update` (at least one).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("changes").required(true).multiple(true))]
pub struct ProfileUpdate {
    /// New display name.
    #[arg(long, group = "changes")]
    pub name: Option<String>,
    /// New email address.
    #[arg(long, group = "changes")]
    pub email: Option<String>,
    /// New avatar URL ("" clears it).
    #[arg(long, group = "changes")]
    pub avatar_url: Option<String>,
    /// New creative role, e.g. producer ("" clears it).
    #[arg(long, group = "changes")]
    pub creative_role: Option<String>,
}

/// `trackflow project ...`
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project you own.
    Create {
        /// Name.
        #[arg(long)]
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
    },
    /// List your projects.
    List,
    /// Show one project.
    Show {
        /// Project id.
        id: ProjectId,
    },
    /// Rename or re-describe a project.
    #[command(group = clap::ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Project id.
        id: ProjectId,
        /// New name.
        #[arg(long, group = "changes")]
        name: Option<String>,
        /// New description ("" clears it).
        #[arg(long, group = "changes")]
        description: Option<String>,
    },
    /// Delete a project and everything in it.
    Delete {
        /// Project id.
        id: ProjectId,
    },
}

/// `trackflow track ...`
#[derive(Debug, Subcommand)]
pub enum TrackCommand {
    /// Add a track to a project, with its audio file (WAV, FLAC or MP3): the file is copied
    /// into the local audio cache and uploaded before the track reaches the server; its length
    /// is read from it.
    Add {
        /// Project id.
        project: ProjectId,
        /// The audio file (none: a track whose audio comes later).
        file: Option<PathBuf>,
        /// Name (default: the file's name without its extension).
        #[arg(long)]
        name: Option<String>,
        /// Length: seconds, m:ss or h:mm:ss, optionally with .fff (e.g. 3:25). Read from the
        /// audio file when there is one (a length given too must agree with it within a
        /// second); needed without one.
        #[arg(long, value_parser = parse_position, allow_negative_numbers = true)]
        duration: Option<i64>,
    },
    /// Print the local path of a track's audio, downloading it into the cache if needed.
    Fetch {
        /// Track id.
        id: AudioTrackId,
    },
    /// Keep a track's audio in the cache whatever its size cap (fetching it first).
    Pin {
        /// Track id.
        id: AudioTrackId,
    },
    /// Let a track's audio be evicted again.
    Unpin {
        /// Track id.
        id: AudioTrackId,
    },
    /// List a project's tracks.
    List {
        /// Project id.
        #[arg(long)]
        project: ProjectId,
    },
    /// Show one track.
    Show {
        /// Track id.
        id: AudioTrackId,
    },
    /// Rename a track, or attach audio to it or replace its audio (its length follows).
    #[command(group = clap::ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Track id.
        id: AudioTrackId,
        /// New name.
        #[arg(long, group = "changes")]
        name: Option<String>,
        /// The audio file (WAV, FLAC or MP3): copied into the local audio cache and uploaded
        /// before the change reaches the server; the track's length becomes the file's.
        #[arg(long, group = "changes", conflicts_with = "sha256")]
        file: Option<PathBuf>,
        /// SHA-256 of an audio file the server already holds.
        #[arg(long, group = "changes")]
        sha256: Option<String>,
    },
    /// Delete a track and its comments.
    Delete {
        /// Track id.
        id: AudioTrackId,
    },
}

/// `trackflow comment ...`
#[derive(Debug, Subcommand)]
pub enum CommentCommand {
    /// Comment on a track at a position.
    Add {
        /// Track id.
        #[arg(long)]
        track: AudioTrackId,
        /// Position: seconds, m:ss or h:mm:ss, optionally with .fff (e.g. 1:05).
        #[arg(long, value_parser = parse_position, allow_negative_numbers = true)]
        at: i64,
        /// The comment.
        #[arg(long)]
        text: String,
    },
    /// List a track's comments by position.
    List {
        /// Track id.
        #[arg(long)]
        track: AudioTrackId,
    },
    /// Show one comment.
    Show {
        /// Comment id.
        id: AudioCommentId,
    },
    /// Edit a comment's text.
    Update {
        /// Comment id.
        id: AudioCommentId,
        /// New text.
        #[arg(long)]
        text: String,
    },
    /// Delete a comment.
    Delete {
        /// Comment id.
        id: AudioCommentId,
    },
}

/// `trackflow playlist ...`
#[derive(Debug, Subcommand)]
pub enum PlaylistCommand {
    /// Create a playlist in a project.
    Create {
        /// Project id.
        #[arg(long)]
        project: ProjectId,
        /// Name.
        #[arg(long)]
        name: String,
        /// Tracks in play order (repeat the flag).
        #[arg(long = "track")]
        tracks: Vec<AudioTrackId>,
    },
    /// List a project's playlists.
    List {
        /// Project id.
        #[arg(long)]
        project: ProjectId,
    },
    /// Show one playlist.
    Show {
        /// Playlist id.
        id: PlaylistId,
    },
    /// Rename a playlist or replace its track order.
    #[command(group = clap::ArgGroup::new("changes").required(true).multiple(true))]
    Update {
        /// Playlist id.
        id: PlaylistId,
        /// New name.
        #[arg(long, group = "changes")]
        name: Option<String>,
        /// New track order, replacing the old one (repeat the flag).
        #[arg(long = "track", conflicts_with = "clear_tracks", group = "changes")]
        tracks: Option<Vec<AudioTrackId>>,
        /// Remove every track.
        #[arg(long, group = "changes")]
        clear_tracks: bool,
    },
    /// Delete a playlist.
    Delete {
        /// Playlist id.
        id: PlaylistId,
    },
}

/// `trackflow collaborator ...`
#[derive(Debug, Subcommand)]
pub enum CollaboratorCommand {
    /// Invite someone to a project you own, by the email of their account (asks the server)
    /// or by their user id (works offline).
    #[command(group = clap::ArgGroup::new("who").required(true))]
    Add {
        /// Project id.
        #[arg(long)]
        project: ProjectId,
        /// The email their account signed up with.
        #[arg(long, group = "who")]
        email: Option<String>,
        /// Their user id.
        #[arg(long, group = "who")]
        user: Option<UserId>,
        /// editor or viewer.
        #[arg(long)]
        role: CollaboratorRole,
    },
    /// List a project's collaborators.
    List {
        /// Project id.
        #[arg(long)]
        project: ProjectId,
    },
    /// Change a collaborator's role.
    Update {
        /// Membership id.
        id: CollaboratorId,
        /// editor or viewer.
        #[arg(long)]
        role: CollaboratorRole,
    },
    /// Remove a collaborator.
    Remove {
        /// Membership id.
        id: CollaboratorId,
    },
}

/// Exit status for a usage error (bad flag or value), as clap uses.
const USAGE_ERROR: u8 = 2;
/// Exit status for any other failure.
const FAILURE: u8 = 1;

/// Parses the command line, runs the command, and turns any failure into one line on stderr
/// (with `--json`, one JSON object: `{"error":{"code":...,"message":...}}`) and a non-zero exit
/// status.
pub fn main() -> ExitCode {
    // Asked for before parsing, so that a usage error is JSON too.
    let json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
    // The music model's types, registered before anything reads a type by name.
    if let Err(err) = trackflow_music::install() {
        return fail(&anyhow::Error::from(err), json);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err, json),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&anyhow::Error::from(err), json),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err, json),
    }
}

/// The help of `trackflow server`, if that is what `err` asks for. The options every command
/// takes are global, so clap repeats them in each command's help; the server's leaves out those
/// it has no use for (it is no client, and prints nothing but its logs).
fn server_help(err: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    let asked = std::env::args().skip(1).take_while(|a| a != "--").any(|a| a == "server");
    if !asked || err.kind() != ErrorKind::DisplayHelp {
        return None;
    }
    let mut command = Cli::command();
    command.build();
    let server = command.find_subcommand_mut("server")?;
    // Rendered only: a command changed after it was built is not fit for parsing.
    let mut shown =
        std::mem::take(server).mut_arg("profile", |a| a.hide(true)).mut_arg("json", |a| a.hide(true));
    let long = std::env::args().any(|a| a == "--help");
    Some(if long { shown.render_long_help() } else { shown.render_help() }.to_string())
}

fn usage_error(err: clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if let Some(help) = server_help(&err) {
        say!("{help}");
        return ExitCode::SUCCESS;
    }
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return if err.use_stderr() { ExitCode::from(USAGE_ERROR) } else { ExitCode::SUCCESS };
    }
    // clap's own rendering spans several lines: what is wrong (with what it names on the lines
    // after, such as the missing arguments), then usage and hints. One line of the first part.
    let line = usage_line(&err.render().to_string());
    report("usage", line.strip_prefix("error: ").unwrap_or(&line), json);
    ExitCode::from(USAGE_ERROR)
}

/// Writes an error to stderr: `error: message`, or with `--json` one JSON object.
fn report(code: &str, message: &str, json: bool) {
    if json {
        eprintln!("{}", serde_json::json!({ "error": { "code": code, "message": message } }));
    } else {
        eprintln!("error: {message}");
    }
}

/// A stable code for what went wrong, for scripts reading `--json` errors.
fn error_code(err: &anyhow::Error) -> &'static str {
    use trackflow_domain::{ports::RemoteError, RepositoryError, ValidationError};
    for cause in err.chain() {
        if cause.is::<ValidationError>() {
            return "invalid_field";
        }
        if let Some(e) = cause.downcast_ref::<RepositoryError>() {
            return match e {
                RepositoryError::NotFound(_) => "not_found",
                RepositoryError::Validation(_) => "invalid_field",
                RepositoryError::Conflict(_) => "conflict",
                RepositoryError::Forbidden(_) => "forbidden",
                _ => "storage",
            };
        }
        if let Some(e) = cause.downcast_ref::<RemoteError>() {
            return match e {
                RemoteError::Unauthorized(_) => "unauthorized",
                RemoteError::Permanent { .. } => "refused",
                RemoteError::UpgradeRequired { .. } => "upgrade_required",
                _ => "unreachable",
            };
        }
    }
    "failed"
}

/// The first paragraph of a rendered clap error, on one line.
fn usage_line(rendered: &str) -> String {
    let first: Vec<&str> =
        rendered.lines().map(str::trim).skip_while(|l| l.is_empty()).take_while(|l| !l.is_empty()).collect();
    if first.is_empty() {
        "error: invalid arguments".to_owned()
    } else {
        first.join(" ")
    }
}

fn fail(err: &anyhow::Error, json: bool) -> ExitCode {
    // `{:#}` joins the cause chain with ": " on one line.
    let message = format!("{err:#}").replace('\n', " ");
    if err.chain().any(|cause| trackflow_store::StoreError::is_damage(&cause.to_string())) {
        let message = format!(
            "the local database is damaged ({message}); run `trackflow repair` to rebuild it from the \
             server, keeping every change not yet sent"
        );
        report("damaged_database", &message, json);
        return ExitCode::from(FAILURE);
    }
    report(error_code(err), &message, json);
    ExitCode::from(FAILURE)
}
