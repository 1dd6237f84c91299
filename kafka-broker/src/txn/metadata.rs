//! One transactional id's metadata and its state machine (Kafka's `TransactionMetadata` and
//! `TransactionState`). Nothing here touches logs or groups: the coordinator (`coordinator.rs`)
//! checks a request, then calls one of these transitions, then writes the markers.
//!
//! States and the transitions Kafka allows (`TransactionState.validPreviousStates`):
//!
//! ```text
//! Empty             <- Empty, CompleteCommit, CompleteAbort      (InitProducerId: epoch bump or new id)
//! Ongoing           <- Ongoing, Empty, CompleteCommit, CompleteAbort (AddPartitionsToTxn, AddOffsetsToTxn)
//! PrepareCommit     <- Ongoing                                   (EndTxn commit)
//! PrepareAbort      <- Ongoing, PrepareEpochFence                (EndTxn abort; fencing; timeout)
//! CompleteCommit    <- PrepareCommit                             (every marker written)
//! CompleteAbort     <- PrepareAbort                              (every marker written)
//! PrepareEpochFence <- Ongoing                                   (a new producer or a timeout fences the epoch)
//! Dead              <- Empty, CompleteCommit, CompleteAbort      (transactional.id.expiration.ms)
//! ```
//!
//! Kafka also has a "pending state" per transaction: the state a transition is waiting to
//! write to `__transaction_state`, during which other requests get CONCURRENT_TRANSACTIONS.
//! Here the write is instantaneous, so a transition completes when it is made; only
//! PrepareCommit/PrepareAbort last (while a partition without a leader waits for its marker).

use std::collections::BTreeSet;

use kafka_protocol::ErrorCode;

/// Kafka's `RecordBatch.NO_PRODUCER_EPOCH` / `NO_PRODUCER_ID`.
pub(crate) const NO_PRODUCER_EPOCH: i16 = -1;
/// See [`NO_PRODUCER_EPOCH`].
pub(crate) const NO_PRODUCER_ID: i64 = -1;

/// A transaction's state (Kafka's `TransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum TxnState {
    /// No transaction in progress (after InitProducerId).
    Empty,
    /// Partitions or offsets were added: a transaction is open.
    Ongoing,
    /// EndTxn(commit) accepted; COMMIT markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fence or a timeout; ABORT markers are being written.
    PrepareAbort,
    /// Every COMMIT marker is written.
    CompleteCommit,
    /// Every ABORT marker is written.
    CompleteAbort,
    /// The transactional id expired and is being removed.
    Dead,
    /// The epoch was bumped to fence the producer; the abort follows at once.
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in Kafka's id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (ListTransactions filters).
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The states a transaction may move to this one from.
    fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether a transactional id in this state may expire.
    pub fn expiration_allowed(self) -> bool {
        matches!(self, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
    }
}

/// A transition Kafka's state machine does not allow: a bug in the coordinator, answered with
/// UNKNOWN_SERVER_ERROR (what Kafka's IllegalStateException becomes) rather than a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IllegalTransition {
    pub from: TxnState,
    pub to: TxnState,
}

impl IllegalTransition {
    /// Logs the bug; where no request waits for an answer this is all that can be done.
    pub fn report(self) {
        tracing::error!(from = self.from.name(), to = self.to.name(), "illegal transaction state transition");
    }
}

impl From<IllegalTransition> for ErrorCode {
    fn from(e: IllegalTransition) -> Self {
        e.report();
        ErrorCode::UnknownServerError
    }
}

/// Kafka's `TransactionMetadata.isEpochExhausted`: the last epoch is kept back so that the
/// coordinator can always fence.
pub(crate) fn epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A partition a transaction writes to: (topic, partition). The group coordinator's offsets
/// partitions appear as `__consumer_offsets`, as in Kafka.
pub(crate) type TxnPartition = (String, i32);

/// One transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhaustion), -1 if none.
    pub previous_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump by InitProducerId with the producer's epoch (KIP-360),
    /// so a retry of that call gets the same answer; -1 otherwise.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The transaction's partitions. In PrepareCommit/PrepareAbort, those still waiting for
    /// their marker.
    pub partitions: BTreeSet<TxnPartition>,
    /// When the first partition was added (cluster clock), -1 when no transaction started.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

impl TransactionMetadata {
    /// A new transactional id: a producer id, no epoch yet, Empty.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TransactionMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now,
        }
    }

    fn transition(&mut self, to: TxnState) -> Result<(), IllegalTransition> {
        if !to.valid_previous().contains(&self.state) {
            return Err(IllegalTransition { from: self.state, to });
        }
        tracing::debug!(id = %self.transactional_id, from = self.state.name(), to = to.name(), "transaction state");
        self.state = to;
        Ok(())
    }

    /// Whether the epoch can no longer be bumped for InitProducerId.
    pub fn epoch_exhausted(&self) -> bool {
        epoch_exhausted(self.producer_epoch)
    }

    /// InitProducerId bumps the epoch (Kafka's `prepareIncrementProducerEpoch`): with no
    /// expected epoch, a new producer takes over; with the producer's own epoch (KIP-360) the
    /// producer continues after an error; with the epoch before the last bump it is a retry
    /// and gets the current epoch again; anything else is PRODUCER_FENCED.
    pub fn bump_epoch(&mut self, timeout_ms: i32, expected_epoch: Option<i16>, now: i64) -> Result<(), ErrorCode> {
        if self.epoch_exhausted() {
            tracing::error!(id = %self.transactional_id, "cannot allocate any more producer epochs");
            return Err(ErrorCode::UnknownServerError);
        }
        let bumped = self.producer_epoch + 1;
        let (epoch, last) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(e) if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch => {
                (bumped, self.producer_epoch)
            }
            Some(e) if e == self.last_producer_epoch => (self.producer_epoch, self.last_producer_epoch),
            Some(e) => {
                tracing::info!(
                    id = %self.transactional_id,
                    expected = e,
                    current = self.producer_epoch,
                    last = self.last_producer_epoch,
                    "expected producer epoch does not match"
                );
                return Err(ErrorCode::ProducerFenced);
            }
        };
        self.transition(TxnState::Empty)?;
        self.producer_epoch = epoch;
        self.last_producer_epoch = last;
        self.timeout_ms = timeout_ms;
        self.partitions.clear();
        self.start_ms = -1;
        self.last_update_ms = now;
        Ok(())
    }

    /// The epoch is exhausted: a new producer id with epoch 0 (Kafka's
    /// `prepareProducerIdRotation`).
    pub fn rotate_producer_id(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now: i64,
        record_last_epoch: bool,
    ) -> Result<(), IllegalTransition> {
        self.transition(TxnState::Empty)?;
        self.previous_producer_id = self.producer_id;
        self.last_producer_epoch = if record_last_epoch { self.producer_epoch } else { NO_PRODUCER_EPOCH };
        self.producer_id = new_producer_id;
        self.producer_epoch = 0;
        self.timeout_ms = timeout_ms;
        self.partitions.clear();
        self.start_ms = -1;
        self.last_update_ms = now;
        Ok(())
    }

    /// Partitions join the transaction; the first ones start it (and its timeout).
    pub fn add_partitions(
        &mut self,
        partitions: impl IntoIterator<Item = TxnPartition>,
        now: i64,
    ) -> Result<(), IllegalTransition> {
        let starts = matches!(self.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort);
        self.transition(TxnState::Ongoing)?;
        if starts {
            self.start_ms = now;
        }
        self.partitions.extend(partitions);
        self.last_update_ms = now;
        Ok(())
    }

    /// Fences the current producer (Kafka's `prepareFenceProducerEpoch`): the epoch goes up
    /// by one (not past i16::MAX), so the open transaction can be aborted with an epoch the
    /// old producer does not have.
    pub fn fence_epoch(&mut self) -> Result<(), IllegalTransition> {
        self.transition(TxnState::PrepareEpochFence)?;
        self.producer_epoch = self.producer_epoch.saturating_add(1);
        // The epoch a KIP-360 retry could claim is gone: only a new InitProducerId continues.
        self.last_producer_epoch = NO_PRODUCER_EPOCH;
        Ok(())
    }

    /// EndTxn accepted (or a fence's abort): PrepareCommit or PrepareAbort; the markers follow.
    pub fn prepare_end(&mut self, commit: bool, now: i64) -> Result<(), IllegalTransition> {
        self.transition(if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort })?;
        self.last_update_ms = now;
        Ok(())
    }

    /// A partition's marker was written (or the partition is gone).
    pub fn marker_written(&mut self, partition: &TxnPartition) {
        self.partitions.remove(partition);
    }

    /// Every marker is written: CompleteCommit or CompleteAbort.
    pub fn complete(&mut self, now: i64) -> Result<(), IllegalTransition> {
        let to = if self.state == TxnState::PrepareCommit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        self.transition(to)?;
        self.partitions.clear();
        self.last_update_ms = now;
        Ok(())
    }

    /// The transactional id expires.
    pub fn prepare_dead(&mut self) -> Result<(), IllegalTransition> {
        self.transition(TxnState::Dead)?;
        self.partitions.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tp(t: &str, p: i32) -> TxnPartition {
        (t.to_string(), p)
    }

    fn fresh() -> TransactionMetadata {
        TransactionMetadata::new("txn", 1000, 60_000, 0)
    }

    #[test]
    fn names_round_trip_and_previous_states_are_kafkas() {
        for s in TxnState::ALL {
            assert_eq!(TxnState::from_name(s.name()), Some(s));
        }
        assert_eq!(TxnState::from_name("ongoing"), None, "names are case sensitive, as in Kafka");
        // Every (from, to) pair: exactly Kafka's table.
        let allowed: Vec<(TxnState, TxnState)> =
            TxnState::ALL.into_iter().flat_map(|to| to.valid_previous().iter().map(move |from| (*from, to))).collect();
        assert_eq!(allowed.len(), 3 + 4 + 1 + 2 + 1 + 1 + 3 + 1);
        assert!(allowed.contains(&(TxnState::PrepareEpochFence, TxnState::PrepareAbort)));
        assert!(!allowed.contains(&(TxnState::PrepareEpochFence, TxnState::PrepareCommit)));
        assert!(!allowed.contains(&(TxnState::Ongoing, TxnState::Empty)), "an open transaction must end first");
        assert!(!allowed.contains(&(TxnState::Empty, TxnState::PrepareCommit)));
        assert!(TxnState::CompleteAbort.expiration_allowed() && !TxnState::Ongoing.expiration_allowed());
    }

    #[test]
    fn a_commit_goes_through_every_state() {
        let mut m = fresh();
        m.bump_epoch(60_000, None, 1).unwrap();
        assert_eq!((m.state, m.producer_epoch, m.last_producer_epoch), (TxnState::Empty, 0, -1));
        m.add_partitions([tp("a", 0)], 10).unwrap();
        m.add_partitions([tp("a", 1)], 20).unwrap();
        assert_eq!((m.state, m.start_ms, m.partitions.len()), (TxnState::Ongoing, 10, 2), "the first add starts it");
        m.prepare_end(true, 30).unwrap();
        assert_eq!(m.state, TxnState::PrepareCommit);
        m.marker_written(&tp("a", 0));
        assert_eq!(m.partitions.len(), 1, "partitions without markers are still listed");
        m.complete(40).unwrap();
        assert_eq!((m.state, m.partitions.len(), m.producer_epoch), (TxnState::CompleteCommit, 0, 0));
        // The next transaction starts again from CompleteCommit with the same epoch.
        m.add_partitions([tp("b", 0)], 50).unwrap();
        assert_eq!((m.state, m.start_ms), (TxnState::Ongoing, 50));
        m.prepare_end(false, 60).unwrap();
        m.complete(70).unwrap();
        assert_eq!(m.state, TxnState::CompleteAbort);
        m.prepare_dead().unwrap();
        assert_eq!(m.state, TxnState::Dead);
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let mut m = fresh();
        m.bump_epoch(1, None, 0).unwrap();
        assert_eq!(
            m.prepare_end(true, 0),
            Err(IllegalTransition { from: TxnState::Empty, to: TxnState::PrepareCommit })
        );
        assert!(m.fence_epoch().is_err(), "nothing to fence in Empty");
        assert_eq!(
            ErrorCode::from(IllegalTransition { from: TxnState::Empty, to: TxnState::Dead }),
            ErrorCode::UnknownServerError
        );
        m.add_partitions([tp("a", 0)], 0).unwrap();
        assert!(m.bump_epoch(1, None, 0).is_err(), "InitProducerId must fence an open transaction, not bump over it");
        assert!(m.prepare_dead().is_err());
        assert_eq!(m.state, TxnState::Ongoing, "a refused transition changes nothing");
    }

    #[test]
    fn fencing_bumps_the_epoch_then_aborts() {
        let mut m = fresh();
        m.bump_epoch(1, None, 0).unwrap();
        m.add_partitions([tp("a", 0)], 0).unwrap();
        m.fence_epoch().unwrap();
        assert_eq!((m.state, m.producer_epoch, m.last_producer_epoch), (TxnState::PrepareEpochFence, 1, -1));
        assert!(m.prepare_end(true, 0).is_err(), "a fence only aborts");
        m.prepare_end(false, 0).unwrap();
        m.complete(0).unwrap();
        assert_eq!(m.state, TxnState::CompleteAbort);
        // At i16::MAX the fence keeps the epoch (Kafka never overflows it).
        let mut max = fresh();
        max.producer_epoch = i16::MAX;
        max.state = TxnState::Ongoing;
        max.fence_epoch().unwrap();
        assert_eq!(max.producer_epoch, i16::MAX);
    }

    #[test]
    fn kip_360_epoch_bumps_and_retries() {
        let mut m = fresh();
        assert_eq!(m.bump_epoch(1, Some(5), 0), Ok(()), "a new id (epoch -1) accepts any expected epoch");
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (0, -1));
        m.bump_epoch(1, Some(0), 0).unwrap();
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (1, 0), "the producer's own epoch: bumped");
        m.bump_epoch(1, Some(0), 0).unwrap();
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (1, 0), "a retry of that call: the same answer");
        assert_eq!(m.bump_epoch(1, Some(7), 0), Err(ErrorCode::ProducerFenced));
        m.bump_epoch(1, None, 0).unwrap();
        assert_eq!((m.producer_epoch, m.last_producer_epoch), (2, -1), "a new producer: the retry epoch is gone");
        assert_eq!(m.bump_epoch(1, Some(0), 0), Err(ErrorCode::ProducerFenced));
    }

    #[test]
    fn exhausted_epochs_rotate_the_producer_id() {
        let mut m = fresh();
        m.bump_epoch(1, None, 0).unwrap();
        m.producer_epoch = i16::MAX - 2;
        assert!(!m.epoch_exhausted());
        m.bump_epoch(1, None, 0).unwrap();
        assert!(m.epoch_exhausted(), "i16::MAX - 1 is the last epoch handed out");
        assert_eq!(m.bump_epoch(1, None, 0), Err(ErrorCode::UnknownServerError));
        m.rotate_producer_id(2000, 1, 5, true).unwrap();
        assert_eq!(
            (m.producer_id, m.previous_producer_id, m.producer_epoch, m.last_producer_epoch),
            (2000, 1000, 0, i16::MAX - 1)
        );
    }
}
