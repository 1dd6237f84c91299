//! The coordinators' timer: keyed deadlines on the cluster clock, as Kafka's coordinator timer
//! is keyed (scheduling a key again replaces its deadline; cancelling a key forgets it). The
//! group coordinator keys it by [`TimerKey`]; the transaction coordinator by transactional id.
//!
//! Deadlines are cluster-clock milliseconds (`State::now_ms`), so `Cluster::advance_clock`
//! expires sessions and rebalance timeouts without waiting.

use std::collections::{BTreeSet, HashMap};

/// What a deadline is for. One key per group for the join and sync phases, one per member
/// (pending or joined) for its session.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TimerKey {
    /// The group's join phase: the rebalance timeout or the initial rebalance delay.
    Join(String),
    /// The group's wait for every member's SyncGroup.
    Sync(String),
    /// A member's session (group id, member id).
    Heartbeat(String, String),
    /// A consumer-group member's session (group id, member id).
    ConsumerSession(String, String),
    /// A consumer-group member's time to revoke partitions (group id, member id).
    ConsumerRebalance(String, String),
}

/// What to do when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerTask {
    /// End the join phase with whoever rejoined.
    CompleteJoin,
    /// The initial rebalance delay ended: extend it if members are still arriving, else end
    /// the join phase (Kafka's `group.initial.rebalance.delay.ms`).
    InitialRebalance { delay_ms: i64, remaining_ms: i64 },
    /// Members of this generation that never sent SyncGroup are removed.
    ExpireSync { generation: i32 },
    /// The member's session ended unless it is waiting in a rebalance.
    ExpireHeartbeat,
    /// A consumer-group member's session ended: it is fenced.
    FenceMember,
    /// A consumer-group member still at `epoch` has not revoked its partitions: it is fenced.
    RevocationTimeout { epoch: i32 },
}

/// Deadlines by key, each with the task to run when it passes.
#[derive(Debug)]
pub(crate) struct Timers<K = TimerKey, T = TimerTask> {
    by_key: HashMap<K, (i64, T)>,
    queue: BTreeSet<(i64, K)>,
}

impl<K, T> Default for Timers<K, T> {
    fn default() -> Self {
        Timers { by_key: HashMap::new(), queue: BTreeSet::new() }
    }
}

impl<K: Clone + Ord + std::hash::Hash, T> Timers<K, T> {
    /// Sets `key` to fire `task` at `at`, replacing any earlier deadline of the key.
    pub fn schedule(&mut self, key: K, at: i64, task: T) {
        if let Some((old, _)) = self.by_key.insert(key.clone(), (at, task)) {
            self.queue.remove(&(old, key.clone()));
        }
        self.queue.insert((at, key));
    }

    /// Forgets `key`'s deadline, if any.
    pub fn cancel(&mut self, key: &K) {
        if let Some((at, _)) = self.by_key.remove(key) {
            self.queue.remove(&(at, key.clone()));
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<i64> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`, if any.
    pub fn pop_due(&mut self, now: i64) -> Option<(K, T)> {
        let (at, _) = self.queue.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.queue.pop_first()?;
        let (_, task) = self.by_key.remove(&key)?;
        Some((key, task))
    }

    /// Whether `key` has a deadline (tests).
    #[cfg(test)]
    pub fn deadline(&self, key: &K) -> Option<i64> {
        self.by_key.get(key).map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescheduling_replaces_and_cancel_forgets() {
        let mut t = Timers::default();
        let hb = TimerKey::Heartbeat("g".into(), "m".into());
        t.schedule(hb.clone(), 100, TimerTask::ExpireHeartbeat);
        t.schedule(TimerKey::Join("g".into()), 50, TimerTask::CompleteJoin);
        t.schedule(hb.clone(), 200, TimerTask::ExpireHeartbeat);
        assert_eq!(t.next_deadline(), Some(50));
        assert_eq!(t.pop_due(49), None);
        assert_eq!(t.pop_due(150), Some((TimerKey::Join("g".into()), TimerTask::CompleteJoin)));
        assert_eq!(t.pop_due(150), None, "the heartbeat moved to 200");
        t.cancel(&hb);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.pop_due(i64::MAX), None);
    }
}
