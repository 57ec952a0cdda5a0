//! Printing results: one line per item for people, JSON with `--json`.

use super::position::format_position;
use serde::Serialize;
use trackflow_domain::{ports::SyncStatistics, sync::ConflictKind, SyncConflict, SyncOperation};
use trackflow_music::{AudioComment, AudioTrack, Playlist, Project, ProjectCollaborator, UserProfile};

/// How an item reads on one line.
pub trait Line {
    /// The line.
    fn line(&self) -> String;
}

impl Line for Project {
    fn line(&self) -> String {
        match self.description() {
            Some(d) => format!("{}  {}  — {d}", self.id(), self.name()),
            None => format!("{}  {}", self.id(), self.name()),
        }
    }
}

impl Line for AudioTrack {
    fn line(&self) -> String {
        format!("{}  {}  [{}]", self.id(), self.name(), format_position(self.duration_ms()))
    }
}

impl Line for AudioComment {
    fn line(&self) -> String {
        format!("{}  @{}  {}", self.id(), format_position(self.timestamp_ms()), self.content())
    }
}

impl Line for UserProfile {
    fn line(&self) -> String {
        format!("{}  {} <{}>", self.id(), self.name(), self.email())
    }
}

impl Line for Playlist {
    fn line(&self) -> String {
        format!("{}  {}  ({} tracks)", self.id(), self.name(), self.track_ids().len())
    }
}

impl Line for ProjectCollaborator {
    fn line(&self) -> String {
        format!("{}  user {}  {}", self.id(), self.user_id(), self.role())
    }
}

/// A collaborator with the name and email of their profile, when this device holds it (a
/// member's profile is pulled once they share a project with you).
#[derive(Debug, Serialize)]
pub struct Member {
    /// The collaborator record.
    #[serde(flatten)]
    pub collaborator: ProjectCollaborator,
    /// Their display name.
    pub name: Option<String>,
    /// Their email address.
    pub email: Option<String>,
}

impl Line for Member {
    fn line(&self) -> String {
        let who = match (&self.name, &self.email) {
            (Some(name), Some(email)) => format!("{name} <{email}>"),
            _ => format!("user {}", self.collaborator.user_id()),
        };
        format!("{}  {who}  {}", self.collaborator.id(), self.collaborator.role())
    }
}

impl Line for SyncConflict {
    fn line(&self) -> String {
        let state = match &self.resolution {
            None => "open".to_owned(),
            Some(r) => format!(
                "resolved ({})",
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v["choice"].as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        };
        let what = match self.kind {
            ConflictKind::Fields => format!("fields {}", self.fields.join(", ")),
            ConflictKind::ParentDeleted => "deleted with what it was in; yours kept here".to_owned(),
        };
        format!("{}  {} {}  {what}  {state}", self.id, self.entity.entity_type, self.entity.id)
    }
}

/// `at` as people read it (`Sat, 28 Nov 2026 06:31:24 GMT`); `--json` keeps milliseconds.
pub(super) fn http_date(at: trackflow_domain::Timestamp) -> String {
    let millis = u64::try_from(at.as_millis()).unwrap_or(0);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis))
}

impl Line for SyncStatistics {
    fn line(&self) -> String {
        let c = &self.counts;
        format!(
            "{}  {:<20} last pull {} ({} ms): {} applied, {} skipped, {} conflicts, {} errors",
            self.scope,
            self.entity_type.as_str(),
            http_date(self.last_sync_at),
            self.duration_ms,
            c.applied,
            c.skipped,
            c.conflicts,
            self.errors
        )
    }
}

impl Line for SyncOperation {
    fn line(&self) -> String {
        let error = self.last_error.as_deref().map(|e| format!("  last error: {e}")).unwrap_or_default();
        format!(
            "{}  {:<8} {:<6} {} {}  {}  attempts {}{error}",
            self.id,
            self.priority,
            self.kind,
            self.entity.entity_type,
            self.entity.id,
            self.status,
            self.attempts
        )
    }
}

/// Prints results in the chosen format.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// JSON instead of lines.
    pub json: bool,
}

impl Printer {
    /// One item.
    pub fn one<T: Serialize + Line>(&self, item: &T) -> anyhow::Result<()> {
        if self.json {
            say!("{}", serde_json::to_string_pretty(item)?);
        } else {
            say!("{}", item.line());
        }
        Ok(())
    }

    /// A list; people get a note instead of nothing when it is empty.
    pub fn many<T: Serialize + Line>(&self, items: &[T], empty: &str) -> anyhow::Result<()> {
        if self.json {
            say!("{}", serde_json::to_string_pretty(items)?);
        } else if items.is_empty() {
            say!("{empty}");
        } else {
            for item in items {
                say!("{}", item.line());
            }
        }
        Ok(())
    }

    /// Any serialisable value, with a human line.
    pub fn value<T: Serialize>(&self, value: &T, human: &str) -> anyhow::Result<()> {
        if self.json {
            say!("{}", serde_json::to_string_pretty(value)?);
        } else {
            say!("{human}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::SyncEntity;
    use trackflow_domain::{ports::ApplyCounts, Timestamp};

    #[test]
    fn statistics_show_the_last_pull_as_a_date() {
        let stats = SyncStatistics {
            scope: "people".into(),
            entity_type: UserProfile::ENTITY_TYPE,
            last_sync_at: Timestamp(1_800_000_000_000),
            duration_ms: 12,
            counts: ApplyCounts { applied: 3, skipped: 1, ..ApplyCounts::default() },
            errors: 0,
        };
        let line = stats.line();
        assert!(line.contains("last pull Fri, 15 Jan 2027 08:00:00 GMT (12 ms)"), "{line}");
        assert!(line.contains("3 applied, 1 skipped"), "{line}");
    }

    #[test]
    fn a_conflict_line_says_what_it_is_about() {
        trackflow_music::install().expect("the music registry installs");
        let conflict = SyncConflict {
            id: trackflow_domain::ConflictId::new(),
            entity: trackflow_domain::EntityRef::new(AudioComment::ENTITY_TYPE, uuid::Uuid::nil()),
            local: [("content".to_owned(), "louder".into())].into(),
            remote: Default::default(),
            fields: vec!["content".into()],
            detected_at: Timestamp(0),
            resolution: None,
            kind: ConflictKind::Fields,
        };
        assert!(conflict
            .line()
            .contains("audio_comment 00000000-0000-0000-0000-000000000000  fields content  open"));
        let deleted = SyncConflict { kind: ConflictKind::ParentDeleted, ..conflict }.line();
        assert!(deleted.contains("deleted with what it was in; yours kept here  open"), "{deleted}");
    }
}
