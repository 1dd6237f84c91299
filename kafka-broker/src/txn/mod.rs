//! The transaction coordinator (Kafka's `TransactionCoordinator` and `TransactionStateManager`),
//! on the state task like everything else.
//!
//! - `metadata.rs`: one transactional id's metadata and the state machine.
//! - `coordinator.rs`: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, the
//!   markers, the check a partition leader makes before a transactional produce (KIP-890's
//!   verification), timeouts and transactional id expiration.
//!
//! Placement: a transactional id belongs to partition `abs(hashCode(id)) %
//! transaction.state.log.num.partitions` of a virtual `__transaction_state`, led like the
//! group coordinator's partitions (`State::coordinator_for`). Requests about a transactional id
//! sent to another broker get NOT_COORDINATOR.
//!
//! Markers are written synchronously: EndTxn writes a COMMIT or ABORT control batch to every
//! partition of the transaction before it answers (Kafka answers after PrepareCommit is logged
//! and sends the markers afterwards). A partition that has no leader cannot take its marker:
//! the transaction then stays in PrepareCommit/PrepareAbort (requests get
//! CONCURRENT_TRANSACTIONS, as in Kafka while markers are in flight) until a leader appears
//! (`State::retry_pending_markers`, run when brokers start, leaders move and on housekeeping).

pub(crate) mod coordinator;
pub(crate) mod metadata;

use std::collections::{BTreeMap, BTreeSet};

pub(crate) use metadata::{TransactionMetadata, TxnPartition, TxnState};

use crate::groups::timer::Timers;

/// The group coordinator's offsets topic, as it appears among a transaction's partitions.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The coordinator epoch written into markers. The transaction state partitions here never
/// change leader epochs (their state is never reloaded), so it stays 0.
pub(crate) const COORDINATOR_EPOCH: i32 = 0;

/// The transaction coordinator's broker settings (Kafka's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnConfig {
    /// `transaction.max.timeout.ms` (900000): larger `transaction.timeout.ms` values are
    /// INVALID_TRANSACTION_TIMEOUT.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (7 days): idle transactional ids are forgotten.
    pub id_expiration_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (1 hour).
    pub expiration_check_interval_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            id_expiration_ms: 7 * 24 * 60 * 60 * 1000,
            expiration_check_interval_ms: 60 * 60 * 1000,
        }
    }
}

impl TxnConfig {
    /// Takes a broker setting if it is one of the coordinator's (values that do not parse or
    /// are out of range are ignored, like other settings the broker cannot use).
    pub fn apply(&mut self, key: &str, value: &str) {
        let v = value.trim();
        match key {
            "transaction.max.timeout.ms" => {
                if let Some(n) = v.parse().ok().filter(|n: &i32| *n >= 1) {
                    self.max_timeout_ms = n;
                }
            }
            "transactional.id.expiration.ms" => {
                if let Some(n) = v.parse().ok().filter(|n: &i64| *n >= 1) {
                    self.id_expiration_ms = n;
                }
            }
            "transaction.remove.expired.transaction.cleanup.interval.ms" => {
                if let Some(n) = v.parse().ok().filter(|n: &i64| *n >= 1) {
                    self.expiration_check_interval_ms = n;
                }
            }
            _ => {}
        }
    }
}

/// What a transaction timeout checks before it aborts: that the transaction it was set for is
/// still the open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeoutTask {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub start_ms: i64,
}

/// The transaction coordinator's state.
#[derive(Debug, Default)]
pub(crate) struct TxnCoordinator {
    pub config: TxnConfig,
    /// Every transactional id, wherever it is coordinated.
    pub txns: BTreeMap<String, TransactionMetadata>,
    /// One deadline per open transaction: its start plus its timeout.
    pub timers: Timers<String, TimeoutTask>,
    /// When transactional ids were last checked for expiration.
    last_expiration_ms: Option<i64>,
    /// Transactional ids whose markers could not all be written (a partition without a leader).
    pub pending_markers: BTreeSet<String>,
}

impl TxnCoordinator {
    /// A coordinator with these settings.
    pub fn new(config: TxnConfig) -> Self {
        TxnCoordinator { config, ..Default::default() }
    }

    /// Whether `timeout_ms` is a valid `transaction.timeout.ms` (Kafka's
    /// `validateTransactionTimeoutMs`).
    pub fn valid_timeout(&self, timeout_ms: i32) -> bool {
        timeout_ms > 0 && timeout_ms <= self.config.max_timeout_ms
    }

    /// The earliest timeout deadline (cluster clock).
    pub fn next_deadline(&self) -> Option<i64> {
        self.timers.next_deadline()
    }

    /// Whether the periodic expiration of transactional ids is due (or `force`d).
    pub fn expiration_due(&mut self, now: i64, force: bool) -> bool {
        let due = match self.last_expiration_ms {
            None => {
                self.last_expiration_ms = Some(now);
                false
            }
            Some(last) => now.saturating_sub(last) >= self.config.expiration_check_interval_ms,
        };
        if due || force {
            self.last_expiration_ms = Some(now);
        }
        due || force
    }

    /// A topic was deleted: its partitions leave every transaction (no marker can be written
    /// to them, and a new topic of the same name must not get one).
    pub fn on_topic_deleted(&mut self, topic: &str) {
        for m in self.txns.values_mut() {
            m.partitions.retain(|(t, _)| t != topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_takes_kafka_names() {
        let mut c = TxnConfig::default();
        assert_eq!(c.max_timeout_ms, 900_000);
        c.apply("transaction.max.timeout.ms", "60000");
        c.apply("transactional.id.expiration.ms", "0");
        c.apply("group.max.size", "3");
        assert_eq!(c.max_timeout_ms, 60_000);
        assert_eq!(c.id_expiration_ms, 7 * 24 * 60 * 60 * 1000, "out of range: ignored");
        let t = TxnCoordinator::new(c);
        assert!(t.valid_timeout(60_000) && !t.valid_timeout(60_001) && !t.valid_timeout(0) && !t.valid_timeout(-1));
    }
}
