//! `trackflow server` as a process of its own, for the suites that need a real one.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// A `trackflow server` process.
pub(crate) struct ServerProcess {
    child: Option<Child>,
    pub(crate) addr: String,
    /// What it writes to stderr after its first line, line by line.
    lines: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts a server on `listen` over the database file `db` and waits for its address.
    pub(crate) fn start(db: &Path, listen: &str) -> Self {
        Self::start_with(&["--listen".as_ref(), listen.as_ref(), "--db".as_ref(), db.as_os_str()])
    }

    /// Starts `trackflow server` with `args` and waits for its address.
    pub(crate) fn start_with(args: &[&std::ffi::OsStr]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trackflow"))
            .arg("server")
            .args(args)
            .env_remove("TRACKFLOW_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server");
        let (first, received) = trackflow_tests::first_stderr_line(&mut child, Duration::from_secs(60));
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_owned();
        Self { child: Some(child), addr, lines: received }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit; returns the exit status and what the
    /// server wrote to stderr meanwhile.
    #[cfg(unix)]
    pub(crate) fn interrupt(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let (done, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait());
        });
        let exit = exited.recv_timeout(Duration::from_secs(30)).expect("stops after SIGINT").expect("wait");
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        (exit, lines.iter().collect()) // ends at EOF: the process has exited
    }

    /// Stops it the hard way: the clients find nobody listening.
    pub(crate) fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
