//! # trackflow-tests
//!
//! End-to-end and reliability suites that run TrackFlow Sync as real processes. Today: the
//! crash test, which SIGKILLs a writer process at random moments and checks the local store
//! after every kill (`it/crash.rs`, writer in `src/bin/crash_writer.rs`). The server and sync
//! suites of later work live here too.
//!
//! The helpers here are shared by the writer binary and the tests, and by other crates' tests
//! ([`audio`]: audio files written by hand).

pub mod audio;
pub mod sim;

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

/// Follows a child process's stderr from a thread of its own, line by line, and waits for its
/// first line: a server process reports its address there when it accepts connections. Returns
/// that line and the receiver of the lines after it.
pub fn first_stderr_line(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("the child's stderr is piped");
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let first = received.recv_timeout(timeout).expect("the process writes a first line to stderr");
    (first, received)
}

/// A sync server process that prints `listening on <url>` first on stderr (`tasks-server`, say),
/// killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    /// Where it listens.
    pub url: String,
}

impl ServerProcess {
    /// Starts `binary` with `args` and waits for its address.
    pub fn start<I, S>(binary: &str, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = std::process::Command::new(binary)
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let (first, _) = first_stderr_line(&mut child, std::time::Duration::from_secs(60));
        let url =
            first.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected {first:?}")).to_owned();
        Self { child, url }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
