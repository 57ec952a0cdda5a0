//! # trackflow-tests
//!
//! End-to-end and reliability suites that run TrackFlow Sync as real processes. Today: the
//! crash test, which SIGKILLs a writer process at random moments and checks the local store
//! after every kill (`it/crash.rs`, writer in `src/bin/crash_writer.rs`). The server and sync
//! suites of later work live here too.
//!
//! The helpers here are shared by the writer binary and the test.

/// One acknowledged write, as the crash writer reports it on stdout (one line each, flushed
/// after the write returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// A project was created.
    Project(uuid::Uuid),
    /// A track was created in a project.
    Track(uuid::Uuid),
    /// A project was renamed.
    Update(uuid::Uuid),
}

impl Ack {
    /// The line the writer prints.
    pub fn to_line(&self) -> String {
        match self {
            Ack::Project(id) => format!("project {id}"),
            Ack::Track(id) => format!("track {id}"),
            Ack::Update(id) => format!("update {id}"),
        }
    }

    /// Parses a writer line.
    pub fn parse(line: &str) -> Option<Ack> {
        let (kind, id) = line.trim().split_once(' ')?;
        let id = uuid::Uuid::parse_str(id).ok()?;
        match kind {
            "project" => Some(Ack::Project(id)),
            "track" => Some(Ack::Track(id)),
            "update" => Some(Ack::Update(id)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_lines_round_trip() {
        let id = uuid::Uuid::now_v7();
        for ack in [Ack::Project(id), Ack::Track(id), Ack::Update(id)] {
            assert_eq!(Ack::parse(&ack.to_line()), Some(ack));
        }
        assert_eq!(Ack::parse("project not-a-uuid"), None);
        assert_eq!(Ack::parse("partial"), None);
    }
}
