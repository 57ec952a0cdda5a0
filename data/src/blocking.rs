//! Running blocking work (every Diesel call) off the async worker threads.

/// Runs `work` on tokio's blocking thread pool inside the caller's tracing span, so log lines
/// from the database layer stay attached to the request or sync run that caused them.
///
/// A panic in `work` is resumed in the caller, as if the work had run inline.
pub async fn run_blocking<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let span = tracing::Span::current();
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
    use tracing::{Instrument, Span};

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn work_runs_off_the_worker_thread() {
        let caller = std::thread::current().id();
        let worker = run_blocking(|| std::thread::current().id()).await;
        assert_ne!(caller, worker);
    }

    #[tokio::test]
    async fn the_callers_span_is_current_inside() {
        // The blocking thread sees only the global dispatcher, as in a real application.
        // Nothing else in this test binary sets one.
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
        let span = tracing::info_span!("request");
        let expected = span.id();
        let inside = run_blocking(|| Span::current().id()).instrument(span).await;
        assert!(expected.is_some());
        assert_eq!(inside, expected);
    }
}
