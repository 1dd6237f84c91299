//! The scenarios of RELIABILITY.md as code: each builds a bundled cluster, injects its fault
//! with a fixed seed while records flow, heals, reads the topic back and returns a [`Report`]
//! (the checker's figures plus the scenario's extra invariants). The tests in
//! `tests/reliability.rs` run each at a small size; the `chaos` binary runs the same code
//! long (`--records`, `--minutes`).
//!
//! The transactional scenarios (R7, R9, R10, R13) are in `scenario/txn.rs`; R14, the
//! combined soak, runs the exactly-once pipeline of `scenario/pipeline.rs` with every fault
//! of R1, R2, R7 and R8 at once ([`eos_pipeline`], which `tests/transactions.rs` also runs
//! with a subset of the faults).

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_broker::{Action, Chaos, Cluster, ErrorScope, Times};
use kafka_client::consumer::BoxFuture;
use kafka_client::{Consumer, ConsumerConfig, Error, Producer, ProducerConfig, RebalanceListener, TopicPartition};
use kafka_protocol::{ApiKey, ErrorCode};

use crate::checker::{Checker, Figures};
use crate::ReadRecord;

mod pipeline;
mod txn;

pub use pipeline::{eos_pipeline, PipelineFaults};

/// One row of RELIABILITY.md's scenario table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Connection dropped mid-produce, idempotent, 5 in flight.
    R1,
    /// Partition leader moves during produce and fetch.
    R2,
    /// Retriable errors injected on Produce.
    R3,
    /// Response lost after the broker appended, then retry.
    R4,
    /// Broker forgets producer state; OUT_OF_ORDER_SEQUENCE_NUMBER.
    R5,
    /// Message timeout while queued vs while in flight.
    R6,
    /// Transaction and group coordinators move mid-transaction (needs transactions).
    R7,
    /// Consumer killed (no LeaveGroup) and added during consumption.
    R8,
    /// Every third transaction aborted, read_committed consumer (needs transactions).
    R9,
    /// Zombie producer with the same transactional.id (needs transactions).
    R10,
    /// Bundled broker restarted (log kept).
    R11,
    /// Topic missing from metadata for a while.
    R12,
    /// EndTxn delayed past the next transaction's start (needs transactions).
    R13,
    /// R1 + R2 + R7 + R8 together, long soak (needs transactions).
    R14,
    /// All brokers down, then back.
    R15,
    /// Latency above request.timeout.ms on one broker.
    R16,
    /// OffsetCommit/Heartbeat answered REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION,
    /// UNKNOWN_MEMBER_ID.
    R17,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 17] = [
        Scenario::R1,
        Scenario::R2,
        Scenario::R3,
        Scenario::R4,
        Scenario::R5,
        Scenario::R6,
        Scenario::R7,
        Scenario::R8,
        Scenario::R9,
        Scenario::R10,
        Scenario::R11,
        Scenario::R12,
        Scenario::R13,
        Scenario::R14,
        Scenario::R15,
        Scenario::R16,
        Scenario::R17,
    ];

    /// The scenario named `name` ("R1", "r1").
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.to_string().eq_ignore_ascii_case(name))
    }

    /// The fault, as RELIABILITY.md words it.
    pub fn fault(self) -> &'static str {
        match self {
            Scenario::R1 => "connection dropped mid-produce, idempotent, 5 in flight",
            Scenario::R2 => "partition leader moves during produce and fetch",
            Scenario::R3 => "retriable errors injected on Produce",
            Scenario::R4 => "response lost after the broker appended, then retry",
            Scenario::R5 => "broker forgets producer state, OUT_OF_ORDER_SEQUENCE_NUMBER",
            Scenario::R6 => "message timeout while queued vs while in flight",
            Scenario::R7 => "transaction and group coordinators move mid-transaction / mid-commit",
            Scenario::R8 => "consumer killed (no LeaveGroup) and added during consumption",
            Scenario::R9 => "every third transaction aborted, read_committed consumer",
            Scenario::R10 => "zombie producer with the same transactional.id",
            Scenario::R11 => "bundled broker restarted (log kept)",
            Scenario::R12 => "topic missing from metadata for a while",
            Scenario::R13 => "EndTxn delayed past the next transaction's start",
            Scenario::R14 => "R1 + R2 + R7 + R8 together, long soak",
            Scenario::R15 => "all brokers down, then back",
            Scenario::R16 => "latency above request.timeout.ms on one broker",
            Scenario::R17 => {
                "OffsetCommit/Heartbeat answered REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID"
            }
        }
    }

    /// Whether the scenario uses client-side transactions.
    pub fn needs_transactions(self) -> bool {
        matches!(self, Scenario::R7 | Scenario::R9 | Scenario::R10 | Scenario::R13 | Scenario::R14)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How big a run is and how its faults are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Records to produce.
    pub records: u64,
    /// The seed of every random choice (fault placement, chaos schedule).
    pub seed: u64,
}

/// Why a scenario could not run to its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The scenario needs something this build does not have.
    Unsupported(&'static str),
    /// The run itself failed (the cluster, a client call, a timeout).
    Failed(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Unsupported(why) => write!(f, "not supported yet: {why}"),
            RunError::Failed(why) => write!(f, "run failed: {why}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<String> for RunError {
    fn from(s: String) -> Self {
        RunError::Failed(s)
    }
}

fn failed<E: fmt::Display>(what: &'static str) -> impl Fn(E) -> RunError {
    move |e| RunError::Failed(format!("{what}: {e}"))
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The scenario.
    pub scenario: Scenario,
    /// Its parameters.
    pub params: Params,
    /// The checker's figures.
    pub figures: Figures,
    /// The scenario's own invariants: (what, held, detail).
    pub extra: Vec<(&'static str, bool, String)>,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Report {
    /// Whether every invariant holds: the checker's (lost, duplicates, reordered, aborted
    /// reads, ... all zero) and the scenario's own.
    ///
    /// # Errors
    /// The first broken invariant, with the figures.
    pub fn check(&self) -> Result<(), String> {
        self.figures.check_clean().map_err(|e| format!("{} (seed {}): {e}", self.scenario, self.params.seed))?;
        for (what, held, detail) in &self.extra {
            if !held {
                return Err(format!(
                    "{} (seed {}): {what} does not hold: {detail}\n{}",
                    self.scenario, self.params.seed, self.figures
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} (records {}, seed {}, {:.1} s)",
            self.scenario,
            self.scenario.fault(),
            self.params.records,
            self.params.seed,
            self.elapsed.as_secs_f64()
        )?;
        write!(f, "{}", self.figures)?;
        for (what, held, detail) in &self.extra {
            writeln!(f, "  {}: {what} ({detail})", if *held { "ok" } else { "BROKEN" })?;
        }
        Ok(())
    }
}

/// A tiny seeded generator (SplitMix64), so a seed means the same choices everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Runs one scenario.
///
/// # Errors
/// [`RunError::Failed`] when the run could not finish (a report with broken invariants is
/// still `Ok`: check it with [`Report::check`]).
pub async fn run(scenario: Scenario, params: Params) -> Result<Report, RunError> {
    let started = Instant::now();
    let (figures, extra) = match scenario {
        Scenario::R1 => r1_dropped_connections(params).await?,
        Scenario::R2 => r2_leader_moves(params).await?,
        Scenario::R3 => r3_retriable_errors(params).await?,
        Scenario::R4 => r4_lost_responses(params).await?,
        Scenario::R5 => r5_sequence_errors(params).await?,
        Scenario::R6 => r6_timeouts(params).await?,
        Scenario::R8 => r8_churn(params).await?,
        Scenario::R11 => r11_restarts(params).await?,
        Scenario::R12 => r12_topic_missing(params).await?,
        Scenario::R15 => r15_all_down(params).await?,
        Scenario::R16 => r16_latency(params).await?,
        Scenario::R17 => r17_group_errors(params).await?,
        Scenario::R7 => txn::r7_coordinator_moves(params).await?,
        Scenario::R9 => txn::r9_every_third_aborted(params).await?,
        Scenario::R10 => txn::r10_zombie(params).await?,
        Scenario::R13 => txn::r13_end_txn_delayed(params).await?,
        Scenario::R14 => eos_pipeline(params, PipelineFaults::ALL).await?,
    };
    Ok(Report { scenario, params, figures, extra, elapsed: started.elapsed() })
}

type Extra = Vec<(&'static str, bool, String)>;

const TOPIC: &str = "reliability";
const PAD: usize = 24;

async fn cluster(brokers: usize) -> Result<Cluster, RunError> {
    Cluster::builder()
        .brokers(brokers)
        .auto_create_topics(false)
        .broker_config("group.min.session.timeout.ms", "1000")
        .start()
        .await
        .map_err(failed("starting the cluster"))
}

fn producer_config(cluster: &Cluster) -> ProducerConfig {
    ProducerConfig::new(&cluster.bootstrap_servers())
        .linger(Duration::from_millis(1))
        .retry_backoff(Duration::from_millis(10))
}

fn all_acked(f: &Figures) -> (&'static str, bool, String) {
    ("every record acknowledged (no fatal error)", f.acked == f.sent, format!("{} of {}", f.acked, f.sent))
}

/// Sends `count` values of a new checker producer, calling `between(done)` after every
/// `every` records, then flushes and records every outcome.
///
/// # Errors
/// A send that failed (a scenario that expects failed sends records them itself).
pub async fn produce<F, Fut>(
    checker: &Checker,
    producer: &Producer,
    count: u64,
    every: u64,
    mut between: F,
) -> Result<(), RunError>
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), RunError>>,
{
    let tag = checker.new_producer();
    let mut pending = Vec::new();
    for n in 1..=count {
        pending.push(checker.send(producer, tag, None, None).await.map_err(failed("send"))?);
        if n % every.max(1) == 0 {
            between(n).await?;
        }
        if pending.len() >= 20_000 {
            checker.settle(std::mem::take(&mut pending)).await;
        }
    }
    producer.flush().await.map_err(failed("flush"))?;
    checker.settle(pending).await;
    Ok(())
}

/// Reads the log back and computes the figures.
async fn finish(checker: &Checker, cluster: &Cluster) -> Result<(Figures, Vec<Vec<ReadRecord>>), RunError> {
    let log = checker.read_back(&cluster.bootstrap_servers()).await?;
    Ok((checker.figures(&log), log))
}

/// A consumer assigned every partition of the checker's topic (no group), recording what it
/// receives, until stopped.
struct Tail {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Tail {
    /// `read_committed`: the consumer's isolation level (else read_uncommitted).
    fn start(cluster: &Cluster, checker: &Arc<Checker>, read_committed: bool) -> Result<Tail, RunError> {
        let isolation = if read_committed { "read_committed" } else { "read_uncommitted" };
        let config = ConsumerConfig::new(&cluster.bootstrap_servers())
            .set("auto.offset.reset", "earliest")
            .and_then(|c| c.set("isolation.level", isolation))
            .and_then(|c| c.set("fetch.max.wait.ms", "50"))
            .map_err(failed("consumer config"))?;
        let consumer = Consumer::new(config).map_err(failed("consumer"))?;
        consumer
            .assign((0..checker.partitions()).map(|p| TopicPartition::new(checker.topic(), p)))
            .map_err(failed("assign"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, c) = (stop.clone(), checker.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)).await {
                    Ok(batch) => {
                        for r in batch {
                            c.consumed(r.partition(), r.offset(), r.value());
                        }
                    }
                    Err(e) if e.is_retriable() => {}
                    Err(e) => return Err(format!("poll: {e}")),
                }
            }
            consumer.close().await.map_err(|e| e.to_string())
        });
        Ok(Tail { stop, task })
    }

    /// Waits until the consumer received `distinct` values (or `timeout`), then stops it.
    async fn finish(self, checker: &Checker, distinct: usize, timeout: Duration) -> Result<(), RunError> {
        let deadline = Instant::now() + timeout;
        while checker.consumed_distinct() < distinct && Instant::now() < deadline && !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.map_err(failed("consumer task"))?.map_err(RunError::Failed)
    }
}

/// R1: each Produce request is, with probability 2%, either dropped before the broker handles
/// it or handled and its response dropped (the client cannot know which), drawn from the seed.
async fn r1_dropped_connections(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    let faults = Arc::new(AtomicU64::new(0));
    let (counter, mut rng) = (faults.clone(), Rng::new(p.seed));
    cluster
        .intercept(ApiKey::Produce, Times::Always, move |_| {
            let x = rng.next_f64();
            let action = if x < 0.01 {
                Action::DropConnection
            } else if x < 0.02 {
                Action::DropResponse
            } else {
                return Action::Pass;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            action
        })
        .await
        .map_err(failed("intercept"))?;
    let producer = Producer::new(producer_config(&cluster).max_in_flight(5)).map_err(failed("producer"))?;
    produce(&checker, &producer, p.records, u64::MAX, |_| async { Ok(()) }).await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(faults.load(Ordering::Relaxed));
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![all_acked(&f), ("faults were injected", f.faults_injected > 0, f.faults_injected.to_string())];
    Ok((f, extra))
}

/// R2: leadership of partitions moves (seeded chaos on Produce and Fetch requests, plus a move
/// every records/20) while a consumer reads every partition.
async fn r2_leader_moves(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 6, PAD));
    cluster
        .set_chaos(Some(Chaos {
            seed: p.seed,
            apis: vec![ApiKey::Produce, ApiKey::Fetch],
            move_leader: 0.003,
            ..Default::default()
        }))
        .await
        .map_err(failed("chaos"))?;
    let tail = Tail::start(&cluster, &checker, false)?;
    let producer = Producer::new(producer_config(&cluster)).map_err(failed("producer"))?;
    let mut rng = Rng::new(p.seed ^ 2);
    let moves = AtomicU64::new(0);
    let c = &cluster;
    produce(&checker, &producer, p.records, (p.records / 20).max(1), |_| {
        let partition = rng.below(6) as i32;
        let moves = &moves;
        async move {
            let stats = c.partition_stats(TOPIC, partition).await.map_err(failed("stats"))?;
            c.set_leader(TOPIC, partition, Some(stats.leader % 3 + 1)).await.map_err(failed("set leader"))?;
            moves.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    })
    .await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    tail.finish(&checker, p.records as usize, Duration::from_secs(60)).await?;
    let chaos = cluster.chaos_log().await.map_err(failed("chaos log"))?.len() as u64;
    cluster.set_chaos(None).await.map_err(failed("chaos"))?;
    checker.add_faults(chaos + moves.load(Ordering::Relaxed));
    let (f, log) = finish(&checker, &cluster).await?;
    let gaps = checker.consumer_gaps(&log);
    cluster.shutdown().await;
    let extra = vec![
        all_acked(&f),
        ("consumer resumes at the right offset (no gap, no repeat)", gaps == 0, format!("{gaps} partitions differ")),
        ("every acked record consumed", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
    ];
    Ok((f, extra))
}

/// R3: a seeded 3% of Produce requests answered with one of NOT_LEADER_OR_FOLLOWER,
/// REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
/// KAFKA_STORAGE_ERROR.
async fn r3_retriable_errors(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    cluster
        .set_chaos(Some(Chaos {
            seed: p.seed,
            apis: vec![ApiKey::Produce],
            inject_error: 0.03,
            errors: vec![
                ErrorCode::NotLeaderOrFollower,
                ErrorCode::RequestTimedOut,
                ErrorCode::NotEnoughReplicas,
                ErrorCode::NotEnoughReplicasAfterAppend,
                ErrorCode::KafkaStorageError,
            ],
            ..Default::default()
        }))
        .await
        .map_err(failed("chaos"))?;
    let producer = Producer::new(producer_config(&cluster)).map_err(failed("producer"))?;
    produce(&checker, &producer, p.records, u64::MAX, |_| async { Ok(()) }).await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let chaos = cluster.chaos_log().await.map_err(failed("chaos log"))?;
    cluster.set_chaos(None).await.map_err(failed("chaos"))?;
    checker.add_faults(chaos.len() as u64);
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    Ok((f.clone(), vec![all_acked(&f), ("faults were injected", !chaos.is_empty(), chaos.len().to_string())]))
}

/// R4: a seeded 5% of Produce requests are handled and their response lost (the connection
/// closes): every retry must be answered as a duplicate, with the first append's offset.
async fn r4_lost_responses(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    let faults = Arc::new(AtomicU64::new(0));
    let (counter, mut rng) = (faults.clone(), Rng::new(p.seed));
    cluster
        .intercept(ApiKey::Produce, Times::Always, move |_| {
            if rng.next_f64() < 0.05 {
                counter.fetch_add(1, Ordering::Relaxed);
                Action::DropResponse
            } else {
                Action::Pass
            }
        })
        .await
        .map_err(failed("intercept"))?;
    let producer = Producer::new(producer_config(&cluster)).map_err(failed("producer"))?;
    produce(&checker, &producer, p.records, u64::MAX, |_| async { Ok(()) }).await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(faults.load(Ordering::Relaxed));
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        all_acked(&f),
        ("responses were lost", f.faults_injected > 0, f.faults_injected.to_string()),
        (
            "duplicates answered as success at the first offset",
            f.offset_mismatches == 0,
            format!("{} offset mismatches", f.offset_mismatches),
        ),
    ];
    Ok((f, extra))
}

/// R5: every records/6, the broker forgets every producer's state (the next batch gets
/// UNKNOWN_PRODUCER_ID) or answers one partition OUT_OF_ORDER_SEQUENCE_NUMBER; the producer
/// bumps its epoch (no transaction) and loses nothing.
async fn r5_sequence_errors(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(1).await?;
    cluster.create_topic(TOPIC, 3, 1).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 3, PAD);
    let producer =
        Producer::new(producer_config(&cluster).retry_backoff(Duration::from_millis(5))).map_err(failed("producer"))?;
    let mut rng = Rng::new(p.seed);
    let c = &cluster;
    let ch = &checker;
    produce(&checker, &producer, p.records, (p.records / 6).max(1), |_| {
        let forget = rng.below(2) == 0;
        let partition = rng.below(3) as i32;
        async move {
            if forget {
                c.forget_producer_state().await.map_err(failed("forget"))?;
            } else {
                c.push_errors(
                    ApiKey::Produce,
                    ErrorScope::Partition(TOPIC.into(), partition),
                    [ErrorCode::OutOfOrderSequenceNumber],
                )
                .await
                .map_err(failed("push errors"))?;
            }
            ch.add_faults(1);
            Ok(())
        }
    })
    .await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let (f, log) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let max_epoch = log.iter().flatten().map(|r| r.producer_epoch).max().unwrap_or(0);
    let extra = vec![
        all_acked(&f),
        ("the epoch was bumped (outside a transaction)", max_epoch >= 1, format!("last epoch {max_epoch}")),
    ];
    Ok((f, extra))
}

/// R6: records that time out (delivery.timeout.ms) while queued, because the only broker is
/// down, must be reported not persisted and never appear; records that time out while in
/// flight (the broker appends but answers after request.timeout.ms) are possibly persisted.
/// Records sent before and after are delivered.
async fn r6_timeouts(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(1).await?;
    cluster.create_topic(TOPIC, 2, 1).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 2, PAD);
    let config = producer_config(&cluster)
        .linger(Duration::from_millis(0))
        .request_timeout(Duration::from_millis(400))
        .delivery_timeout(Duration::from_millis(900))
        .set("reconnect.backoff.max.ms", "100")
        .map_err(failed("config"))?;
    let producer = Producer::new(config).map_err(failed("producer"))?;
    let tag = checker.new_producer();
    let phase = (p.records / 4).max(1);
    let send_phase = |n: u64| {
        let (checker, producer) = (&checker, &producer);
        async move {
            let mut pending = Vec::new();
            for _ in 0..n {
                pending.push(checker.send(producer, tag, None, None).await.map_err(failed("send"))?);
            }
            checker.settle(pending).await;
            Ok::<_, RunError>(())
        }
    };
    send_phase(phase).await?;
    // In flight: every answer comes after request.timeout.ms.
    cluster.set_latency(1, Duration::from_millis(1_500)).await.map_err(failed("latency"))?;
    send_phase(100).await?;
    cluster.set_latency(1, Duration::ZERO).await.map_err(failed("latency"))?;
    // Queued: nothing can be sent.
    cluster.stop_broker(1).await.map_err(failed("stop"))?;
    send_phase(100).await?;
    cluster.start_broker(1).await.map_err(failed("start"))?;
    checker.add_faults(2);
    send_phase(p.records.saturating_sub(phase).max(1)).await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        ("queued records timed out as not persisted", f.not_persisted >= 100, f.not_persisted.to_string()),
        (
            "in-flight records timed out as possibly persisted",
            f.possibly_persisted > 0,
            f.possibly_persisted.to_string(),
        ),
        (
            "queued-timeout records never appear in the log",
            f.not_persisted_in_log == 0,
            f.not_persisted_in_log.to_string(),
        ),
        (
            "everything else acknowledged",
            f.acked + f.not_persisted + f.possibly_persisted == f.sent && f.acked as u64 >= p.records,
            format!("{} acked", f.acked),
        ),
    ];
    Ok((f, extra))
}

/// Counts assignments a group member receives.
struct CountRebalances(Arc<Checker>);

impl RebalanceListener for CountRebalances {
    fn on_partitions_assigned<'a>(&'a self, _c: &'a Consumer, _p: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        self.0.add_rebalance();
        Box::pin(async {})
    }
}

fn member_config(cluster: &Cluster, group: &str, n: usize) -> Result<ConsumerConfig, RunError> {
    ConsumerConfig::new(&cluster.bootstrap_servers())
        .enable_auto_commit(false)
        .set("group.id", group)
        .and_then(|c| c.set("auto.offset.reset", "earliest"))
        .and_then(|c| c.set("heartbeat.interval.ms", "100"))
        .and_then(|c| c.set("session.timeout.ms", "1500"))
        .and_then(|c| c.set("fetch.max.wait.ms", "100"))
        .and_then(|c| c.set("max.poll.records", "200"))
        .and_then(|c| c.set("client.id", &format!("member-{n}")))
        .map_err(failed("consumer config"))
}

/// A group member that records each poll in the checker, then commits (a failed commit
/// means redelivery, which the checker counts). Aborting its task drops the consumer
/// without LeaveGroup or commit, as a crash would.
fn spawn_member(config: ConsumerConfig, checker: Arc<Checker>) -> tokio::task::JoinHandle<Result<(), String>> {
    tokio::spawn(async move {
        let consumer = Consumer::with_listener(config, CountRebalances(checker.clone())).map_err(|e| e.to_string())?;
        consumer.subscribe([checker.topic()]).map_err(|e| e.to_string())?;
        loop {
            let batch = match consumer.poll(Duration::from_millis(100)).await {
                Ok(b) => b,
                Err(e) if e.is_retriable() || matches!(e, Error::CommitFailed(_)) => continue,
                Err(e) => return Err(format!("poll: {e}")),
            };
            if batch.is_empty() {
                continue;
            }
            for r in &batch {
                checker.consumed(r.partition(), r.offset(), r.value());
            }
            let _ = consumer.commit().await;
        }
    })
}

/// R8: group members are killed (no LeaveGroup) or added every 700 ms while records flow;
/// each commits after processing. Every acknowledged record must be processed at least once
/// (redeliveries are counted, not failures: there is no transaction).
async fn r8_churn(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 12, 1).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 12, PAD));
    let producing = {
        let (checker, config) = (checker.clone(), producer_config(&cluster));
        let records = p.records;
        tokio::spawn(async move {
            let producer = Producer::new(config).map_err(failed("producer"))?;
            // Paced so that members come and go while records flow.
            let chunk = (records / 20).max(1);
            produce(&checker, &producer, records, chunk, |_| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            })
            .await?;
            producer.close(Duration::from_secs(10)).await.map_err(failed("close"))
        })
    };
    let mut members = Vec::new();
    for n in 0..5 {
        members.push(spawn_member(member_config(&cluster, "g-churn", n)?, checker.clone()));
    }
    let mut spawned = 5;
    let mut rng = Rng::new(p.seed);
    let (mut kills, mut adds) = (0u64, 0u64);
    let started = Instant::now();
    let mut round = 0u64;
    while !producing.is_finished() || checker.consumed_distinct() < p.records as usize {
        if started.elapsed() > Duration::from_secs(600) {
            return Err(RunError::Failed(format!(
                "churn did not finish: {} of {}",
                checker.consumed_distinct(),
                p.records
            )));
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        round += 1;
        if !producing.is_finished() || round % 2 == 1 {
            if round % 2 == 1 && members.len() > 2 {
                let victim = members.remove(rng.below(members.len() as u64) as usize);
                victim.abort();
                let _ = victim.await;
                kills += 1;
            } else if members.len() < 6 {
                members.push(spawn_member(member_config(&cluster, "g-churn", spawned)?, checker.clone()));
                spawned += 1;
                adds += 1;
            }
        }
    }
    producing.await.map_err(failed("producer task"))??;
    for m in members {
        m.abort();
    }
    checker.add_faults(kills + adds);
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        all_acked(&f),
        ("every acked record processed at least once", f.unconsumed == 0, format!("{} unprocessed", f.unconsumed)),
        ("members were killed and added", kills >= 2 && adds >= 1, format!("{kills} killed, {adds} added")),
    ];
    Ok((f, extra))
}

/// R11: brokers restart (their logs kept) one at a time while records flow and a consumer
/// reads, then all three at once.
async fn r11_restarts(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 6, PAD));
    let tail = Tail::start(&cluster, &checker, false)?;
    let producer = Producer::new(producer_config(&cluster)).map_err(failed("producer"))?;
    let mut step = 0i32;
    let (c, ch) = (&cluster, &checker);
    produce(&checker, &producer, p.records, (p.records / 5).max(1), |_| {
        step += 1;
        let s = step;
        async move {
            if s <= 3 {
                c.stop_broker(s).await.map_err(failed("stop"))?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                c.start_broker(s).await.map_err(failed("start"))?;
                ch.add_faults(1);
            } else if s == 4 {
                for b in 1..=3 {
                    c.stop_broker(b).await.map_err(failed("stop"))?;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                for b in 1..=3 {
                    c.start_broker(b).await.map_err(failed("start"))?;
                }
                ch.add_faults(3);
            }
            Ok(())
        }
    })
    .await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    tail.finish(&checker, p.records as usize, Duration::from_secs(60)).await?;
    let (f, log) = finish(&checker, &cluster).await?;
    let gaps = checker.consumer_gaps(&log);
    cluster.shutdown().await;
    let extra = vec![
        all_acked(&f),
        ("every acked record consumed", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
        ("the consumer resumed at the right offsets", gaps == 0, format!("{gaps} partitions differ")),
    ];
    Ok((f, extra))
}

/// R12: twice, for 500 ms, Metadata answers leave the topic out (UNKNOWN_TOPIC_OR_PARTITION)
/// while the producer refreshes metadata every 50 ms (metadata.max.age.ms); its sequence state
/// must survive: no epoch bump, nothing lost or duplicated.
async fn r12_topic_missing(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    let config = producer_config(&cluster).set("metadata.max.age.ms", "50").map_err(failed("config"))?;
    let producer = Producer::new(config).map_err(failed("producer"))?;
    let c = &cluster;
    let ch = &checker;
    produce(&checker, &producer, p.records, (p.records / 3).max(1), |n| {
        async move {
            if n >= p.records {
                return Ok(());
            }
            let hidden = Arc::new(AtomicU64::new(0));
            let counter = hidden.clone();
            let id = c
                .intercept(ApiKey::Metadata, Times::Always, move |req| {
                    // A request naming the topic, or asking for every topic.
                    let names_topic = matches!(req.body, kafka_protocol::messages::RequestBody::Metadata(m)
                        if m.topics.as_ref().map_or(true, |ts| ts.iter().any(|t| t.name.as_deref() == Some(TOPIC))));
                    if names_topic {
                        counter.fetch_add(1, Ordering::Relaxed);
                        Action::Error(ErrorCode::UnknownTopicOrPartition)
                    } else {
                        Action::Pass
                    }
                })
                .await
                .map_err(failed("intercept"))?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            c.remove_intercept(id).await.map_err(failed("remove intercept"))?;
            ch.add_faults(hidden.load(Ordering::Relaxed));
            Ok(())
        }
    })
    .await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let (f, log) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let max_epoch = log.iter().flatten().map(|r| r.producer_epoch).max().unwrap_or(0);
    let extra = vec![
        all_acked(&f),
        ("the topic was missing from metadata answers", f.faults_injected > 0, f.faults_injected.to_string()),
        ("sequence state survives (no epoch bump)", max_epoch == 0, format!("last epoch {max_epoch}")),
    ];
    Ok((f, extra))
}

/// R15: every broker stops for a second in the middle of the run; records wait, then are
/// delivered. Recovery time: from the restart to the first acknowledgement after it.
async fn r15_all_down(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    let config = producer_config(&cluster).set("reconnect.backoff.max.ms", "200").map_err(failed("config"))?;
    let producer = Producer::new(config).map_err(failed("producer"))?;
    let tag = checker.new_producer();
    let half = p.records / 2;
    let mut pending = Vec::new();
    for _ in 0..half {
        pending.push(checker.send(&producer, tag, None, None).await.map_err(failed("send"))?);
    }
    for b in 1..=3 {
        cluster.stop_broker(b).await.map_err(failed("stop"))?;
    }
    checker.add_faults(3);
    // Records sent while every broker is down wait in the producer.
    let mut waiting = Vec::new();
    for _ in 0..(p.records - half).min(1_000) {
        waiting.push(checker.send(&producer, tag, None, None).await.map_err(failed("send"))?);
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let back = Instant::now();
    for b in 1..=3 {
        cluster.start_broker(b).await.map_err(failed("start"))?;
    }
    if let Some((id, f)) = waiting.pop() {
        let r = f.await;
        checker.recovered_in(back.elapsed());
        checker.delivered(id, &r);
    }
    checker.settle(waiting).await;
    for _ in 0..(p.records - half).saturating_sub(1_000) {
        pending.push(checker.send(&producer, tag, None, None).await.map_err(failed("send"))?);
    }
    producer.flush().await.map_err(failed("flush"))?;
    checker.settle(pending).await;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    Ok((f.clone(), vec![all_acked(&f)]))
}

/// R16: for the middle third of the run, broker 1 answers after 1.5 x request.timeout.ms;
/// requests to it time out and are retried on new connections. The broker handled each
/// timed-out request, so every retry must be recognised as a duplicate.
async fn r16_latency(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Checker::new(TOPIC, 6, PAD);
    let config = producer_config(&cluster).request_timeout(Duration::from_millis(400));
    let producer = Producer::new(config).map_err(failed("producer"))?;
    let third = (p.records / 3).max(1);
    let window = Mutex::new((None::<Instant>, None::<Instant>));
    let (c, w) = (&cluster, &window);
    produce(&checker, &producer, p.records, third, |n| async move {
        if n == third {
            c.set_latency(1, Duration::from_millis(600)).await.map_err(failed("latency"))?;
            w.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(Instant::now());
        } else if n == 2 * third {
            // Let the slow broker's timeouts play out before healing.
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            c.set_latency(1, Duration::ZERO).await.map_err(failed("latency"))?;
            w.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(Instant::now());
        }
        Ok(())
    })
    .await?;
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    let (from, to) = *window.lock().unwrap_or_else(|e| e.into_inner());
    let slow = match (from, to) {
        (Some(a), Some(b)) => cluster
            .request_log()
            .await
            .map_err(failed("request log"))?
            .iter()
            .filter(|r| r.broker == 1 && r.api_key == ApiKey::Produce && r.at >= a && r.at <= b)
            .count() as u64,
        _ => 0,
    };
    checker.add_faults(slow);
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![all_acked(&f), ("requests met the latency", slow > 0, format!("{slow} slow Produce requests"))];
    Ok((f, extra))
}

/// R17: OffsetCommit and Heartbeat answers carry REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION or
/// UNKNOWN_MEMBER_ID (seeded, in bursts) while 3 members consume and commit after
/// processing. A watcher reads the group's committed offsets throughout: they must never be
/// ahead of what members processed. Every acked record is processed at least once.
async fn r17_group_errors(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    cluster.create_topic(TOPIC, 6, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 6, PAD));
    let producing = {
        let (checker, config) = (checker.clone(), producer_config(&cluster));
        let records = p.records;
        tokio::spawn(async move {
            let producer = Producer::new(config).map_err(failed("producer"))?;
            produce(&checker, &producer, records, (records / 10).max(1), |_| async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(())
            })
            .await?;
            producer.close(Duration::from_secs(10)).await.map_err(failed("close"))
        })
    };
    let mut members = Vec::new();
    for n in 0..3 {
        members.push(spawn_member(member_config(&cluster, "g-errors", n)?, checker.clone()));
    }
    let watcher = Consumer::new(member_config(&cluster, "g-errors", 99)?).map_err(failed("watcher"))?;
    let partitions: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new(TOPIC, p)).collect();
    let codes = [ErrorCode::RebalanceInProgress, ErrorCode::IllegalGeneration, ErrorCode::UnknownMemberId];
    let mut rng = Rng::new(p.seed);
    let started = Instant::now();
    let mut ahead = Vec::new();
    let mut checks = 0u64;
    while !producing.is_finished() || checker.consumed_distinct() < p.records as usize {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(RunError::Failed(format!(
                "consumption did not finish: {} of {}",
                checker.consumed_distinct(),
                p.records
            )));
        }
        let api = if rng.below(2) == 0 { ApiKey::OffsetCommit } else { ApiKey::Heartbeat };
        let code = codes.get(rng.below(3) as usize).copied().unwrap_or(ErrorCode::RebalanceInProgress);
        cluster.push_errors(api, ErrorScope::Cluster, [code]).await.map_err(failed("push"))?;
        checker.add_faults(1);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Committed offsets, then what was processed: a commit is sent only after its
        // records were recorded, so committed <= highest processed offset + 1 always.
        let committed = tokio::time::timeout(Duration::from_secs(5), watcher.committed(partitions.clone())).await;
        let committed = committed.map_err(|_| RunError::Failed("OffsetFetch took over 5 s".into()))?;
        let processed = checker.max_consumed_offsets();
        if let Ok(committed) = committed {
            checks += 1;
            for (tp, o) in committed {
                let Some(o) = o else { continue };
                let done = processed.get(&tp.partition).map_or(0, |m| m + 1);
                if o.offset > done {
                    ahead.push(format!("{tp}: committed {} > processed {done}", o.offset));
                }
            }
        }
    }
    producing.await.map_err(failed("producer task"))??;
    for m in members {
        m.abort();
    }
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        all_acked(&f),
        ("committed offsets never ahead of processing", ahead.is_empty(), format!("{checks} checks; {ahead:?}")),
        ("every acked record processed at least once", f.unconsumed == 0, format!("{} unprocessed", f.unconsumed)),
    ];
    Ok((f, extra))
}
