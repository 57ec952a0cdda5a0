//! Devices whose clocks are minutes off, through a real server: one five minutes fast, one five
//! minutes slow. Both learn the server's clock from its answers and stamp their writes with it,
//! so the fast one's writes are not refused (and those it made before it knew are stamped
//! again), and the slow one's concurrent writes still win when they are the later ones.

use crate::upstream::{Client, ManualClock, Server};
use std::sync::Arc;
use trackflow_domain::{
    ports::{Clock, Repository},
    Timestamp, UserId,
};
use trackflow_executors::UpstreamOptions;
use trackflow_music::{Project, ProjectPatch};
use trackflow_remote::RemoteOptions;

/// Five minutes, in milliseconds.
const FIVE_MINUTES: i64 = 5 * 60 * 1000;

/// A device clock: the test's clock shifted by a fixed amount.
struct Shifted {
    base: Arc<ManualClock>,
    by_ms: i64,
}

impl Clock for Shifted {
    fn now(&self) -> Timestamp {
        self.base.now().plus_millis(self.by_ms)
    }
}

fn rename(name: &str) -> ProjectPatch {
    ProjectPatch { name: Some(name.into()), ..Default::default() }
}

async fn shown(client: &Client, project: &Project) -> (String, Option<String>) {
    let held = client.projects.get(project.id()).await.expect("get").expect("the project is there");
    (held.name().to_owned(), held.description().map(str::to_owned))
}

/// Asserts that `offset` is within two seconds of `expected` (the test's clock and the server's
/// are the same machine's, so the true offset is the shift).
fn assert_offset(client: &Client, expected: i64) {
    let offset = client.store.server_clock().offset_ms().expect("the server's clock is known");
    assert!((offset - expected).abs() < 2_000, "offset {offset} ms, expected about {expected} ms");
}

/// Offline renames of `project`, `earlier`'s a second before `later`'s by the test's clock. The
/// later device pushes first, so the later push is not simply the winner; afterwards both
/// devices show the later rename.
async fn edits_a_second_apart(
    time: &ManualClock,
    project: &Project,
    earlier: (&Client, &str),
    later: (&Client, &str),
) {
    for (device, name) in [earlier, later] {
        time.set(time.now().plus_millis(1_000));
        device.projects.update(project.id(), rename(name)).await.expect("rename");
    }
    later.0.sync().await;
    earlier.0.sync().await;
    later.0.sync().await;
    for device in [earlier.0, later.0] {
        assert_eq!(shown(device, project).await.0, later.1, "the later rename wins");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_minutes_fast_and_slow_sync_and_the_later_write_wins() {
    trackflow_music::install().expect("the music registry installs");
    let server = Server::start().await;
    let user = UserId::new();
    let token = server.sign_up(user).await;
    let url = server.running.url();
    let time = ManualClock::new();
    let fast: Arc<dyn Clock> = Arc::new(Shifted { base: time.clone(), by_ms: FIVE_MINUTES });
    let slow: Arc<dyn Clock> = Arc::new(Shifted { base: time.clone(), by_ms: -FIVE_MINUTES });
    let a = Client::with_device_clock(user, &url, &token, fast).await;
    let b = Client::with_device_clock(user, &url, &token, slow).await;

    // A writes before it has ever heard the server: its readings are five minutes ahead, which
    // the server refuses. The refusal tells A the server's clock; A stamps the write again.
    let project = a
        .projects
        .create(Project::new(user, "Start", None, time.now()).expect("valid"))
        .await
        .expect("create");
    let report =
        a.manager(&RemoteOptions::default(), UpstreamOptions::default()).process().await.expect("push");
    assert_eq!((report.requests, report.acknowledged, report.failed), (2, 1, 0), "{report:?}");
    a.assert_queue_empty(0).await;
    assert_offset(&a, -FIVE_MINUTES);
    a.sync().await;
    b.sync().await;
    assert_offset(&b, FIVE_MINUTES);
    assert_eq!(shown(&b, &project).await, ("Start".to_owned(), None));

    // A's row took the new readings too: a later write by B of a field A's create set wins on
    // A as it did on the server.
    let describe = ProjectPatch { description: Some(Some("Described on B".into())), ..Default::default() };
    b.projects.update(project.id(), describe).await.expect("describe");
    b.sync().await;
    a.sync().await;
    assert_eq!(shown(&a, &project).await.1.as_deref(), Some("Described on B"));

    // Offline edits of one field, a second apart in real time: the later one wins everywhere,
    // from the slow device and from the fast one.
    edits_a_second_apart(&time, &project, (&a, "Renamed on A"), (&b, "Renamed on B")).await;
    edits_a_second_apart(&time, &project, (&b, "Later on B"), (&a, "Later on A")).await;

    let fresh = Client::new(user, &url, &token).await;
    fresh.sync().await;
    let expected = shown(&fresh, &project).await;
    assert_eq!(expected, ("Later on A".to_owned(), Some("Described on B".to_owned())));
    for device in [&a, &b] {
        assert_eq!(shown(device, &project).await, expected, "every device equals the server");
    }
}
