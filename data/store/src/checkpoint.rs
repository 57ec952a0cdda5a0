//! Checkpoints off the writers' path.
//!
//! In WAL mode every commit appends pages to the log, and a *checkpoint* copies them back into
//! the database file. SQLite's automatic checkpoint runs inside whichever commit finds the log
//! past 1,000 pages, and with `synchronous = NORMAL` it is the only part of a commit that waits
//! for the disk (two fsyncs): it made the slowest 1 % of local writes (docs/PERFORMANCE.md,
//! "Tail latency of local writes"). Here a thread of the store's own, with a connection of its
//! own, runs `PRAGMA wal_checkpoint(PASSIVE)`, which never blocks writers or readers:
//!
//! - once writers have been idle for [`CheckpointOptions::idle`] (5 ms) with at least
//!   [`idle_pages`](CheckpointOptions::idle_pages) (1,000) in the log not yet copied back,
//! - or, writers busy or not, when [`busy_pages`](CheckpointOptions::busy_pages) (8,000, 32 MiB)
//!   wait, looked at every `idle`: a bound on the log through a long burst of writes.
//!
//! Idle first, because a checkpoint's fsyncs stall the writes made while they run (a write
//! that changes a file's size or time waits for the file system's journal commit that an fsync
//! forces): measured with `trackflow-bench local-write`, checkpoints every 1,000 or 4,000 pages
//! on this thread during a burst left the p99 of a track create at 110 – 240 µs, idle ones at
//! 62 – 77 µs (docs/PERFORMANCE.md, "Tail latency of local writes").
//!
//! The writers' automatic checkpoint stays, far higher
//! ([`inline_pages`](CheckpointOptions::inline_pages)), as a backstop should the thread fall
//! behind. The one wait for the disk left in a writer's path is SQLite's sync of the log's
//! header when it starts the log over after a complete checkpoint, once per cycle.
//!
//! The thread learns how much of the log waits from the WAL-index header in the `-shm` file
//! (<https://www.sqlite.org/walformat.html>: the log's last frame `mxFrame` at byte 16, the
//! frames copied back `nBackfill` at byte 96, in native byte order). A stale read only moves a
//! checkpoint a little earlier or later.

use diesel::connection::SimpleConnection;
use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};
use tokio::sync::watch;

/// When the log is copied back into the database file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOptions {
    /// Checkpoint on the store's own thread (`false`: only SQLite's automatic checkpoint in the
    /// writers, at [`inline_pages`](Self::inline_pages)).
    pub background: bool,
    /// How long writers must have been idle before an idle checkpoint.
    pub idle: Duration,
    /// Pages waiting in the log that an idle checkpoint needs.
    pub idle_pages: u32,
    /// Pages waiting in the log that start a checkpoint at once, writers busy or not.
    pub busy_pages: u32,
    /// SQLite's automatic checkpoint in the writers (`wal_autocheckpoint`): with the thread, a
    /// backstop; without it, SQLite's default.
    pub inline_pages: u32,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        Self {
            background: true,
            idle: Duration::from_millis(5),
            idle_pages: 1_000,
            busy_pages: 8_000,
            inline_pages: 32_000,
        }
    }
}

impl CheckpointOptions {
    /// SQLite's own automatic checkpoint only, every 1,000 pages in the committing writer.
    pub fn inline() -> Self {
        Self { background: false, inline_pages: 1_000, ..Self::default() }
    }
}

/// What the store and its checkpoint thread share.
#[derive(Debug)]
struct Shared {
    /// Bumped after every piece of database work through the store.
    activity: AtomicU64,
    /// Whether the thread waits for activity (and must be woken).
    sleeping: AtomicBool,
    stop: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
    /// Checkpoints run by the thread.
    done: watch::Sender<u64>,
}

/// The store's checkpoint thread, stopped when dropped: the drop waits for a checkpoint under
/// way, so that once the store is gone nothing of it holds the database.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread over the database at `path`, which is open in WAL mode. With
    /// `options.background` false, no thread runs and [`poke`](Self::poke) does nothing.
    pub fn start(
        path: &Path,
        options: &CheckpointOptions,
        busy_timeout: Duration,
    ) -> trackflow_db::error::StoreResult<Self> {
        let shared = Arc::new(Shared {
            activity: AtomicU64::new(0),
            sleeping: AtomicBool::new(false),
            stop: AtomicBool::new(!options.background),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            done: watch::Sender::new(0),
        });
        let mut thread = None;
        if options.background {
            let conn = super::connection::establish(path, busy_timeout)?;
            let worker =
                Worker { shared: Arc::clone(&shared), options: options.clone(), shm: shm_path(path), conn };
            let spawned = std::thread::Builder::new()
                .name("trackflow-checkpoint".into())
                .spawn(move || worker.run())
                .map_err(|e| trackflow_db::error::StoreError::Pool(format!("checkpoint thread: {e}")))?;
            thread = Some(spawned);
        }
        Ok(Self { shared, thread })
    }

    /// Tells the thread that database work happened. Cheap unless the thread sleeps.
    pub fn poke(&self) {
        let shared = &self.shared;
        shared.activity.fetch_add(1, Ordering::SeqCst);
        if shared.sleeping.load(Ordering::SeqCst) {
            let _held = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_one();
        }
    }

    /// A receiver that sees the number of checkpoints the thread has run.
    pub fn done(&self) -> watch::Receiver<u64> {
        self.shared.done.subscribe()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let _held = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `-shm` file of the database at `path`.
fn shm_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-shm");
    PathBuf::from(name)
}

struct Worker {
    shared: Arc<Shared>,
    options: CheckpointOptions,
    shm: PathBuf,
    conn: diesel::SqliteConnection,
}

impl Worker {
    fn run(mut self) {
        let mut seen = 0;
        while self.activity_after(seen).is_some() {
            // Writers are at work: checkpoint when the log holds `busy_pages`, or once they
            // have been idle for `idle`.
            loop {
                if self.waiting_pages() >= self.options.busy_pages {
                    self.checkpoint();
                }
                let before = self.shared.activity.load(Ordering::SeqCst);
                if !self.pause(self.options.idle) {
                    return;
                }
                let after = self.shared.activity.load(Ordering::SeqCst);
                if after == before {
                    if self.waiting_pages() >= self.options.idle_pages {
                        self.checkpoint();
                    }
                    seen = self.shared.activity.load(Ordering::SeqCst);
                    break;
                }
            }
        }
    }

    /// Waits until activity passes `seen`; `None` once the store is gone.
    fn activity_after(&self, seen: u64) -> Option<u64> {
        let shared = &self.shared;
        let mut held = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        shared.sleeping.store(true, Ordering::SeqCst);
        loop {
            if shared.stop.load(Ordering::SeqCst) {
                return None;
            }
            let now = shared.activity.load(Ordering::SeqCst);
            if now != seen {
                shared.sleeping.store(false, Ordering::SeqCst);
                return Some(now);
            }
            held = shared.wake.wait(held).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits `idle` (or until the store is gone: then `false`).
    fn pause(&self, idle: Duration) -> bool {
        let shared = &self.shared;
        let held = shared.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _held = shared
            .wake
            .wait_timeout_while(held, idle, |_| !shared.stop.load(Ordering::SeqCst))
            .unwrap_or_else(|e| e.into_inner());
        !shared.stop.load(Ordering::SeqCst)
    }

    /// Pages in the log not yet copied back, from the WAL-index header (0 if unreadable).
    fn waiting_pages(&self) -> u32 {
        let mut header = [0u8; 100];
        let read = File::open(&self.shm).and_then(|mut file| file.read_exact(&mut header));
        if read.is_err() {
            return 0;
        }
        let word =
            |at: usize| u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
        let (last, copied) = (word(16), word(96));
        last.saturating_sub(copied)
    }

    fn checkpoint(&mut self) {
        match self.conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            Ok(()) => self.shared.done.send_modify(|n| *n += 1),
            Err(error) => tracing::warn!(%error, "background checkpoint failed"),
        }
    }
}
