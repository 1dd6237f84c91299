//! The exactly-once pipeline (consume `eos-in`, produce `eos-out`, offsets in the
//! transaction) under a chosen set of faults: R14 runs it with all of R1, R2, R7 and R8 at
//! once; `tests/transactions.rs` runs it with instance kills and coordinator moves.
//!
//! An idempotent producer writes the input (a checker's values) while the pipeline runs.
//! Three instances in one group (a fourth joins midway when instances are killed) read it
//! read_committed and write each record to the same partition of the output, in a
//! transaction per poll, with a second checker's value whose payload is the input value: so
//! the output checker knows every output record's transaction and its outcome (aborted reads,
//! lost, duplicates and order of the output), and the payload names the input record
//! (exactly once: every acknowledged input exactly once in the committed output, in input
//! order per partition).
//!
//! Faults land at every tenth of the input committed, however fast the machine is: the
//! instances stop starting transactions once `allowed` records are committed; then they are
//! let go again and, a seeded 0 to 40 ms later (mid-transaction), the next faults strike.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_broker::{Action, Chaos, Times};
use kafka_client::{Consumer, ConsumerConfig, Error, OffsetAndMetadata, Producer, TopicPartition};
use kafka_protocol::ApiKey;

use super::{cluster, failed, produce, producer_config, CountRebalances, Extra, Params, Rng, RunError, Tail, PAD};
use crate::checker::{counter_of, Checker, Figures};
use crate::seq_of;
use crate::txn::{read_all, txn_config};

const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos-group";
const PARTITIONS: i32 = 6;

/// Which faults a pipeline run injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineFaults {
    /// R1: a seeded 2% of Produce requests closes the connection unhandled and 2% loses the
    /// response after the append (input and output producers alike).
    pub drop_connections: bool,
    /// R2: partition leaders move (seeded chaos on Produce and Fetch, and a move of an input
    /// and an output partition at every step).
    pub move_leaders: bool,
    /// R7: the transaction coordinator of an instance and the group coordinator move at every
    /// other step.
    pub move_coordinators: bool,
    /// R8: an instance is killed (no LeaveGroup, no abort: a crash) and started again at
    /// every other step; a fourth instance joins midway.
    pub kill_instances: bool,
}

impl PipelineFaults {
    /// Every fault (R14).
    pub const ALL: PipelineFaults =
        PipelineFaults { drop_connections: true, move_leaders: true, move_coordinators: true, kill_instances: true };
}

/// Runs the pipeline over `p.records` input records with `faults`; the figures are the input
/// checker's, with the output's lost, duplicates, reordered and aborted reads and the
/// exactly-once check's added (the output checker's own figures are an extra row).
///
/// # Errors
/// [`RunError::Failed`] when the run could not finish (the pipeline stalled for
/// 120 s + 2 ms a record, a cluster or client call failed).
pub async fn eos_pipeline(p: Params, faults: PipelineFaults) -> Result<(Figures, Extra), RunError> {
    let cluster = Arc::new(cluster(3).await?);
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(INPUT, PARTITIONS, 3).await.map_err(failed("create topic"))?;
    cluster.create_topic(OUTPUT, PARTITIONS, 3).await.map_err(failed("create topic"))?;
    let input = Arc::new(Checker::new(INPUT, PARTITIONS, PAD));
    let output = Arc::new(Checker::new(OUTPUT, PARTITIONS, 0));
    let dropped = Arc::new(AtomicU64::new(0));
    if faults.drop_connections {
        let (counter, mut rng) = (dropped.clone(), Rng::new(p.seed ^ 1));
        cluster
            .intercept(ApiKey::Produce, Times::Always, move |_| {
                let x = rng.next_f64();
                let action = if x < 0.02 {
                    Action::DropConnection
                } else if x < 0.04 {
                    Action::DropResponse
                } else {
                    return Action::Pass;
                };
                counter.fetch_add(1, Ordering::Relaxed);
                action
            })
            .await
            .map_err(failed("intercept"))?;
    }
    if faults.move_leaders {
        let chaos = Chaos {
            seed: p.seed,
            apis: vec![ApiKey::Produce, ApiKey::Fetch],
            move_leader: 0.002,
            ..Default::default()
        };
        cluster.set_chaos(Some(chaos)).await.map_err(failed("chaos"))?;
    }
    let tail = Tail::start(&cluster, &output, true)?;
    let producing = {
        let (checker, config) = (input.clone(), producer_config(&cluster).max_in_flight(5));
        let records = p.records;
        tokio::spawn(async move {
            let producer = Producer::new(config).map_err(failed("producer"))?;
            produce(&checker, &producer, records, u64::MAX, |_| async { Ok(()) }).await?;
            producer.close(Duration::from_secs(10)).await.map_err(failed("close"))
        })
    };

    let shared = Arc::new(Shared {
        bootstrap: bootstrap.clone(),
        input: input.clone(),
        output: output.clone(),
        processed: AtomicU64::new(0),
        allowed: AtomicU64::new((p.records / 10).max(1)),
    });
    let step = (p.records / 10).max(1);
    let mut instances: Vec<tokio::task::JoinHandle<()>> = (0..3).map(|i| spawn(&shared, i, 0)).collect();
    let mut generation = 0u32;
    let (mut kills, mut adds, mut coordinator_moves, mut leader_moves, mut restarts) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut rng = Rng::new(p.seed ^ 14);
    let started = Instant::now();
    let limit = Duration::from_secs(120) + Duration::from_millis(2 * p.records);
    let watcher = Consumer::new(ConsumerConfig::new(&bootstrap).set("group.id", GROUP).map_err(failed("config"))?)
        .map_err(failed("watcher"))?;
    let inputs: Vec<TopicPartition> = (0..PARTITIONS).map(|q| TopicPartition::new(INPUT, q)).collect();
    let mut round = 0u32;
    let mut ends: Option<i64> = None;
    loop {
        if ends.is_none() && producing.is_finished() {
            ends = Some(watcher.end_offsets(&inputs).await.map_err(failed("end offsets"))?.values().sum());
        }
        if let Some(total) = ends {
            let committed: i64 = match watcher.committed(inputs.clone()).await {
                Ok(c) => c.values().map(|o| o.as_ref().map_or(0, |o| o.offset)).sum(),
                Err(_) => 0,
            };
            if committed >= total {
                break;
            }
        }
        if started.elapsed() > limit {
            return Err(RunError::Failed(format!(
                "the pipeline did not finish in {limit:?}: {} records in committed transactions",
                shared.processed.load(Ordering::Relaxed)
            )));
        }
        // An instance that gave up (fenced, or a fatal error) is started again.
        for (i, task) in instances.iter_mut().enumerate() {
            if task.is_finished() {
                generation += 1;
                restarts += 1;
                *task = spawn(&shared, i, generation);
            }
        }
        if round >= 9 {
            shared.allowed.store(u64::MAX, Ordering::Release);
        }
        if round >= 9 || shared.processed.load(Ordering::Acquire) < shared.allowed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        round += 1;
        // Let the instances run again, and strike while they are mid-transaction.
        shared.allowed.fetch_add(step, Ordering::AcqRel);
        tokio::time::sleep(Duration::from_millis(rng.below(40))).await;
        if faults.kill_instances && (round % 2 == 1 || !faults.move_coordinators) {
            let i = round as usize % instances.len();
            if let Some(task) = instances.get_mut(i) {
                task.abort();
                let _ = (&mut *task).await;
                generation += 1;
                kills += 1;
                *task = spawn(&shared, i, generation);
            }
            if round == 5 {
                instances.push(spawn(&shared, instances.len(), 0));
                adds += 1;
            }
        }
        if faults.move_coordinators && (round % 2 == 0 || !faults.kill_instances) {
            let id = format!("eos-{}", round as usize % instances.len());
            cluster.move_transaction_coordinator(&id).await.map_err(failed("move transaction coordinator"))?;
            cluster.move_coordinator(GROUP).await.map_err(failed("move group coordinator"))?;
            coordinator_moves += 2;
        }
        if faults.move_leaders {
            for topic in [INPUT, OUTPUT] {
                let q = rng.below(PARTITIONS as u64) as i32;
                let stats = cluster.partition_stats(topic, q).await.map_err(failed("stats"))?;
                cluster.set_leader(topic, q, Some(stats.leader % 3 + 1)).await.map_err(failed("set leader"))?;
                leader_moves += 1;
            }
        }
    }
    for t in &instances {
        t.abort();
    }
    for t in instances {
        let _ = t.await;
    }
    producing.await.map_err(failed("producer task"))??;
    watcher.close().await.map_err(failed("close"))?;
    let chaos = if faults.move_leaders {
        let n = cluster.chaos_log().await.map_err(failed("chaos log"))?.len() as u64;
        cluster.set_chaos(None).await.map_err(failed("chaos"))?;
        n
    } else {
        0
    };
    let produce_requests = cluster
        .request_log()
        .await
        .map_err(failed("request log"))?
        .iter()
        .filter(|r| r.api_key == ApiKey::Produce)
        .count();
    let faults_injected = dropped.load(Ordering::Relaxed) + chaos + kills + adds + coordinator_moves + leader_moves;

    // What read_committed sees of the output: each acknowledged input exactly once, in input
    // order per partition.
    let committed = read_all(&bootstrap, OUTPUT, PARTITIONS, "read_committed").await?;
    tail.finish(&output, committed.len(), Duration::from_secs(60)).await?;
    let mut times: HashMap<u64, u32> = HashMap::new();
    let mut last: HashMap<i32, u64> = HashMap::new();
    let mut eo_reordered = 0usize;
    for r in &committed {
        let Some(id) = r.value().and_then(|v| v.get(8..)).and_then(seq_of) else { continue };
        *times.entry(id).or_insert(0) += 1;
        if last.get(&r.partition()).is_some_and(|l| counter_of(id) < *l) {
            eo_reordered += 1;
        }
        last.insert(r.partition(), counter_of(id));
    }
    let acked = input.acked_ids();
    let eo_lost = acked.iter().filter(|id| !times.contains_key(id)).count();
    let eo_duplicates: usize = times.values().map(|n| (n - 1) as usize).sum();
    let log_in = input.read_back(&bootstrap).await?;
    let log_out = output.read_back(&bootstrap).await?;
    cluster.set_chaos(None).await.map_err(failed("chaos"))?;
    match Arc::try_unwrap(cluster) {
        Ok(c) => c.shutdown().await,
        Err(_) => return Err(RunError::Failed("the cluster is still shared".into())),
    }
    input.add_faults(faults_injected);
    let mut f = input.figures(&log_in);
    let out = output.figures(&log_out);
    f.lost += eo_lost + out.lost;
    f.duplicates += eo_duplicates + out.duplicates;
    f.reordered += eo_reordered + out.reordered;
    f.aborted_reads += out.aborted_reads;
    f.misplaced += out.misplaced;
    f.offset_mismatches += out.offset_mismatches;
    f.consumed = out.consumed;
    f.unconsumed = out.unconsumed;
    let extra = vec![
        (
            "every input record acknowledged",
            f.acked == f.sent && f.sent as u64 == p.records,
            format!("{} of {}", f.acked, p.records),
        ),
        (
            "exactly once: each acknowledged input once in the committed output, in order",
            eo_lost == 0 && eo_duplicates == 0 && eo_reordered == 0,
            format!(
                "{} output records, {eo_lost} missing, {eo_duplicates} twice, {eo_reordered} out of order",
                committed.len()
            ),
        ),
        (
            "output: no aborted read, nothing lost, duplicated or reordered",
            out.aborted_reads == 0 && out.lost == 0 && out.duplicates == 0 && out.reordered == 0,
            format!(
                "{} output sends, {} in the log, {} read_committed, {} aborted reads, {} lost",
                out.sent, out.in_log, out.consumed, out.aborted_reads, out.lost
            ),
        ),
        ("read_committed saw every committed output record", out.unconsumed == 0, format!("{} unconsumed", out.unconsumed)),
        (
            "the faults were injected",
            (!faults.kill_instances || kills >= 3)
                && (!faults.move_coordinators || coordinator_moves >= 4)
                && (!faults.drop_connections || dropped.load(Ordering::Relaxed) > 0)
                && (!faults.move_leaders || leader_moves > 0),
            format!(
                "{kills} kills, {adds} added, {restarts} restarts, {coordinator_moves} coordinator moves, {leader_moves} leader moves, {chaos} chaos faults, {} of {produce_requests} Produce requests dropped",
                dropped.load(Ordering::Relaxed)
            ),
        ),
    ];
    Ok((f, extra))
}

struct Shared {
    bootstrap: String,
    input: Arc<Checker>,
    output: Arc<Checker>,
    /// Input records processed in committed transactions.
    processed: AtomicU64,
    /// Instances start no transaction while `processed` is at or above this.
    allowed: AtomicU64,
}

fn spawn(shared: &Arc<Shared>, instance: usize, generation: u32) -> tokio::task::JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = instance_loop(&shared, instance, generation).await {
            tracing::debug!(instance, generation, error = %e, "pipeline instance stopped");
        }
    })
}

/// One pipeline instance: consume the input in the group, write each record to the same
/// partition of the output, commit the offsets in the transaction, one transaction per poll.
/// Returns when its producer cannot go on (fenced, fatal); the supervisor starts it again.
async fn instance_loop(shared: &Shared, instance: usize, generation: u32) -> Result<(), String> {
    let config = ConsumerConfig::new(&shared.bootstrap)
        .enable_auto_commit(false)
        .set("group.id", GROUP)
        .and_then(|c| c.set("isolation.level", "read_committed"))
        .and_then(|c| c.set("auto.offset.reset", "earliest"))
        .and_then(|c| c.set("session.timeout.ms", "2000"))
        .and_then(|c| c.set("heartbeat.interval.ms", "100"))
        .and_then(|c| c.set("max.poll.records", "200"))
        .and_then(|c| c.set("fetch.max.wait.ms", "50"))
        .and_then(|c| c.set("client.id", &format!("eos-{instance}-{generation}")))
        .map_err(|e| e.to_string())?;
    let consumer = Consumer::with_listener(config, CountRebalances(shared.input.clone())).map_err(|e| e.to_string())?;
    consumer.subscribe([INPUT]).map_err(|e| e.to_string())?;
    let producer =
        Producer::new(txn_config(&shared.bootstrap, &format!("eos-{instance}"))).map_err(|e| e.to_string())?;
    let mut attempts = 0;
    while let Err(e) = producer.init_transactions().await {
        attempts += 1;
        if !e.is_retriable() && !matches!(e, Error::Timeout { .. }) || attempts > 10 {
            return Err(format!("init_transactions: {e}"));
        }
    }
    let tag = shared.output.new_producer();
    loop {
        if shared.processed.load(Ordering::Acquire) >= shared.allowed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let batch = match consumer.poll(Duration::from_millis(100)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(instance, error = %e, "poll failed");
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        producer.begin_transaction().map_err(|e| format!("begin: {e}"))?;
        let txn = shared.output.begin_txn();
        let mut pending = Vec::new();
        let mut offsets = std::collections::BTreeMap::new();
        let mut outcome = Ok(());
        for r in &batch {
            let value = r.value().unwrap_or_default();
            match shared.output.send_payload(&producer, tag, Some(r.partition()), Some(txn), value).await {
                Ok(sent) => pending.push(sent),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            offsets.insert(r.topic_partition(), OffsetAndMetadata::new(r.offset() + 1));
        }
        if outcome.is_ok() {
            outcome = match consumer.group_metadata() {
                Some(g) => match producer.send_offsets_to_transaction(&offsets, &g).await {
                    Ok(()) => producer.commit_transaction().await,
                    Err(e) => Err(e),
                },
                None => Err(Error::TransactionState("no group".into())),
            };
        }
        match outcome {
            Ok(()) => {
                shared.output.end_txn(txn, true);
                shared.processed.fetch_add(batch.len() as u64, Ordering::AcqRel);
                shared.output.settle(pending).await;
            }
            Err(e) => {
                tracing::debug!(instance, error = %e, "transaction failed; aborting and rewinding");
                if let Err(e) = producer.abort_transaction().await {
                    // Fenced or broken: the transaction's outcome is the coordinator's (an
                    // open transaction is aborted when the next instance starts), so the
                    // checker leaves it open; start over as a new instance would.
                    return Err(format!("abort: {e}"));
                }
                shared.output.end_txn(txn, false);
                shared.output.settle(pending).await;
                // Rewind to the committed offsets: the aborted records are processed again.
                // Without the committed offsets the instance cannot rewind: it starts over.
                let assignment = consumer.assignment();
                let committed = consumer.committed(assignment.clone()).await.map_err(|e| format!("committed: {e}"))?;
                for tp in &assignment {
                    let r = match committed.get(tp).cloned().flatten() {
                        Some(o) => consumer.seek(tp, o.offset),
                        None => consumer.seek_to_beginning(std::slice::from_ref(tp)),
                    };
                    r.map_err(|e| format!("seek: {e}"))?;
                }
            }
        }
    }
}
