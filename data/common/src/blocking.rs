//! Running blocking work (every Diesel call) outside async worker duty.
//!
//! Two ways, chosen by [`Offload`]:
//!
//! - [`Offload::Auto`] (the default): on a multi-thread tokio runtime, `block_in_place` — the
//!   current thread first hands its worker role (and queued tasks) to another thread, so the
//!   runtime keeps its full capacity, then runs the work itself. No thread wake-up sits on the
//!   latency path. Elsewhere (a current-thread runtime) it falls back to `spawn_blocking`.
//! - [`Offload::SpawnBlocking`]: always `spawn_blocking`. Required inside a tokio `LocalSet`,
//!   where `block_in_place` is not allowed; costs two thread wake-ups per call (measured in
//!   docs/PERFORMANCE.md).
//!
//! Either way the work runs inside the caller's tracing span.

use tokio::runtime::{Handle, RuntimeFlavor};

/// How blocking work leaves the async worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Offload {
    /// `block_in_place` on multi-thread runtimes, `spawn_blocking` elsewhere.
    #[default]
    Auto,
    /// Always `spawn_blocking` (use this inside a `LocalSet`).
    SpawnBlocking,
}

/// Runs `work` with [`Offload::Auto`].
pub async fn run_blocking<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    run_blocking_with(Offload::Auto, work).await
}

/// Runs `work` outside async worker duty, inside the caller's tracing span, so log lines from
/// the database layer stay attached to the request or sync run that caused them.
///
/// A panic in `work` is resumed in the caller, as if the work had run inline.
pub async fn run_blocking_with<T, F>(offload: Offload, work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
    let multi_thread = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if offload == Offload::Auto && multi_thread {
        return tokio::task::block_in_place(move || span.in_scope(work));
    }
    match tokio::task::spawn_blocking(move || span.in_scope(work)).await {
        Ok(value) => value,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Blocking tasks cannot be aborted; they are only cancelled when the runtime shuts
        // down, and then nobody is waiting for this result.
        Err(join) => panic!("blocking task cancelled during runtime shutdown: {join}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;
    use tracing::{Instrument, Span};

    /// On a multi-thread runtime the work runs on the calling thread (no wake-up on the
    /// latency path), and tasks still make progress meanwhile: the worker role moved on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn auto_runs_in_place_and_keeps_the_runtime_running() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = tokio::spawn(async move { tx.send(()).expect("send") });
        let caller = thread::current().id();
        // With one worker, the spawned task can only run if this thread gave up the role.
        let (ran_on, got) = run_blocking(move || {
            (thread::current().id(), rx.recv_timeout(std::time::Duration::from_secs(10)))
        })
        .await;
        assert_eq!(ran_on, caller, "block_in_place runs the work where it was called");
        assert!(got.is_ok(), "the other task ran while the work blocked");
        other.await.expect("other task");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn current_thread_runtimes_use_the_blocking_pool() {
        let caller = thread::current().id();
        assert_ne!(run_blocking(|| thread::current().id()).await, caller);
    }

    #[test]
    fn spawn_blocking_works_inside_a_local_set() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
        let local = tokio::task::LocalSet::new();
        let value = local.block_on(&rt, async {
            tokio::task::spawn_local(async { run_blocking_with(Offload::SpawnBlocking, || 7).await })
                .await
                .expect("local task")
        });
        assert_eq!(value, 7);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_callers_span_is_current_inside_either_way() {
        // The work sees the global dispatcher, as in a real application; nothing else in this
        // test binary sets one.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        for offload in [Offload::Auto, Offload::SpawnBlocking] {
            let span = tracing::info_span!("request");
            let expected = span.id();
            let inside = run_blocking_with(offload, || Span::current().id()).instrument(span).await;
            assert!(expected.is_some());
            assert_eq!(inside, expected, "{offload:?}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_panic_in_the_work_reaches_the_caller() {
        for offload in [Offload::Auto, Offload::SpawnBlocking] {
            let caught = tokio::spawn(run_blocking_with(offload, || panic!("boom"))).await;
            assert!(caught.is_err_and(|e| e.is_panic()), "{offload:?}");
        }
    }
}
