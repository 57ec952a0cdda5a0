//! Settings of the `trackflow` command: flags first, then environment variables, then the
//! config file, then built-in defaults. The config file is TOML, at `--config` (or
//! `TRACKFLOW_CONFIG`), or else `config.toml` in the data directory if it exists:
//!
//! ```toml
//! server = "http://127.0.0.1:8787"   # for signup and login without --server
//! log = "info"                       # a tracing filter, as TRACKFLOW_LOG
//! log_format = "json"                # or "text"
//! sync_interval_secs = 60            # how often `trackflow watch` syncs
//! min_pull_interval_secs = 900       # the shortest time between periodic pulls of a scope
//!
//! [policies]                         # conflict policy per entity type (default last_writer_wins)
//! project = "manual"
//! audio_comment = "server_wins"
//! ```

use anyhow::Context;
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};
use trackflow_domain::{ports::ConflictPolicies, sync::ConflictPolicy, EntityType};

/// The name of the config file looked for in the data directory.
pub const CONFIG_FILE: &str = "config.toml";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// What a config file may say. Unknown keys are errors, so a typo is caught, not ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The sync server for `signup` and `login` without `--server`.
    pub server: Option<String>,
    /// The log filter.
    pub log: Option<String>,
    /// The log format.
    pub log_format: Option<LogFormat>,
    /// How often `trackflow watch` syncs, in seconds.
    pub sync_interval_secs: Option<u64>,
    /// The shortest time between periodic pulls of a scope, in seconds.
    pub min_pull_interval_secs: Option<u64>,
    /// Conflict policies by entity type.
    #[serde(default)]
    pub policies: BTreeMap<EntityType, ConflictPolicy>,
}

impl ConfigFile {
    /// Reads the config file at `explicit`, or else `config.toml` in `data_dir` if there is
    /// one. A file named outright must exist; either must parse.
    pub fn load(explicit: Option<&Path>, data_dir: &Path) -> anyhow::Result<Self> {
        let (path, required): (PathBuf, bool) = match explicit {
            Some(path) => (path.to_path_buf(), true),
            None => (data_dir.join(CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading the config file {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("in the config file {}", path.display()))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        // toml's message spans lines (it quotes the line); one line is enough here.
        toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))
    }
}

/// Settings resolved from flags, the environment and the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The sync server named by `--server`, `TRACKFLOW_SERVER` or the config file.
    pub server: Option<String>,
    /// The log filter.
    pub log: String,
    /// The log format.
    pub log_format: LogFormat,
    /// How often `trackflow watch` syncs.
    pub sync_interval: Duration,
    /// The shortest time between periodic pulls of a scope.
    pub min_pull_interval: Duration,
    /// Conflict policies.
    pub policies: ConflictPolicies,
}

/// What flags and environment variables said (clap reads both, flags first).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--server` / `TRACKFLOW_SERVER`.
    pub server: Option<String>,
    /// `--log` / `TRACKFLOW_LOG`.
    pub log: Option<String>,
    /// `--log-format` / `TRACKFLOW_LOG_FORMAT`.
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Flags and environment (`overrides`) over `file` over the defaults.
    pub fn resolve(overrides: Overrides, file: ConfigFile) -> Self {
        Self {
            server: overrides.server.or(file.server),
            log: overrides.log.or(file.log).unwrap_or_else(|| "off".into()),
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            sync_interval: Duration::from_secs(file.sync_interval_secs.unwrap_or(60).max(1)),
            min_pull_interval: file
                .min_pull_interval_secs
                .map_or(trackflow_domain::ports::DEFAULT_PULL_INTERVAL, Duration::from_secs),
            policies: ConflictPolicies(file.policies),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::SyncEntity;
    use trackflow_music::{AudioTrack, Project};

    #[test]
    fn flags_and_environment_beat_the_file_which_beats_the_defaults() {
        trackflow_music::install().expect("the music registry installs");
        let file = ConfigFile::parse(
            "server = \"http://file:1\"\nlog = \"debug\"\nsync_interval_secs = 5\n[policies]\nproject = \"manual\"\n",
        )
        .expect("parses");
        let table = [
            ("nothing given", Overrides::default(), ConfigFile::default(), None, "off", LogFormat::Text),
            (
                "the file alone",
                Overrides::default(),
                file.clone(),
                Some("http://file:1"),
                "debug",
                LogFormat::Text,
            ),
            (
                "a flag over the file",
                Overrides {
                    server: Some("http://flag:2".into()),
                    log_format: Some(LogFormat::Json),
                    log: None,
                },
                file.clone(),
                Some("http://flag:2"),
                "debug",
                LogFormat::Json,
            ),
        ];
        for (name, overrides, file, server, log, format) in table {
            let settings = Settings::resolve(overrides, file);
            assert_eq!(
                (settings.server.as_deref(), settings.log.as_str(), settings.log_format),
                (server, log, format),
                "{name}"
            );
        }
        let settings = Settings::resolve(Overrides::default(), file);
        assert_eq!(settings.sync_interval, Duration::from_secs(5));
        assert_eq!(settings.policies.of(Project::ENTITY_TYPE), ConflictPolicy::Manual);
        assert_eq!(settings.policies.of(AudioTrack::ENTITY_TYPE), ConflictPolicy::LastWriterWins);
    }

    #[test]
    fn a_bad_config_file_is_refused_with_the_reason() {
        trackflow_music::install().expect("the music registry installs");
        let table = [
            ("an unknown key", "sever = \"x\"", "unknown field `sever`"),
            ("an unknown policy", "[policies]\nproject = \"loudest\"", "unknown variant `loudest`"),
            ("an unknown entity type", "[policies]\ntrack = \"manual\"", "track"),
            ("a wrong type", "sync_interval_secs = \"soon\"", "invalid type"),
        ];
        for (name, text, expected) in table {
            let error = ConfigFile::parse(text).expect_err(name).to_string();
            assert!(error.contains(expected), "{name}: {error}");
            assert!(!error.contains('\n'), "{name}: one line");
        }
    }

    #[test]
    fn a_missing_default_file_is_no_error_but_a_missing_named_one_is() {
        trackflow_music::install().expect("the music registry installs");
        let dir = tempfile::tempdir().expect("dir");
        assert_eq!(ConfigFile::load(None, dir.path()).expect("none is fine"), ConfigFile::default());
        let named = dir.path().join("elsewhere.toml");
        assert!(ConfigFile::load(Some(&named), dir.path()).is_err());
        std::fs::write(dir.path().join(CONFIG_FILE), "log = \"info\"").expect("write");
        assert_eq!(ConfigFile::load(None, dir.path()).expect("read").log.as_deref(), Some("info"));
    }
}
