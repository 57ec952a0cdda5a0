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
//! them.
//!
//! A [`Schedule`] is made once per reading of the queue and then hands out batch after batch,
//! so the cost of choosing a batch does not grow with the queue: the operations wanted, sorted
//! once by priority and position, are taken a window at a time (a few batches' worth), and a
//! batch is chosen from the current window only. A window whose operations cannot go (all held
//! behind a failed create, say) gives way to the next, so nothing queued behind them waits; what
//! it left is looked at again when the queue is next read. The operations an operation waits for
//! are looked up in the whole queue, whichever window they fall in. Pure: the processor passes in
//! the queue, the time and what became of each batch.

use std::collections::{HashMap, HashSet};
use trackflow_domain::{
    sync::Settlement, EntityRef, OperationId, OperationStatus, QueuedOperation, Timestamp,
};

/// How many batches' worth of operations one window holds.
const WINDOW_BATCHES: usize = 4;

/// The queue as one pass of the processor sees it, and what became of it so far.
#[derive(Debug)]
pub struct Schedule {
    /// Every queued operation, in queue order, as read (then as settled).
    ops: Vec<QueuedOperation>,
    /// Whether each operation left the queue during the pass (acknowledged).
    gone: Vec<bool>,
    /// Positions of the operations still queued.
    queued: HashMap<OperationId, usize>,
    /// The previous operation on the same entity, for each operation.
    previous: Vec<Option<usize>>,
    /// The operations pending when the queue was read, by priority, then position.
    wanted: Vec<usize>,
    /// How much of `wanted` has been taken into windows.
    taken: usize,
    /// The current window: positions, in the order they are wanted.
    window: Vec<usize>,
    /// Retries marked in flight until their settlement is stored (see [`released`](Self::released)).
    in_flight: Vec<usize>,
}

impl Schedule {
    /// The schedule of `queue` (all of the outbox, in queue order).
    pub fn new(queue: Vec<QueuedOperation>) -> Self {
        let queued = queue.iter().enumerate().map(|(i, op)| (op.id, i)).collect();
        let mut last_on: HashMap<EntityRef, usize> = HashMap::new();
        let previous = queue.iter().enumerate().map(|(i, op)| last_on.insert(op.entity, i)).collect();
        let mut wanted: Vec<usize> =
            (0..queue.len()).filter(|&i| queue[i].status == OperationStatus::Pending).collect();
        wanted.sort_by_key(|&i| (queue[i].priority, i));
        Self {
            gone: vec![false; queue.len()],
            ops: queue,
            queued,
            previous,
            wanted,
            taken: 0,
            window: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// How many operations the queue held when read.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the queue was empty when read.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The next batch: the ids of at most `max` operations that may be sent at `now`, in queue
    /// order (so an entity's operations, and parents before children, reach the server in the
    /// order they were made). Empty when no window has anything to send.
    pub fn next_batch(&mut self, now: Timestamp, max: usize) -> Vec<OperationId> {
        loop {
            if self.window.is_empty() && !self.fill(max.saturating_mul(WINDOW_BATCHES).max(1)) {
                return Vec::new();
            }
            let batch = self.choose(now, max);
            if !batch.is_empty() {
                return batch.into_iter().map(|i| self.ops[i].id).collect();
            }
            self.window.clear();
        }
    }

    /// Takes the next `size` wanted operations still pending into the window. Returns whether
    /// it holds any.
    fn fill(&mut self, size: usize) -> bool {
        while self.window.len() < size && self.taken < self.wanted.len() {
            let i = self.wanted[self.taken];
            self.taken += 1;
            if !self.gone[i] && self.ops[i].status == OperationStatus::Pending {
                self.window.push(i);
            }
        }
        !self.window.is_empty()
    }

    /// A batch from the window, most wanted first, as positions in queue order.
    fn choose(&mut self, now: Timestamp, max: usize) -> Vec<usize> {
        self.window.retain(|&i| !self.gone[i]);
        let mut chosen: HashSet<usize> = HashSet::new();
        for &i in &self.window {
            if chosen.len() >= max {
                break;
            }
            if chosen.contains(&i) {
                continue;
            }
            // The operation goes with the earlier operations on its entity that are still queued
            // and not chosen yet, oldest first, if every one of them may go now and they all
            // fit: a critical delete takes along the low-priority update queued before it.
            let mut group = vec![i];
            let mut earlier = self.previous[i];
            while let Some(j) = earlier.filter(|j| !chosen.contains(j)) {
                if !self.gone[j] {
                    group.push(j);
                }
                earlier = self.previous[j];
            }
            let sendable = group.iter().all(|&j| self.ready(j, now) && self.parents_done(j));
            if sendable && chosen.len() + group.len() <= max {
                chosen.extend(group);
            }
        }
        let mut batch: Vec<usize> = chosen.into_iter().collect();
        batch.sort_unstable();
        batch
    }

    fn ready(&self, i: usize, now: Timestamp) -> bool {
        let op = &self.ops[i];
        !self.gone[i]
            && op.status == OperationStatus::Pending
            && op.next_attempt_at.is_none_or(|at| at <= now)
    }

    /// Whether every operation `i` depends on has left the queue (the server holds it).
    fn parents_done(&self, i: usize) -> bool {
        self.ops[i].depends_on.iter().all(|d| !self.queued.contains_key(d))
    }

    /// Records what became of sent operations: acknowledged ones leave the queue, failed ones
    /// are failed, and retries are [`InFlight`](OperationStatus::InFlight) until
    /// [`released`](Self::released), so nothing is chosen again before its retry is stored.
    pub fn settled(&mut self, settlements: &[(OperationId, Settlement)]) {
        for (id, settlement) in settlements {
            let Some(&i) = self.queued.get(id) else { continue };
            let op = &mut self.ops[i];
            match settlement {
                Settlement::Applied { .. } | Settlement::Conflict { .. } => {
                    self.gone[i] = true;
                    self.queued.remove(id);
                }
                Settlement::Failed { .. } => op.status = OperationStatus::Failed,
                Settlement::Retry { attempts, not_before, .. } => {
                    op.status = OperationStatus::InFlight;
                    op.attempts = *attempts;
                    op.next_attempt_at = *not_before;
                    self.in_flight.push(i);
                }
            }
        }
    }

    /// Forgets operations that left the outbox by another hand (discarded by the user).
    pub fn left<'a>(&mut self, ids: impl IntoIterator<Item = &'a OperationId>) {
        for id in ids {
            if let Some(i) = self.queued.remove(id) {
                self.gone[i] = true;
            }
        }
    }

    /// Marks pending again the retries whose settlement is now stored.
    pub fn released(&mut self) {
        for i in self.in_flight.drain(..) {
            if self.ops[i].status == OperationStatus::InFlight {
                self.ops[i].status = OperationStatus::Pending;
            }
        }
    }

    /// The earliest instant after `now` at which a pending operation's backoff ends.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        (0..self.ops.len())
            .filter(|&i| !self.gone[i] && self.ops[i].status == OperationStatus::Pending)
            .filter_map(|i| self.ops[i].next_attempt_at)
            .filter(|at| *at > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_domain::sync::Settlement;
    use trackflow_domain::{Hlc, NodeId, OperationKind, Priority, SyncEntity, SyncOperation};
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

    /// The first batch of a queue of whole operations.
    fn next_batch(queue: &[SyncOperation], now: Timestamp, max: usize) -> Vec<SyncOperation> {
        let batch = Schedule::new(heads(queue)).next_batch(now, max);
        queue.iter().filter(|op| batch.contains(&op.id)).cloned().collect()
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

    /// Drains `schedule` as a server acknowledging everything would: the batches, in order.
    fn drained(schedule: &mut Schedule, max: usize) -> Vec<Vec<OperationId>> {
        let mut batches = Vec::new();
        loop {
            let batch = schedule.next_batch(Timestamp(0), max);
            if batch.is_empty() {
                return batches;
            }
            let acknowledged: Vec<(OperationId, Settlement)> =
                batch.iter().map(|id| (*id, Settlement::Applied { version: 1 })).collect();
            schedule.settled(&acknowledged);
            batches.push(batch);
        }
    }

    fn heads(queue: &[SyncOperation]) -> Vec<QueuedOperation> {
        queue.iter().map(QueuedOperation::from).collect()
    }

    #[test]
    fn a_critical_operation_behind_ten_thousand_low_ones_goes_first() {
        use Priority::*;
        let mut q: Vec<SyncOperation> = (0..10_000).map(|i| op(i, OperationKind::Update, Low)).collect();
        q.push(op(20_000, OperationKind::Update, Critical));
        let urgent = q[10_000].id;
        let mut schedule = Schedule::new(heads(&q));
        let batches = drained(&mut schedule, 500);
        assert!(batches[0].contains(&urgent), "the critical one is in the first batch");
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 10_001, "and everything goes in one pass");
    }

    #[test]
    fn a_window_held_back_whole_does_not_hold_back_what_is_queued_behind_it() {
        use Priority::*;
        // A refused project create with 3,000 tracks queued inside it, then an unrelated write.
        let mut failed = op(1, OperationKind::Create, High);
        failed.status = OperationStatus::Failed;
        let mut q = vec![failed.clone()];
        for i in 0..3_000 {
            let mut track = op(10 + i, OperationKind::Create, Medium);
            track.depends_on = vec![failed.id];
            q.push(track);
        }
        let unrelated = op(9_999, OperationKind::Update, Low);
        q.push(unrelated.clone());
        let mut schedule = Schedule::new(heads(&q));
        assert_eq!(drained(&mut schedule, 500), vec![vec![unrelated.id]]);
    }

    #[test]
    fn what_an_operation_waits_for_counts_wherever_its_window_is() {
        use Priority::*;
        // A low parent create first, a critical child of it, and enough medium writes that the
        // child's window (the first) comes long before the parent's (the third).
        let parent = op(1, OperationKind::Create, Low);
        let mut child = op(2, OperationKind::Create, Critical);
        child.depends_on = vec![parent.id];
        let mut q = vec![parent.clone(), child.clone()];
        q.extend((0..4_500).map(|i| op(10 + i, OperationKind::Update, Medium)));
        let mut schedule = Schedule::new(heads(&q));
        let sent: Vec<OperationId> = drained(&mut schedule, 500).into_iter().flatten().collect();
        assert!(sent.contains(&parent.id) && !sent.contains(&child.id), "the child waited for its parent");
        // The queue read again (the parent acknowledged and gone): the child goes.
        let rest: Vec<SyncOperation> = q.into_iter().filter(|o| !sent.contains(&o.id)).collect();
        assert_eq!(drained(&mut Schedule::new(heads(&rest)), 500), vec![vec![child.id]]);
    }

    #[test]
    fn an_operation_takes_along_the_earlier_ones_on_its_entity_from_outside_its_window() {
        use Priority::*;
        let update = op(1, OperationKind::Update, Low);
        let mut q = vec![update.clone()];
        q.extend((0..3_000).map(|i| op(10 + i, OperationKind::Update, Critical)));
        let delete = op(1, OperationKind::Delete, Critical);
        q.push(delete.clone());
        let mut schedule = Schedule::new(heads(&q));
        let batches = drained(&mut schedule, 500);
        let with_delete = batches.iter().find(|b| b.contains(&delete.id)).expect("the delete went");
        assert_eq!(
            with_delete.first(),
            Some(&update.id),
            "its entity's update went first, in the same batch"
        );
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), q.len());
    }
}
