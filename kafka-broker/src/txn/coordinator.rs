//! The transaction coordinator's operations (Kafka's `TransactionCoordinator`), branch by
//! branch with Kafka's error answers. They run on the state task with the whole cluster state
//! at hand, because ending a transaction writes markers into partition logs and completes
//! transactional offset commits in the group coordinator.
//!
//! Errors are returned as Kafka's coordinator returns them (PRODUCER_FENCED); the handlers
//! translate them for old request versions (INVALID_PRODUCER_EPOCH), as `KafkaApis` does.

use kafka_protocol::ErrorCode;

use super::metadata::{epoch_exhausted, NO_PRODUCER_EPOCH};
use super::{TimeoutTask, TransactionMetadata, TxnPartition, TxnState, COORDINATOR_EPOCH, OFFSETS_TOPIC};
use crate::cluster::{State, Topic};
use crate::groups::KEY_TYPE_TRANSACTION;

impl State {
    /// A new producer id (shared by idempotent and transactional producers).
    pub fn allocate_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        id
    }

    /// Whether `broker` coordinates transactional id `transactional_id`.
    pub fn is_txn_coordinator(&self, broker: i32, transactional_id: &str) -> bool {
        self.coordinator_for(KEY_TYPE_TRANSACTION, transactional_id) == Some(broker)
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`): a producer id
    /// and epoch for a new producer, or the same id with the next epoch, fencing the previous
    /// producer. An open transaction is aborted first (its epoch bumped so the old producer is
    /// fenced) and the caller gets CONCURRENT_TRANSACTIONS, as from Kafka: its retry then gets
    /// the epoch after that. `expected` is the producer's own id and epoch (KIP-360, v3+).
    pub fn init_transactional_producer(
        &mut self,
        broker: i32,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now: i64,
    ) -> Result<(i64, i16), ErrorCode> {
        if transactional_id.is_empty() {
            return Err(ErrorCode::InvalidRequest);
        }
        if !self.txns.valid_timeout(timeout_ms) {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        if !self.is_txn_coordinator(broker, transactional_id) {
            return Err(ErrorCode::NotCoordinator);
        }
        if !self.txns.txns.contains_key(transactional_id) {
            let producer_id = self.allocate_producer_id();
            let created = TransactionMetadata::new(transactional_id, producer_id, timeout_ms, now);
            self.txns.txns.insert(transactional_id.to_string(), created);
        }
        let Some(m) = self.txns.txns.get(transactional_id) else { return Err(ErrorCode::UnknownServerError) };
        if let Some((producer_id, epoch)) = expected {
            // Kafka's isValidProducerId: a just-created id, the current id, or a retry after a
            // rotation (the previous id with an exhausted epoch).
            let valid = m.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == m.producer_id
                || (producer_id == m.previous_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ErrorCode::ProducerFenced);
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(ErrorCode::ConcurrentTransactions),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = m.epoch_exhausted() && expected.map_or(true, |(_, e)| e == m.producer_epoch);
                let new_id = if rotate { Some(self.allocate_producer_id()) } else { None };
                let Some(m) = self.txns.txns.get_mut(transactional_id) else {
                    return Err(ErrorCode::UnknownServerError);
                };
                match new_id {
                    Some(id) => m.rotate_producer_id(id, timeout_ms, now, expected.is_some())?,
                    None => m.bump_epoch(timeout_ms, expected.map(|(_, e)| e), now)?,
                }
                let answer = (m.producer_id, m.producer_epoch);
                self.txns.timers.cancel(&transactional_id.to_string());
                tracing::info!(
                    id = transactional_id,
                    producer_id = answer.0,
                    epoch = answer.1,
                    "initialized transactional id"
                );
                Ok(answer)
            }
            TxnState::Ongoing => {
                // Abort the open transaction with a bumped epoch (the old producer is fenced
                // by it); the client retries and gets the next epoch. The epoch used here is
                // never returned, so when fencing exhausts the epochs the retry rotates the id.
                let Some(m) = self.txns.txns.get_mut(transactional_id) else {
                    return Err(ErrorCode::UnknownServerError);
                };
                m.fence_epoch()?;
                let (producer_id, epoch) = (m.producer_id, m.producer_epoch);
                tracing::info!(
                    id = transactional_id,
                    producer_id,
                    epoch,
                    "fencing the producer and aborting its transaction"
                );
                match self.end_transaction(transactional_id, producer_id, epoch, false, false, now) {
                    ErrorCode::None => Err(ErrorCode::ConcurrentTransactions),
                    e => Err(e),
                }
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                tracing::error!(id = transactional_id, state = m.state.name(), "transactional id in a transient state");
                Err(ErrorCode::UnknownServerError)
            }
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn (Kafka's `handleAddPartitionsToTransaction`):
    /// the partitions join the producer's transaction, starting it if none is open.
    pub fn add_partitions_to_txn(
        &mut self,
        broker: i32,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TxnPartition],
        now: i64,
    ) -> ErrorCode {
        if transactional_id.is_empty() {
            return ErrorCode::InvalidRequest;
        }
        if !self.is_txn_coordinator(broker, transactional_id) {
            return ErrorCode::NotCoordinator;
        }
        let Some(m) = self.txns.txns.get_mut(transactional_id) else { return ErrorCode::InvalidProducerIdMapping };
        if m.producer_id != producer_id {
            return ErrorCode::InvalidProducerIdMapping;
        }
        if m.producer_epoch != producer_epoch {
            return ErrorCode::ProducerFenced;
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return ErrorCode::ConcurrentTransactions,
            TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => return ErrorCode::None,
            _ => {}
        }
        if let Err(e) = m.add_partitions(partitions.iter().cloned(), now) {
            return e.into();
        }
        let deadline = m.start_ms.saturating_add(i64::from(m.timeout_ms)).saturating_add(1);
        let task = TimeoutTask { producer_id, producer_epoch, start_ms: m.start_ms };
        self.txns.timers.schedule(transactional_id.to_string(), deadline, task);
        ErrorCode::None
    }

    /// What a partition leader asks the coordinator before it takes a transactional batch, or
    /// the group coordinator before it takes a TxnOffsetCommit (KIP-890's verification,
    /// Kafka's `handleVerifyPartitionsInTransaction`): NONE if `partition` is in the
    /// producer's open transaction, TRANSACTION_ABORTABLE if it was never added.
    pub fn verify_txn_partition(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: &TxnPartition,
    ) -> ErrorCode {
        let Some(m) = self.txns.txns.get(transactional_id) else { return ErrorCode::InvalidProducerIdMapping };
        if m.producer_id != producer_id {
            ErrorCode::InvalidProducerIdMapping
        } else if m.producer_epoch != producer_epoch {
            ErrorCode::ProducerFenced
        } else if matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            ErrorCode::ConcurrentTransactions
        } else if m.partitions.contains(partition) {
            ErrorCode::None
        } else {
            ErrorCode::TransactionAbortable
        }
    }

    /// EndTxn (Kafka's `endTransaction`), from a client (`from_client`: the epoch must be the
    /// current one) or from the coordinator itself (fencing, timeouts: the bumped epoch).
    /// Writes the markers before it returns; the caller checked that this broker coordinates
    /// the transactional id.
    pub fn end_transaction(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        from_client: bool,
        now: i64,
    ) -> ErrorCode {
        if transactional_id.is_empty() {
            return ErrorCode::InvalidRequest;
        }
        let Some(m) = self.txns.txns.get_mut(transactional_id) else { return ErrorCode::InvalidProducerIdMapping };
        if m.producer_id != producer_id {
            return ErrorCode::InvalidProducerIdMapping;
        }
        if (from_client && producer_epoch != m.producer_epoch) || producer_epoch < m.producer_epoch {
            return ErrorCode::ProducerFenced;
        }
        let same =
            |state_commits: bool| if commit == state_commits { ErrorCode::None } else { ErrorCode::InvalidTxnState };
        let retry = |state_commits: bool| {
            if commit == state_commits {
                ErrorCode::ConcurrentTransactions
            } else {
                ErrorCode::InvalidTxnState
            }
        };
        match m.state {
            TxnState::Ongoing | TxnState::PrepareEpochFence => {
                if let Err(e) = m.prepare_end(commit, now) {
                    return e.into();
                }
                self.txns.timers.cancel(&transactional_id.to_string());
                self.write_markers(transactional_id, now);
                ErrorCode::None
            }
            TxnState::CompleteCommit => same(true),
            TxnState::CompleteAbort => same(false),
            TxnState::PrepareCommit => retry(true),
            TxnState::PrepareAbort => retry(false),
            TxnState::Empty => ErrorCode::InvalidTxnState,
            TxnState::Dead => ErrorCode::UnknownServerError,
        }
    }

    /// Writes the markers of a transaction in PrepareCommit/PrepareAbort to each of its
    /// partitions that can take one, and completes it when none is left. Offsets partitions
    /// hand the outcome to the group coordinator; partitions that no longer exist are skipped
    /// (Kafka drops markers for deleted partitions); partitions without a leader wait.
    fn write_markers(&mut self, transactional_id: &str, now: i64) {
        let Some(m) = self.txns.txns.get(transactional_id) else { return };
        let commit = match m.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return,
        };
        let (producer_id, epoch) = (m.producer_id, m.producer_epoch);
        let partitions: Vec<TxnPartition> = m.partitions.iter().cloned().collect();
        let mut written: Vec<TxnPartition> = Vec::new();
        let mut logs_changed = false;
        for tp in partitions {
            let (topic, index) = (&tp.0, tp.1);
            if topic == OFFSETS_TOPIC {
                self.groups.complete_transaction(producer_id, index, commit);
                written.push(tp);
                continue;
            }
            let Some(Topic { partitions, settings, .. }) = self.topics.get_mut(topic.as_str()) else {
                written.push(tp);
                continue;
            };
            let Some(p) = usize::try_from(index).ok().and_then(|i| partitions.get_mut(i)) else {
                written.push(tp);
                continue;
            };
            if p.leader < 0 {
                continue;
            }
            let leader_epoch = p.leader_epoch;
            if let Err((code, message)) =
                p.log.append_marker(producer_id, epoch, commit, COORDINATOR_EPOCH, leader_epoch, now, settings)
            {
                // Only a forged batch with a newer epoch gets here; Kafka would retry forever.
                tracing::warn!(id = transactional_id, %topic, index, %code, message, "marker refused; skipped");
            }
            // A marker can take the log a segment past retention.bytes (see `PartitionLog::push`).
            self.pool.give_all(p.log.take_freed());
            logs_changed = true;
            written.push(tp);
        }
        if logs_changed {
            // Read-committed fetches waiting for the last stable offset look again.
            self.data_version += 1;
        }
        let Some(m) = self.txns.txns.get_mut(transactional_id) else { return };
        for tp in &written {
            m.marker_written(tp);
        }
        if m.partitions.is_empty() {
            if let Err(e) = m.complete(now) {
                e.report();
            }
            self.txns.pending_markers.remove(transactional_id);
        } else {
            tracing::info!(id = transactional_id, waiting = m.partitions.len(), "markers wait for partition leaders");
            self.txns.pending_markers.insert(transactional_id.to_string());
        }
    }

    /// Writes the markers that waited for a partition leader (after a broker started, a leader
    /// moved or a topic was deleted; and on housekeeping).
    pub fn retry_pending_markers(&mut self) {
        if self.txns.pending_markers.is_empty() {
            return;
        }
        let now = self.now_ms();
        let ids: Vec<String> = self.txns.pending_markers.iter().cloned().collect();
        for id in ids {
            self.write_markers(&id, now);
        }
    }

    /// Aborts every open transaction past its `transaction.timeout.ms` (Kafka's
    /// `abortTimedOutTransactions`): the epoch is bumped first, so the producer that let it
    /// time out is fenced.
    pub fn fire_txn_timers(&mut self) {
        if self.txns.next_deadline().is_none() {
            return;
        }
        let now = self.now_ms();
        while let Some((id, task)) = self.txns.timers.pop_due(now) {
            let Some(m) = self.txns.txns.get_mut(&id) else { continue };
            let same_txn = m.state == TxnState::Ongoing
                && m.producer_id == task.producer_id
                && m.producer_epoch == task.producer_epoch
                && m.start_ms == task.start_ms;
            if !same_txn {
                continue;
            }
            if let Err(e) = m.fence_epoch() {
                e.report();
                continue;
            }
            let (producer_id, epoch) = (m.producer_id, m.producer_epoch);
            tracing::info!(id = %id, producer_id, epoch, timeout_ms = m.timeout_ms, "aborting a timed-out transaction");
            let result = self.end_transaction(&id, producer_id, epoch, false, false, now);
            if result != ErrorCode::None {
                tracing::warn!(id = %id, %result, "timed-out transaction not aborted");
            }
        }
    }

    /// Forgets transactional ids idle for `transactional.id.expiration.ms` with no transaction
    /// under way (every `transaction.remove.expired.transaction.cleanup.interval.ms`, or now
    /// if `force`).
    pub fn expire_transactional_ids(&mut self, force: bool) {
        let now = self.now_ms();
        if !self.txns.expiration_due(now, force) {
            return;
        }
        let horizon = now.saturating_sub(self.txns.config.id_expiration_ms);
        let expired: Vec<String> = self
            .txns
            .txns
            .iter()
            .filter(|(_, m)| m.state.expiration_allowed() && m.last_update_ms <= horizon)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(mut m) = self.txns.txns.remove(&id) {
                if let Err(e) = m.prepare_dead() {
                    e.report();
                }
                self.txns.timers.cancel(&id);
                tracing::info!(id = %id, producer_id = m.producer_id, "transactional id expired");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::cluster::test_state;
    use kafka_protocol::records::{BatchOptions, ProducerState, RecordBatchBuilder};
    use std::collections::BTreeMap;

    const TXN: &str = "txn-a";

    fn state() -> State {
        let mut s = test_state(1);
        s.add_topic("t", 2, 1, BTreeMap::new());
        s
    }

    fn init(s: &mut State) -> (i64, i16) {
        let now = s.now_ms();
        s.init_transactional_producer(1, TXN, 60_000, None, now).unwrap()
    }

    fn tp(p: i32) -> TxnPartition {
        ("t".to_string(), p)
    }

    fn txn_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> bytes::Bytes {
        let mut b = RecordBatchBuilder::new(BatchOptions { transactional: true, ..BatchOptions::default() });
        for i in 0..n {
            b.append(i as i64, Some(b"k"), Some(b"v"), &[]).unwrap();
        }
        b.seal(ProducerState { producer_id: pid, producer_epoch: epoch, base_sequence: seq }).unwrap()
    }

    fn produce(s: &mut State, p: i32, data: &bytes::Bytes) -> i64 {
        let t = s.topics.get_mut("t").unwrap();
        let settings = t.settings.clone();
        t.partitions[p as usize].log.append(data, &settings, 0, 0).unwrap().base_offset
    }

    fn log(s: &State, p: i32) -> &crate::log::PartitionLog {
        &s.topics["t"].partitions[p as usize].log
    }

    fn meta(s: &State) -> &TransactionMetadata {
        &s.txns.txns[TXN]
    }

    #[test]
    fn init_checks_its_input_and_the_coordinator() {
        let mut s = test_state(3);
        assert_eq!(s.init_transactional_producer(1, "", 1000, None, 0), Err(ErrorCode::InvalidRequest));
        let coord = s.coordinator_for(KEY_TYPE_TRANSACTION, TXN).unwrap();
        assert_eq!(
            s.init_transactional_producer(coord, TXN, 900_001, None, 0),
            Err(ErrorCode::InvalidTransactionTimeout)
        );
        assert_eq!(s.init_transactional_producer(coord, TXN, 0, None, 0), Err(ErrorCode::InvalidTransactionTimeout));
        let other = (1..=3).find(|b| *b != coord).unwrap();
        assert_eq!(s.init_transactional_producer(other, TXN, 1000, None, 0), Err(ErrorCode::NotCoordinator));
        let (pid, epoch) = s.init_transactional_producer(coord, TXN, 1000, None, 0).unwrap();
        assert_eq!(epoch, 0);
        assert_eq!(s.init_transactional_producer(coord, TXN, 1000, None, 0), Ok((pid, 1)), "same id, next epoch");
        assert_eq!(
            s.init_transactional_producer(coord, TXN, 1000, Some((pid + 99, 1)), 0),
            Err(ErrorCode::ProducerFenced),
            "KIP-360 with somebody else's producer id"
        );
        assert_eq!(s.init_transactional_producer(coord, TXN, 1000, Some((pid, 1)), 0), Ok((pid, 2)));
        assert_eq!(s.init_transactional_producer(coord, TXN, 1000, Some((pid, 1)), 0), Ok((pid, 2)), "retry");
    }

    #[test]
    fn commit_writes_markers_and_moves_the_last_stable_offset() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        assert_eq!(s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0), tp(1)], 0), ErrorCode::None);
        assert_eq!(s.verify_txn_partition(TXN, pid, epoch, &tp(0)), ErrorCode::None);
        produce(&mut s, 0, &txn_batch(pid, epoch, 0, 3));
        assert_eq!((log(&s, 0).last_stable_offset(), log(&s, 0).high_watermark()), (0, 3));
        assert_eq!(log(&s, 1).last_stable_offset(), 0, "added but empty: nothing unstable");
        let before = s.data_version;
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::None);
        assert!(s.data_version > before);
        assert_eq!(meta(&s).state, TxnState::CompleteCommit);
        assert_eq!((log(&s, 0).last_stable_offset(), log(&s, 0).high_watermark()), (4, 4), "marker at 3");
        assert_eq!(log(&s, 1).high_watermark(), 1, "every partition of the transaction gets a marker");
        assert!(log(&s, 0).aborted_txns_in(0, 10).is_empty());
        // Retry of the same EndTxn: NONE; the opposite: INVALID_TXN_STATE.
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::None);
        assert_eq!(s.end_transaction(TXN, pid, epoch, false, true, 0), ErrorCode::InvalidTxnState);
    }

    #[test]
    fn abort_records_the_aborted_transaction() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0);
        produce(&mut s, 0, &txn_batch(pid, epoch, 0, 2));
        produce(&mut s, 0, &txn_batch(pid, epoch, 2, 2));
        assert_eq!(s.end_transaction(TXN, pid, epoch, false, true, 0), ErrorCode::None);
        assert_eq!(meta(&s).state, TxnState::CompleteAbort);
        let aborted = log(&s, 0).aborted_txns_in(0, 5);
        assert_eq!(aborted.len(), 1);
        assert_eq!((aborted[0].producer_id, aborted[0].first_offset, aborted[0].last_offset), (pid, 0, 4));
        assert!(log(&s, 0).aborted_txns_in(5, 9).is_empty(), "the marker is at 4");
        // The next transaction continues the sequence (same epoch).
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0);
        assert_eq!(produce(&mut s, 0, &txn_batch(pid, epoch, 4, 1)), 5);
        assert_eq!(log(&s, 0).last_stable_offset(), 5);
    }

    #[test]
    fn end_txn_errors_follow_kafka() {
        let mut s = state();
        assert_eq!(s.end_transaction(TXN, 1, 0, true, true, 0), ErrorCode::InvalidProducerIdMapping);
        let (pid, epoch) = init(&mut s);
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::InvalidTxnState, "nothing open");
        assert_eq!(s.end_transaction(TXN, pid + 1, epoch, true, true, 0), ErrorCode::InvalidProducerIdMapping);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0);
        assert_eq!(
            s.end_transaction(TXN, pid, epoch + 1, true, true, 0),
            ErrorCode::ProducerFenced,
            "strict from a client"
        );
        assert_eq!(s.add_partitions_to_txn(1, TXN, pid, epoch + 1, &[tp(1)], 0), ErrorCode::ProducerFenced);
        assert_eq!(s.add_partitions_to_txn(1, TXN, pid + 1, epoch, &[tp(1)], 0), ErrorCode::InvalidProducerIdMapping);
        assert_eq!(s.add_partitions_to_txn(1, "", pid, epoch, &[tp(1)], 0), ErrorCode::InvalidRequest);
        assert_eq!(s.verify_txn_partition(TXN, pid, epoch, &tp(1)), ErrorCode::TransactionAbortable, "never added");
        assert_eq!(s.verify_txn_partition("other", pid, epoch, &tp(0)), ErrorCode::InvalidProducerIdMapping);
    }

    #[test]
    fn a_new_producer_fences_the_open_transaction() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0);
        produce(&mut s, 0, &txn_batch(pid, epoch, 0, 2));
        let now = s.now_ms();
        assert_eq!(
            s.init_transactional_producer(1, TXN, 60_000, None, now),
            Err(ErrorCode::ConcurrentTransactions),
            "the first call aborts the open transaction"
        );
        assert_eq!((meta(&s).state, meta(&s).producer_epoch), (TxnState::CompleteAbort, epoch + 1));
        assert_eq!(log(&s, 0).aborted_txns_in(0, 10).len(), 1);
        assert_eq!(log(&s, 0).last_stable_offset(), 3);
        assert_eq!(s.init_transactional_producer(1, TXN, 60_000, None, now), Ok((pid, epoch + 2)), "the retry");
        // The old producer: fenced everywhere.
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::ProducerFenced);
        assert_eq!(s.verify_txn_partition(TXN, pid, epoch, &tp(0)), ErrorCode::ProducerFenced);
        let t = s.topics.get_mut("t").unwrap();
        let settings = t.settings.clone();
        let refused = t.partitions[0].log.append(&txn_batch(pid, epoch, 2, 1), &settings, 0, 0).unwrap_err();
        assert_eq!(refused.0, ErrorCode::InvalidProducerEpoch, "the abort marker carried the bumped epoch");
    }

    #[test]
    fn transactions_time_out_and_fence_their_producer() {
        let mut s = state();
        let now = s.now_ms();
        let (pid, epoch) = s.init_transactional_producer(1, TXN, 1000, None, now).unwrap();
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], now);
        produce(&mut s, 0, &txn_batch(pid, epoch, 0, 1));
        assert_eq!(s.txns.next_deadline(), Some(now + 1001), "Kafka aborts once start + timeout < now");
        s.clock_offset_ms += 999;
        s.fire_txn_timers();
        assert_eq!(meta(&s).state, TxnState::Ongoing);
        s.clock_offset_ms += 2000;
        s.fire_txn_timers();
        assert_eq!((meta(&s).state, meta(&s).producer_epoch), (TxnState::CompleteAbort, epoch + 1));
        assert_eq!(log(&s, 0).aborted_txns_in(0, 10).len(), 1);
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::ProducerFenced);
        // A transaction that ended before its deadline is left alone.
        let (pid, epoch) = s.init_transactional_producer(1, TXN, 1000, None, now).unwrap();
        let now = s.now_ms();
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(1)], now);
        s.end_transaction(TXN, pid, epoch, true, true, now);
        s.clock_offset_ms += 5000;
        s.fire_txn_timers();
        assert_eq!(meta(&s).state, TxnState::CompleteCommit);
        assert_eq!(s.txns.next_deadline(), None);
    }

    #[test]
    fn markers_wait_for_a_leader() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0), tp(1)], 0);
        produce(&mut s, 1, &txn_batch(pid, epoch, 0, 1));
        s.topics.get_mut("t").unwrap().partitions[1].leader = -1;
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::None, "answered once prepared");
        assert_eq!(meta(&s).state, TxnState::PrepareCommit);
        assert_eq!(
            meta(&s).partitions.iter().cloned().collect::<Vec<_>>(),
            vec![tp(1)],
            "only the one without a marker"
        );
        assert_eq!(s.end_transaction(TXN, pid, epoch, true, true, 0), ErrorCode::ConcurrentTransactions);
        assert_eq!(s.end_transaction(TXN, pid, epoch, false, true, 0), ErrorCode::InvalidTxnState);
        assert_eq!(s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0), ErrorCode::ConcurrentTransactions);
        assert_eq!(s.init_transactional_producer(1, TXN, 1000, None, 0), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(s.verify_txn_partition(TXN, pid, epoch, &tp(0)), ErrorCode::ConcurrentTransactions);
        s.retry_pending_markers();
        assert_eq!(meta(&s).state, TxnState::PrepareCommit, "still no leader");
        s.topics.get_mut("t").unwrap().partitions[1].leader = 1;
        s.retry_pending_markers();
        assert_eq!(meta(&s).state, TxnState::CompleteCommit);
        assert_eq!(log(&s, 1).last_stable_offset(), 2);
        assert!(s.txns.pending_markers.is_empty());
    }

    #[test]
    fn deleted_partitions_get_no_marker() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0), ("gone".into(), 0), ("t".into(), 7)], 0);
        assert_eq!(s.end_transaction(TXN, pid, epoch, false, true, 0), ErrorCode::None);
        assert_eq!(meta(&s).state, TxnState::CompleteAbort);
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], 0);
        s.txns.on_topic_deleted("t");
        assert!(meta(&s).partitions.is_empty());
    }

    #[test]
    fn exhausted_epochs_get_a_new_producer_id() {
        let mut s = state();
        let (pid, _) = init(&mut s);
        s.txns.txns.get_mut(TXN).unwrap().producer_epoch = i16::MAX - 2;
        let now = s.now_ms();
        assert_eq!(s.init_transactional_producer(1, TXN, 1000, None, now), Ok((pid, i16::MAX - 1)));
        let (new_pid, epoch) = s.init_transactional_producer(1, TXN, 1000, None, now).unwrap();
        assert_ne!(new_pid, pid);
        assert_eq!(epoch, 0);
        // Fencing at the last epoch: the abort uses i16::MAX, the retry rotates the id.
        s.txns.txns.get_mut(TXN).unwrap().producer_epoch = i16::MAX - 1;
        let e = i16::MAX - 1;
        s.add_partitions_to_txn(1, TXN, new_pid, e, &[tp(0)], now);
        assert_eq!(s.init_transactional_producer(1, TXN, 1000, None, now), Err(ErrorCode::ConcurrentTransactions));
        assert_eq!(meta(&s).producer_epoch, i16::MAX);
        // The producer's own KIP-360 bump: a new id, and its retry gets the same answer.
        let (third, epoch) = s.init_transactional_producer(1, TXN, 1000, Some((new_pid, i16::MAX)), now).unwrap();
        assert!(third != new_pid && epoch == 0);
        assert_eq!(s.init_transactional_producer(1, TXN, 1000, Some((new_pid, i16::MAX)), now), Ok((third, 0)));
        assert_eq!(
            s.init_transactional_producer(1, TXN, 1000, Some((new_pid, 5)), now),
            Err(ErrorCode::ProducerFenced)
        );
    }

    #[test]
    fn idle_transactional_ids_expire() {
        let mut s = state();
        let (pid, epoch) = init(&mut s);
        s.txns.config.id_expiration_ms = 1000;
        s.expire_transactional_ids(true);
        assert!(s.txns.txns.contains_key(TXN));
        s.add_partitions_to_txn(1, TXN, pid, epoch, &[tp(0)], s.now_ms());
        s.clock_offset_ms += 5000;
        s.txns.timers.cancel(&TXN.to_string());
        s.expire_transactional_ids(true);
        assert!(s.txns.txns.contains_key(TXN), "an open transaction keeps its id");
        s.end_transaction(TXN, pid, epoch, true, true, s.now_ms() - 2000);
        s.expire_transactional_ids(true);
        assert!(!s.txns.txns.contains_key(TXN));
    }
}
