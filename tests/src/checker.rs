//! The reliability checker (RELIABILITY.md, "The checker"): every produced value is unique
//! (a producer number and a counter), every delivery outcome and every consumed record is
//! recorded, and after the faults heal the topic is read back from the start with plain Fetch
//! requests (not the consumer under test). [`Checker::figures`] turns that into the figures the
//! reliability table reports.
//!
//! A value is `id` (8 bytes, big-endian: producer number in the top 16 bits, the producer's
//! counter in the low 48) followed by padding derived from it ([`unique_value`]), so a value
//! found in the log or handed to a consumer names the send it came from, and the counter gives
//! the producer's send order.
//!
//! Transactions: a record may belong to a transaction the checker knows ([`Checker::begin_txn`],
//! [`Checker::end_txn`]); records of aborted transactions are not expected in a committed read,
//! and a consumer that hands one out counts as an aborted read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kafka_client::{DeliveryError, DeliveryFuture, Error, Persistence, Producer, ProducerRecord, RecordMetadata};

use crate::{read_topic, seq_of, unique_value, ReadRecord};

/// Bits of a value id that hold the producer's counter.
const COUNTER_BITS: u32 = 48;

/// The id a value carries: producer number `producer` and its `counter`-th record.
pub fn value_id(producer: u16, counter: u64) -> u64 {
    (u64::from(producer) << COUNTER_BITS) | (counter & ((1 << COUNTER_BITS) - 1))
}

/// The producer number of a value id.
pub fn producer_of(id: u64) -> u16 {
    (id >> COUNTER_BITS) as u16
}

/// The counter (send order within its producer) of a value id.
pub fn counter_of(id: u64) -> u64 {
    id & ((1 << COUNTER_BITS) - 1)
}

/// What the producer reported for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No outcome yet (the delivery future was not awaited).
    Pending,
    /// Acknowledged at this partition and offset (-1 with acks=0).
    Persisted {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// Failed, and the producer said it is not in the log.
    NotPersisted,
    /// Failed, and the producer said it may be in the log.
    PossiblyPersisted,
}

/// How a transaction the checker knows ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Not ended (yet).
    Open,
    /// Committed.
    Committed,
    /// Aborted.
    Aborted,
}

#[derive(Debug, Clone, Copy)]
struct SentRecord {
    outcome: Outcome,
    txn: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Consumed {
    partition: i32,
    offset: i64,
    id: u64,
}

#[derive(Debug, Default)]
struct State {
    next_producer: u16,
    counters: HashMap<u16, u64>,
    sent: HashMap<u64, SentRecord>,
    consumed: Vec<Consumed>,
    txns: Vec<TxnOutcome>,
    recovery: Option<Duration>,
}

/// Records what a scenario sent, what the producer reported, and what consumers received.
/// Shared between tasks by reference (`Arc<Checker>`); every method takes `&self`.
#[derive(Debug)]
pub struct Checker {
    topic: String,
    partitions: i32,
    pad: usize,
    state: Mutex<State>,
    faults: AtomicU64,
    rebalances: AtomicU64,
}

impl Checker {
    /// A checker for `topic` with `partitions` partitions, whose values carry `pad` bytes of
    /// padding after the id.
    pub fn new(topic: &str, partitions: i32, pad: usize) -> Checker {
        Checker {
            topic: topic.to_owned(),
            partitions,
            pad,
            state: Mutex::new(State::default()),
            faults: AtomicU64::new(0),
            rebalances: AtomicU64::new(0),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its partition count.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new producer number (each producer's counter starts at 0).
    pub fn new_producer(&self) -> u16 {
        let mut st = self.lock();
        let n = st.next_producer;
        st.next_producer = st.next_producer.wrapping_add(1);
        n
    }

    /// The next value of `producer`, registered as pending (in transaction `txn`, if any).
    pub fn next_value(&self, producer: u16, txn: Option<u64>) -> (u64, Vec<u8>) {
        let mut st = self.lock();
        let counter = st.counters.entry(producer).or_insert(0);
        let id = value_id(producer, *counter);
        *counter += 1;
        st.sent.insert(id, SentRecord { outcome: Outcome::Pending, txn });
        drop(st);
        (id, unique_value(id, self.pad))
    }

    /// Records the outcome of value `id`'s delivery.
    pub fn delivered(&self, id: u64, result: &Result<RecordMetadata, DeliveryError>) {
        let outcome = match result {
            Ok(m) => Outcome::Persisted { partition: m.partition, offset: m.offset },
            Err(e) if e.persistence == Persistence::PossiblyPersisted => Outcome::PossiblyPersisted,
            Err(_) => Outcome::NotPersisted,
        };
        self.set_outcome(id, outcome);
    }

    /// Records a send that failed before the record was accepted (it is not in the log).
    pub fn rejected(&self, id: u64) {
        self.set_outcome(id, Outcome::NotPersisted);
    }

    fn set_outcome(&self, id: u64, outcome: Outcome) {
        if let Some(s) = self.lock().sent.get_mut(&id) {
            s.outcome = outcome;
        }
    }

    /// Sends the next value of `producer` (to `partition`, or where the partitioner puts it).
    /// A send refused before it was accepted is recorded as not persisted and returned as
    /// the error.
    ///
    /// # Errors
    /// What `Producer::send` returned.
    pub async fn send(
        &self,
        producer: &Producer,
        tag: u16,
        partition: Option<i32>,
        txn: Option<u64>,
    ) -> Result<(u64, DeliveryFuture), Error> {
        let (id, value) = self.next_value(tag, txn);
        self.send_value(producer, id, value, partition).await
    }

    /// Like [`Self::send`], but the value is the id followed by `payload` (instead of the
    /// padding): a pipeline forwarding an input record puts the input's value there, so the
    /// output names both its own send and the input it came from.
    ///
    /// # Errors
    /// What `Producer::send` returned.
    pub async fn send_payload(
        &self,
        producer: &Producer,
        tag: u16,
        partition: Option<i32>,
        txn: Option<u64>,
        payload: &[u8],
    ) -> Result<(u64, DeliveryFuture), Error> {
        let (id, _) = self.next_value(tag, txn);
        let mut value = id.to_be_bytes().to_vec();
        value.extend_from_slice(payload);
        self.send_value(producer, id, value, partition).await
    }

    async fn send_value(
        &self,
        producer: &Producer,
        id: u64,
        value: Vec<u8>,
        partition: Option<i32>,
    ) -> Result<(u64, DeliveryFuture), Error> {
        let mut record = ProducerRecord::new(&self.topic).value(&value);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match producer.send(record).await {
            Ok(f) => Ok((id, f)),
            Err(e) => {
                self.rejected(id);
                Err(e)
            }
        }
    }

    /// Awaits delivery futures, recording each outcome.
    pub async fn settle(&self, pending: Vec<(u64, DeliveryFuture)>) {
        for (id, f) in pending {
            let r = f.await;
            self.delivered(id, &r);
        }
    }

    /// Records a record a consumer handed to the application (values not made by a checker
    /// are ignored).
    pub fn consumed(&self, partition: i32, offset: i64, value: Option<&[u8]>) {
        if let Some(id) = value.and_then(seq_of) {
            self.lock().consumed.push(Consumed { partition, offset, id });
        }
    }

    /// How many records consumers handed out so far.
    pub fn consumed_count(&self) -> usize {
        self.lock().consumed.len()
    }

    /// How many distinct values consumers handed out so far.
    pub fn consumed_distinct(&self) -> usize {
        self.lock().consumed.iter().map(|c| c.id).collect::<HashSet<_>>().len()
    }

    /// The ids of every value acknowledged as persisted.
    pub fn acked_ids(&self) -> HashSet<u64> {
        self.lock()
            .sent
            .iter()
            .filter(|(_, s)| matches!(s.outcome, Outcome::Persisted { .. }))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every distinct value id consumers handed out so far.
    pub fn consumed_ids(&self) -> HashSet<u64> {
        self.lock().consumed.iter().map(|c| c.id).collect()
    }

    /// Per partition, the highest offset consumers handed out so far.
    pub fn max_consumed_offsets(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for c in &self.lock().consumed {
            let e = out.entry(c.partition).or_insert(c.offset);
            *e = (*e).max(c.offset);
        }
        out
    }

    /// Starts a transaction the checker tracks; pass its number to [`Self::send`].
    pub fn begin_txn(&self) -> u64 {
        let mut st = self.lock();
        st.txns.push(TxnOutcome::Open);
        st.txns.len() as u64 - 1
    }

    /// Records how transaction `txn` ended.
    pub fn end_txn(&self, txn: u64, committed: bool) {
        let mut st = self.lock();
        if let Some(t) = usize::try_from(txn).ok().and_then(|i| st.txns.get_mut(i)) {
            *t = if committed { TxnOutcome::Committed } else { TxnOutcome::Aborted };
        }
    }

    /// Counts `n` injected faults.
    pub fn add_faults(&self, n: u64) {
        self.faults.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a rebalance (an assignment a group member received).
    pub fn add_rebalance(&self) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long the client took to recover after the last fault healed (the
    /// longest recorded wins).
    pub fn recovered_in(&self, d: Duration) {
        let mut st = self.lock();
        st.recovery = Some(st.recovery.map_or(d, |r| r.max(d)));
    }

    /// Reads every partition of the topic from the start (plain Fetch requests).
    ///
    /// # Errors
    /// A description of what failed.
    pub async fn read_back(&self, bootstrap: &str) -> Result<Vec<Vec<ReadRecord>>, String> {
        read_topic(bootstrap, &self.topic, self.partitions).await
    }

    /// The figures: what was sent and reported against `log` (from [`Self::read_back`]) and
    /// what consumers received.
    pub fn figures(&self, log: &[Vec<ReadRecord>]) -> Figures {
        let st = self.lock();
        let txn_of = |id: u64| -> TxnOutcome {
            match st.sent.get(&id).and_then(|s| s.txn) {
                None => TxnOutcome::Committed,
                Some(t) => usize::try_from(t).ok().and_then(|i| st.txns.get(i)).copied().unwrap_or(TxnOutcome::Open),
            }
        };
        let mut f = Figures {
            sent: st.sent.len(),
            faults_injected: self.faults.load(Ordering::Relaxed),
            rebalances: self.rebalances.load(Ordering::Relaxed),
            recovery: st.recovery,
            ..Default::default()
        };
        // The log: where each value is, duplicates, order per producer and partition.
        let mut found: HashMap<u64, (i32, i64)> = HashMap::new();
        for (p, records) in log.iter().enumerate() {
            let mut last: HashMap<u16, u64> = HashMap::new();
            for r in records {
                let Some(id) = r.value.as_deref().and_then(seq_of) else { continue };
                f.in_log += 1;
                if found.insert(id, (p as i32, r.offset)).is_some() {
                    f.duplicates += 1;
                }
                let (producer, counter) = (producer_of(id), counter_of(id));
                if last.get(&producer).is_some_and(|l| counter < *l) {
                    f.reordered += 1;
                }
                last.insert(producer, counter);
            }
        }
        for (id, s) in &st.sent {
            let txn = txn_of(*id);
            match (s.outcome, found.get(id)) {
                (Outcome::Pending, _) => f.pending += 1,
                (Outcome::Persisted { partition, offset }, at) => {
                    f.acked += 1;
                    match at {
                        // An acknowledged record of an aborted transaction is rightly absent.
                        None if txn == TxnOutcome::Aborted => {}
                        None => f.lost += 1,
                        Some((p, _)) if *p != partition => f.misplaced += 1,
                        Some((_, o)) if *o != offset && offset >= 0 => f.offset_mismatches += 1,
                        Some(_) => {}
                    }
                }
                (Outcome::PossiblyPersisted, _) => f.possibly_persisted += 1,
                (Outcome::NotPersisted, at) => {
                    f.not_persisted += 1;
                    if at.is_some() {
                        // Reported as not written, yet written: the report was wrong.
                        f.lost += 1;
                        f.not_persisted_in_log += 1;
                    }
                }
            }
        }
        // What consumers received.
        let mut times: HashMap<u64, u32> = HashMap::new();
        for c in &st.consumed {
            f.consumed += 1;
            *times.entry(c.id).or_insert(0) += 1;
            if txn_of(c.id) == TxnOutcome::Aborted {
                f.aborted_reads += 1;
            }
        }
        f.redelivered = times.values().map(|n| (n - 1) as usize).sum();
        if !st.consumed.is_empty() {
            f.unconsumed = st
                .sent
                .iter()
                .filter(|(id, s)| {
                    matches!(s.outcome, Outcome::Persisted { .. })
                        && txn_of(**id) != TxnOutcome::Aborted
                        && !times.contains_key(id)
                })
                .count();
        }
        f
    }

    /// For consumers that read every partition in order (manual assignment, no group):
    /// the records handed out per partition, compared with the log. Returns the number of
    /// partitions whose consumed offsets are not exactly the log's data offsets in order
    /// (a gap or a repeat: the consumer did not resume at the right offset).
    pub fn consumer_gaps(&self, log: &[Vec<ReadRecord>]) -> usize {
        let st = self.lock();
        let mut per: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for c in &st.consumed {
            per.entry(c.partition).or_default().push(c.offset);
        }
        let mut bad = 0;
        for (p, records) in log.iter().enumerate() {
            let expected: Vec<i64> =
                records.iter().filter(|r| r.value.as_deref().and_then(seq_of).is_some()).map(|r| r.offset).collect();
            let got = per.remove(&(p as i32)).unwrap_or_default();
            if got != expected {
                bad += 1;
            }
        }
        bad + per.len()
    }
}

/// The figures of RELIABILITY.md for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Records handed to the producer.
    pub sent: usize,
    /// Records the producer reported delivered.
    pub acked: usize,
    /// Failures reported as not persisted.
    pub not_persisted: usize,
    /// Failures reported as possibly persisted.
    pub possibly_persisted: usize,
    /// Records whose delivery future was never awaited.
    pub pending: usize,
    /// Acknowledged records (not of an aborted transaction) missing from the log, plus
    /// records reported not persisted that are in it.
    pub lost: usize,
    /// Of `lost`: records reported not persisted that are in the log.
    pub not_persisted_in_log: usize,
    /// Extra copies of a value in the log.
    pub duplicates: usize,
    /// Records that appear in a partition after a later record of the same producer.
    pub reordered: usize,
    /// Acknowledged records stored at another offset than the one reported.
    pub offset_mismatches: usize,
    /// Acknowledged records found in another partition than the reported one.
    pub misplaced: usize,
    /// Checker values in the log.
    pub in_log: usize,
    /// Records consumers handed out.
    pub consumed: usize,
    /// Extra deliveries of a value to consumers (at-least-once redelivery after a rebalance
    /// or crash; a duplicate in an exactly-once pipeline).
    pub redelivered: usize,
    /// Acknowledged records (not aborted) no consumer received, when any consumer ran.
    pub unconsumed: usize,
    /// Records of aborted transactions that consumers handed out.
    pub aborted_reads: usize,
    /// Faults injected.
    pub faults_injected: u64,
    /// Assignments group members received.
    pub rebalances: u64,
    /// The longest time the client needed to recover after a fault healed, when measured.
    pub recovery: Option<Duration>,
}

impl Figures {
    /// Adds another run's figures (the longest recovery wins).
    pub fn add(&mut self, o: &Figures) {
        self.sent += o.sent;
        self.acked += o.acked;
        self.not_persisted += o.not_persisted;
        self.possibly_persisted += o.possibly_persisted;
        self.pending += o.pending;
        self.lost += o.lost;
        self.not_persisted_in_log += o.not_persisted_in_log;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.offset_mismatches += o.offset_mismatches;
        self.misplaced += o.misplaced;
        self.in_log += o.in_log;
        self.consumed += o.consumed;
        self.redelivered += o.redelivered;
        self.unconsumed += o.unconsumed;
        self.aborted_reads += o.aborted_reads;
        self.faults_injected += o.faults_injected;
        self.rebalances += o.rebalances;
        self.recovery = match (self.recovery, o.recovery) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The invariants every scenario requires: nothing lost, duplicated in the log,
    /// reordered, misplaced, at a wrong offset, or read from an aborted transaction. A
    /// description of the first broken one.
    ///
    /// # Errors
    /// Which figure is not zero.
    pub fn check_clean(&self) -> Result<(), String> {
        for (name, v) in [
            ("lost", self.lost),
            ("duplicates", self.duplicates),
            ("reordered", self.reordered),
            ("offset_mismatches", self.offset_mismatches),
            ("misplaced", self.misplaced),
            ("aborted_reads", self.aborted_reads),
            ("pending", self.pending),
        ] {
            if v != 0 {
                return Err(format!("{name} = {v}\n{self}"));
            }
        }
        Ok(())
    }

    /// The figures as `(name, value)` pairs, in table order.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sent", self.sent.to_string()),
            ("acked", self.acked.to_string()),
            ("not_persisted", self.not_persisted.to_string()),
            ("possibly_persisted", self.possibly_persisted.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicates", self.duplicates.to_string()),
            ("reordered", self.reordered.to_string()),
            ("offset_mismatches", self.offset_mismatches.to_string()),
            ("misplaced", self.misplaced.to_string()),
            ("in_log", self.in_log.to_string()),
            ("consumed", self.consumed.to_string()),
            ("redelivered", self.redelivered.to_string()),
            ("unconsumed", self.unconsumed.to_string()),
            ("aborted_reads", self.aborted_reads.to_string()),
            ("faults_injected", self.faults_injected.to_string()),
            ("rebalances", self.rebalances.to_string()),
            ("recovery", self.recovery.map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()))),
        ]
    }
}

impl fmt::Display for Figures {
    /// A two-column table, one figure a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.rows() {
            writeln!(f, "  {name:<20} {value:>12}")?;
        }
        Ok(())
    }
}
