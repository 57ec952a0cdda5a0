//! Coalescing: unsent operations on one entity become at most one operation before sending.
//!
//! - create, then updates → one create carrying the latest value of every field;
//! - updates → one update with the union of their fields, latest value each;
//! - create … delete → nothing, and so does every queued operation inside that entity (the
//!   children made under an entity the server will never see, see
//!   `trackflow_domain::sync::upstream::cascade`) — unless something that stays refers
//!   to the entity (a playlist listing the track), in which case the run is left as it is;
//! - update … delete → the delete, in its own place in the queue.
//!
//! Audio uploads never merge and end their entity's run: they stay as they are, in their place,
//! and go with a cancelled track only if they were never sent and no other track waits for the
//! same upload.
//!
//! Only operations that were never sent take part: an operation that may have reached the
//! server keeps its id and content, or a retry would be refused as the same id with other
//! content. Pure: the processor applies the plan to the outbox in one local transaction.
//!
//! Plans are made over the queue without content ([`QueuedOperation`]): only the runs that
//! fold into one operation need their operations' fields, which the processor reads for the
//! ids [`to_merge`] names and passes in.

use std::collections::{BTreeMap, HashMap, HashSet};
use trackflow_domain::sync::upstream::{cascade, referenced_by_survivors};
pub use trackflow_domain::sync::CoalescePlan;
use trackflow_domain::{EntityRef, OperationId, OperationKind, QueuedOperation, SyncOperation};

/// Runs of consecutive unsent operations per entity, longer than one, in queue order. A sent
/// (or failed) operation ends the entity's run: what comes after it stays after it.
fn runs(queue: &[QueuedOperation]) -> Vec<Vec<&QueuedOperation>> {
    let mut runs: Vec<Vec<&QueuedOperation>> = Vec::new();
    let mut open: HashMap<EntityRef, usize> = HashMap::new();
    for op in queue {
        // An upload ends its entity's run like a sent operation: what comes after it (the
        // update that names the audio) must not fold into what came before (a create that
        // would then wait on an upload queued behind it).
        if op.is_unsent() && op.kind != OperationKind::Upload {
            match open.get(&op.entity) {
                Some(&run) => runs[run].push(op),
                None => {
                    open.insert(op.entity, runs.len());
                    runs.push(vec![op]);
                }
            }
        } else {
            open.remove(&op.entity);
        }
    }
    runs.retain(|run| run.len() > 1);
    runs
}

/// Whether a run folds into one operation (rather than ending in a delete).
fn folds(run: &[&QueuedOperation]) -> bool {
    run.last().is_some_and(|op| op.kind != OperationKind::Delete)
}

/// The operations whose content [`coalesce`] needs: those of the runs that fold into one.
pub fn to_merge(queue: &[QueuedOperation]) -> Vec<OperationId> {
    runs(queue).into_iter().filter(|run| folds(run)).flatten().map(|op| op.id).collect()
}

/// Plans the coalescing of `queue` (all of the outbox, in queue order). `content` holds the
/// operations [`to_merge`] named; a run whose content is missing (it left the outbox since the
/// queue was read) is left as it is.
pub fn coalesce(queue: &[QueuedOperation], content: &[SyncOperation]) -> CoalescePlan {
    let content: HashMap<OperationId, &SyncOperation> = content.iter().map(|op| (op.id, op)).collect();
    let mut plan = CoalescePlan::default();
    let mut cancelled: HashSet<OperationId> = HashSet::new();
    for run in runs(queue) {
        let (first, last) = (run[0], run[run.len() - 1]);
        match (first.kind, last.kind) {
            (OperationKind::Create, OperationKind::Delete) => {
                let gone = shared_uploads_kept(queue, cascade(queue, &run.iter().map(|op| op.id).collect()));
                // Something that stays refers to the entity (a playlist listing the track):
                // the server must see the create before it and the delete after, so the run
                // goes as it is.
                if !referenced_by_survivors(queue, &gone) {
                    cancelled.extend(gone);
                }
            }
            (_, OperationKind::Delete) => {
                // The delete keeps its own place: moving it earlier could put it before an
                // operation on another entity that still refers to this one.
                plan.remove.extend(run[..run.len() - 1].iter().map(|op| op.id));
            }
            _ => {
                let Some(whole) =
                    run.iter().map(|op| content.get(&op.id).copied()).collect::<Option<Vec<_>>>()
                else {
                    continue;
                };
                plan.rewrite.push(merged(&whole));
                plan.remove.extend(run[1..].iter().map(|op| op.id));
            }
        }
    }
    plan.rewrite.retain(|op| !cancelled.contains(&op.id));
    plan.remove.retain(|id| !cancelled.contains(id));
    plan.remove.extend(queue.iter().filter(|op| cancelled.contains(&op.id)).map(|op| op.id));
    plan
}

/// `gone` without the uploads that operations outside it still depend on (another track
/// with the same audio), or that were sent (the outbox refuses to drop a sent operation, and the
/// whole plan with it; a sent upload finishes harmlessly).
fn shared_uploads_kept(queue: &[QueuedOperation], mut gone: Vec<OperationId>) -> Vec<OperationId> {
    let leaving: HashSet<OperationId> = gone.iter().copied().collect();
    let needed: HashSet<OperationId> = queue
        .iter()
        .filter(|op| !leaving.contains(&op.id))
        .flat_map(|op| op.depends_on.iter().copied())
        .collect();
    let kept: HashSet<OperationId> = queue
        .iter()
        .filter(|op| op.kind == OperationKind::Upload && (needed.contains(&op.id) || !op.is_unsent()))
        .map(|op| op.id)
        .collect();
    gone.retain(|id| !kept.contains(id));
    gone
}

/// A create or update run folded into one operation: the first operation's identity, kind,
/// base version, dependencies and creation time; every field's latest value; the last clock
/// reading.
fn merged(run: &[&SyncOperation]) -> SyncOperation {
    let first = run[0];
    let mut fields = BTreeMap::new();
    let mut depends_on: Vec<OperationId> = Vec::new();
    for op in run {
        fields.extend(op.changed_fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        for dependency in &op.depends_on {
            if !depends_on.contains(dependency) {
                depends_on.push(*dependency);
            }
        }
    }
    let last = run[run.len() - 1];
    SyncOperation {
        changed_fields: fields,
        hlc: last.hlc,
        depends_on,
        // A create stays a create whatever its updates; the most urgent priority of the run wins.
        priority: run.iter().map(|op| op.priority).min().unwrap_or(first.priority),
        ..first.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use trackflow_domain::SyncEntity;
    use trackflow_domain::{EntityType, Hlc, NodeId, Timestamp};
    use trackflow_music::{AudioComment, AudioTrack, Playlist, Project};
    use uuid::Uuid;

    /// Coalesces a whole queue the way the processor does: planned without content, given
    /// the content of what [`to_merge`] names.
    fn coalesce(queue: &[SyncOperation]) -> CoalescePlan {
        let heads: Vec<QueuedOperation> = queue.iter().map(QueuedOperation::from).collect();
        let wanted: HashSet<OperationId> = to_merge(&heads).into_iter().collect();
        let content: Vec<SyncOperation> =
            queue.iter().filter(|op| wanted.contains(&op.id)).cloned().collect();
        super::coalesce(&heads, &content)
    }

    struct Queue {
        ops: Vec<SyncOperation>,
        wall: u64,
    }

    impl Queue {
        fn new() -> Self {
            Self { ops: Vec::new(), wall: 0 }
        }

        fn push(&mut self, entity: EntityRef, kind: OperationKind, fields: &[(&str, Value)]) -> OperationId {
            self.wall += 1;
            let hlc = Hlc { wall_ms: self.wall, counter: 0, node: NodeId::from_uuid(Uuid::nil()) };
            let fields = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            let op = SyncOperation::new(entity, kind, fields, hlc, 0, vec![], Timestamp(0));
            let id = op.id;
            self.ops.push(op);
            id
        }

        fn last(&mut self) -> &mut SyncOperation {
            self.ops.last_mut().expect("an operation")
        }
    }

    fn entity(t: EntityType, n: u128) -> EntityRef {
        EntityRef::new(t, Uuid::from_u128(n))
    }

    #[test]
    fn an_upload_ends_its_entitys_run_and_goes_with_a_cancelled_track_only_if_unsent_and_unshared() {
        let hash = json!("ab".repeat(32));
        // A track created, then given audio: the update depends on the upload queued between.
        let mut q = Queue::new();
        let t = entity(AudioTrack::ENTITY_TYPE, 1);
        q.push(t, OperationKind::Create, &[("name", json!("Take"))]);
        let upload = q.push(t, OperationKind::Upload, &[("audio_sha256", hash.clone())]);
        q.push(t, OperationKind::Update, &[("audio_sha256", hash.clone())]);
        q.last().depends_on.push(upload);
        assert!(coalesce(&q.ops).is_empty(), "nothing folds across the upload");

        // Created with audio, then deleted before anything was sent: all of it goes.
        let mut q = Queue::new();
        let upload = q.push(t, OperationKind::Upload, &[("audio_sha256", hash.clone())]);
        q.push(t, OperationKind::Create, &[("name", json!("Take"))]);
        q.last().depends_on.push(upload);
        q.push(t, OperationKind::Delete, &[]);
        let all: Vec<OperationId> = q.ops.iter().map(|op| op.id).collect();
        assert_eq!(coalesce(&q.ops).remove, all);

        // Another track waits for the same upload: it stays.
        let other = entity(AudioTrack::ENTITY_TYPE, 2);
        q.push(other, OperationKind::Create, &[("name", json!("Take 2"))]);
        q.last().depends_on.push(upload);
        assert_eq!(coalesce(&q.ops).remove, all[1..].to_vec(), "the shared upload stays");

        // The upload already went out once: it stays, or the outbox would refuse the plan.
        q.ops.pop();
        q.ops[0].sent = true;
        assert_eq!(coalesce(&q.ops).remove, all[1..].to_vec(), "a sent upload stays");
    }

    #[test]
    fn create_then_updates_become_one_create_with_the_latest_values() {
        let mut q = Queue::new();
        let p = entity(Project::ENTITY_TYPE, 1);
        let create = q.push(p, OperationKind::Create, &[("name", json!("A")), ("description", json!(null))]);
        let u1 = q.push(p, OperationKind::Update, &[("name", json!("B"))]);
        let u2 = q.push(p, OperationKind::Update, &[("description", json!("D"))]);
        let plan = coalesce(&q.ops);
        assert_eq!(plan.remove, vec![u1, u2]);
        let op = &plan.rewrite[0];
        assert_eq!((op.id, op.kind), (create, OperationKind::Create));
        assert_eq!(op.changed_fields["name"].value, json!("B"));
        assert_eq!(op.changed_fields["description"].value, json!("D"));
        assert_eq!(op.hlc, q.ops[2].hlc);
    }

    /// One row per case: the queue (kinds on one entity) and what remains of it.
    #[test]
    fn runs_on_one_entity() {
        use OperationKind::{Create as C, Delete as D, Update as U};
        // (case, kinds, expected: removed indexes, rewritten kind or none)
        type Case = (&'static str, Vec<OperationKind>, Vec<usize>, Option<OperationKind>);
        let cases: Vec<Case> = vec![
            ("single create untouched", vec![C], vec![], None),
            ("updates merge", vec![U, U, U], vec![1, 2], Some(U)),
            ("create then delete cancel out", vec![C, U, D], vec![0, 1, 2], None),
            ("update then delete is the delete", vec![U, U, D], vec![0, 1], None),
        ];
        for (case, kinds, removed, rewritten) in cases {
            let mut q = Queue::new();
            let e = entity(AudioTrack::ENTITY_TYPE, 9);
            for kind in &kinds {
                q.push(e, *kind, &[("name", json!("x"))]);
            }
            let plan = coalesce(&q.ops);
            let expected: Vec<OperationId> = removed.iter().map(|&i| q.ops[i].id).collect();
            assert_eq!(plan.remove, expected, "{case}");
            assert_eq!(
                plan.rewrite.first().map(|op| (op.id, op.kind)),
                rewritten.map(|k| (q.ops[0].id, k)),
                "{case}"
            );
        }
    }

    #[test]
    fn a_sent_operation_is_never_merged_and_splits_the_run() {
        let mut q = Queue::new();
        let p = entity(Project::ENTITY_TYPE, 1);
        q.push(p, OperationKind::Update, &[("name", json!("A"))]);
        q.last().sent = true; // the server may hold it
        let u2 = q.push(p, OperationKind::Update, &[("name", json!("B"))]);
        let u3 = q.push(p, OperationKind::Update, &[("name", json!("C"))]);
        let plan = coalesce(&q.ops);
        assert_eq!(plan.remove, vec![u3]);
        assert_eq!(plan.rewrite[0].id, u2);
        assert_eq!(plan.rewrite[0].changed_fields["name"].value, json!("C"));
    }

    #[test]
    fn cancelling_a_create_cancels_what_depends_on_it() {
        let mut q = Queue::new();
        let project = entity(Project::ENTITY_TYPE, 1);
        let track = entity(AudioTrack::ENTITY_TYPE, 2);
        let comment = entity(AudioComment::ENTITY_TYPE, 3);
        let other = entity(Project::ENTITY_TYPE, 4);
        let create = q.push(project, OperationKind::Create, &[("name", json!("P"))]);
        let track_create = q.push(track, OperationKind::Create, &[("name", json!("T"))]);
        q.last().depends_on = vec![create];
        let comment_create = q.push(comment, OperationKind::Create, &[("content", json!("c"))]);
        q.last().depends_on = vec![track_create];
        let unrelated = q.push(other, OperationKind::Create, &[("name", json!("O"))]);
        let delete = q.push(project, OperationKind::Delete, &[]);
        let plan = coalesce(&q.ops);
        let mut removed = plan.remove.clone();
        removed.sort();
        let mut expected = vec![create, track_create, comment_create, delete];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!plan.remove.contains(&unrelated) && plan.rewrite.is_empty());
    }

    #[test]
    fn a_create_and_delete_referenced_by_something_that_stays_are_left_alone() {
        let mut q = Queue::new();
        let track = entity(AudioTrack::ENTITY_TYPE, 1);
        let playlist = entity(Playlist::ENTITY_TYPE, 2);
        let create = q.push(track, OperationKind::Create, &[("name", json!("T"))]);
        q.push(playlist, OperationKind::Create, &[("track_ids", json!([track.id]))]);
        q.last().depends_on = vec![create];
        q.push(track, OperationKind::Delete, &[]);
        assert!(coalesce(&q.ops).is_empty(), "the playlist must reach the server after the track's create");
    }

    #[test]
    fn a_delete_is_not_moved_ahead_of_a_reference_to_its_entity() {
        let mut q = Queue::new();
        let track = entity(AudioTrack::ENTITY_TYPE, 1);
        let playlist = entity(Playlist::ENTITY_TYPE, 2);
        let rename = q.push(track, OperationKind::Update, &[("name", json!("T2"))]);
        q.push(playlist, OperationKind::Update, &[("track_ids", json!([track.id]))]);
        q.push(track, OperationKind::Delete, &[]);
        let plan = coalesce(&q.ops);
        assert_eq!((plan.remove, plan.rewrite), (vec![rename], vec![]), "only the rename goes");
    }

    #[test]
    fn merged_priority_is_the_most_urgent() {
        let mut q = Queue::new();
        let p = entity(Playlist::ENTITY_TYPE, 1);
        q.push(p, OperationKind::Update, &[("name", json!("A"))]);
        q.push(p, OperationKind::Update, &[("name", json!("B"))]);
        q.last().priority = trackflow_domain::Priority::Critical;
        let plan = coalesce(&q.ops);
        assert_eq!(plan.rewrite[0].priority, trackflow_domain::Priority::Critical);
    }

    #[test]
    fn a_run_whose_content_is_gone_is_left_as_it_is() {
        let mut q = Queue::new();
        let p = entity(Project::ENTITY_TYPE, 1);
        q.push(p, OperationKind::Update, &[("name", json!("A"))]);
        q.push(p, OperationKind::Update, &[("name", json!("B"))]);
        let heads: Vec<QueuedOperation> = q.ops.iter().map(QueuedOperation::from).collect();
        assert_eq!(to_merge(&heads), vec![q.ops[0].id, q.ops[1].id]);
        // Read after the queue, the second update had left the outbox (discarded, say).
        assert!(super::coalesce(&heads, &q.ops[..1]).is_empty());
    }
}
