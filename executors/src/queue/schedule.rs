//! Which queued operations go out in the next batch.
//!
//! Most urgent priority first (Critical, High, Medium, Low), first-in first-out within a
//! priority, but never against causality:
//! - one entity's operations go in queue order: an operation waits until every earlier
//!   operation on its entity is acknowledged or goes earlier in the same batch;
//! - an operation waits until every operation it depends on (its parent's create) is
//!   acknowledged, i.e. gone from the queue.
//!
//! Failed operations and operations in backoff are not sent, and hold back only what depends on
//! them. Pure: the processor passes in the queue and the time.

use std::collections::{HashMap, HashSet};
use trackflow_domain::{EntityRef, OperationId, OperationStatus, SyncOperation, Timestamp};

/// The next batch: at most `max` operations of `queue` (in queue order) that may be sent at
/// `now`, returned in queue order (so an entity's operations, and parents before children,
/// reach the server in the order they were made).
pub fn next_batch(queue: &[SyncOperation], now: Timestamp, max: usize) -> Vec<SyncOperation> {
    let queued: HashSet<OperationId> = queue.iter().map(|op| op.id).collect();
    // The previous operation on the same entity, for each operation.
    let mut last_on: HashMap<EntityRef, usize> = HashMap::new();
    let previous: Vec<Option<usize>> =
        queue.iter().enumerate().map(|(i, op)| last_on.insert(op.entity, i)).collect();
    let ready = |op: &SyncOperation| {
        op.status == OperationStatus::Pending && op.next_attempt_at.is_none_or(|at| at <= now)
    };
    // Candidates in the order they are wanted: by priority, then queue position.
    let mut wanted: Vec<usize> = (0..queue.len()).filter(|&i| ready(&queue[i])).collect();
    wanted.sort_by_key(|&i| (queue[i].priority, i));

    let mut chosen: HashSet<usize> = HashSet::new();
    let parents_done = |op: &SyncOperation| op.depends_on.iter().all(|d| !queued.contains(d));
    for &i in &wanted {
        if chosen.len() >= max {
            break;
        }
        if chosen.contains(&i) {
            continue;
        }
        // The operation goes with the earlier operations on its entity that are not chosen yet,
        // oldest first, if every one of them may go now and they all fit: a critical delete
        // takes along the low-priority update queued before it.
        let mut group = vec![i];
        let mut earlier = previous[i];
        while let Some(j) = earlier.filter(|j| !chosen.contains(j)) {
            group.push(j);
            earlier = previous[j];
        }
        let sendable = group.iter().all(|&j| ready(&queue[j]) && parents_done(&queue[j]));
        if sendable && chosen.len() + group.len() <= max {
            chosen.extend(group);
        }
    }
    let mut batch: Vec<usize> = chosen.into_iter().collect();
    batch.sort_unstable();
    batch.into_iter().map(|i| queue[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::SyncEntity;
    use trackflow_domain::{Hlc, NodeId, OperationKind, Priority};
    use trackflow_music::AudioTrack;
    use uuid::Uuid;

    fn op(entity: u128, kind: OperationKind, priority: Priority) -> SyncOperation {
        let hlc = Hlc { wall_ms: 1, counter: 0, node: NodeId::from_uuid(Uuid::nil()) };
        let mut op = SyncOperation::new(
            EntityRef::new(AudioTrack::ENTITY_TYPE, Uuid::from_u128(entity)),
            kind,
            Default::default(),
            hlc,
            0,
            vec![],
            Timestamp(0),
        );
        op.priority = priority;
        op
    }

    fn ids(batch: &[SyncOperation]) -> Vec<OperationId> {
        batch.iter().map(|op| op.id).collect()
    }

    #[test]
    fn urgent_first_but_sent_in_queue_order() {
        use Priority::*;
        let q = vec![
            op(1, OperationKind::Update, Low),
            op(2, OperationKind::Update, Critical),
            op(3, OperationKind::Update, Medium),
            op(4, OperationKind::Update, High),
        ];
        // Room for two: the two most urgent, in queue order.
        assert_eq!(ids(&next_batch(&q, Timestamp(0), 2)), vec![q[1].id, q[3].id]);
        assert_eq!(ids(&next_batch(&q, Timestamp(0), 10)), ids(&q));
    }

    #[test]
    fn an_entitys_operations_keep_their_order_whatever_their_priority() {
        use Priority::*;
        // A critical delete queued behind a low update of the same entity.
        let q = vec![
            op(1, OperationKind::Update, Low),
            op(2, OperationKind::Update, High),
            op(1, OperationKind::Delete, Critical),
        ];
        // With room for one, the delete cannot go before its entity's update: the high one goes.
        assert_eq!(ids(&next_batch(&q, Timestamp(0), 1)), vec![q[1].id]);
        // With room for two, the delete brings its entity's update along, in order.
        assert_eq!(ids(&next_batch(&q, Timestamp(0), 2)), vec![q[0].id, q[2].id]);
    }

    #[test]
    fn children_wait_for_their_parents_acknowledgement() {
        use Priority::*;
        let parent = op(1, OperationKind::Create, High);
        let mut child = op(2, OperationKind::Create, Medium);
        child.depends_on = vec![parent.id];
        let q = vec![parent.clone(), child.clone()];
        assert_eq!(ids(&next_batch(&q, Timestamp(0), 10)), vec![parent.id]);
        // Once the parent is acknowledged (gone from the queue), the child goes.
        assert_eq!(ids(&next_batch(&q[1..], Timestamp(0), 10)), vec![child.id]);
    }

    #[test]
    fn failed_and_backed_off_operations_hold_back_only_what_depends_on_them() {
        use Priority::*;
        let mut failed = op(1, OperationKind::Create, High);
        failed.status = OperationStatus::Failed;
        let mut waiting = op(2, OperationKind::Update, High);
        waiting.next_attempt_at = Some(Timestamp(100));
        let same_entity_as_failed = op(1, OperationKind::Update, High);
        let mut child_of_failed = op(3, OperationKind::Create, Medium);
        child_of_failed.depends_on = vec![failed.id];
        let unrelated = op(4, OperationKind::Update, Low);
        let q = vec![failed, waiting.clone(), same_entity_as_failed, child_of_failed, unrelated.clone()];
        assert_eq!(ids(&next_batch(&q, Timestamp(50), 10)), vec![unrelated.id]);
        // After the backoff expires the waiting one goes too.
        assert_eq!(ids(&next_batch(&q, Timestamp(100), 10)), vec![waiting.id, unrelated.id]);
    }
}
