//! The transactional scenarios R7, R9, R10 and R13: a transactional producer writes
//! transactions of 1 to 50 records (sizes drawn from the seed) while its fault is injected; a
//! read_committed consumer reads along, and the checker knows which transaction every record
//! belongs to and how it ended, so an aborted record handed to the consumer counts as an
//! aborted read and a committed one never handed out as unconsumed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kafka_broker::{Action, Cluster, Times};
use kafka_client::{
    ConsumerConfig, ConsumerGroupMetadata, DeliveryFuture, Error, OffsetAndMetadata, Persistence, Producer,
    TopicPartition,
};
use kafka_protocol::ApiKey;

use super::{cluster, failed, finish, Extra, Params, Rng, RunError, Tail, PAD, TOPIC};
use crate::checker::{Checker, Figures};
use crate::seq_of;
use crate::txn::{read_all, txn_config};

type Pending = Vec<(u64, DeliveryFuture)>;

/// Sends `n` records of producer `tag` in checker transaction `txn`.
async fn send_n(checker: &Checker, producer: &Producer, tag: u16, n: u64, txn: u64) -> Result<Pending, RunError> {
    let mut pending = Vec::new();
    for _ in 0..n {
        pending.push(checker.send(producer, tag, None, Some(txn)).await.map_err(failed("send"))?);
    }
    Ok(pending)
}

/// The records of each transaction a read_committed consumer saw: none (aborted) or all
/// (committed), never some. Returns the number of torn transactions.
fn torn(checker: &Checker, txns: &[(u64, Vec<u64>)]) -> usize {
    let seen = checker.consumed_ids();
    txns.iter()
        .filter(|(_, ids)| {
            let visible = ids.iter().filter(|id| seen.contains(id)).count();
            visible != 0 && visible != ids.len()
        })
        .count()
}

/// Runs `call` while the first `api` request it makes is held at the broker; once the broker
/// has it, `fault` runs, then the request is let through. Returns the call's result and
/// whether the fault ran (it does not if the request never came within 20 s).
async fn hold_during<T, C, F>(cluster: &Cluster, api: ApiKey, call: C, fault: F) -> Result<(T, bool), RunError>
where
    C: Future<Output = T>,
    F: Future<Output = Result<(), RunError>>,
{
    let (release, hold) = kafka_broker::hold();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<()>();
    let mut slot = Some((hold, seen_tx));
    let id = cluster
        .intercept(api, Times::Once, move |_| match slot.take() {
            Some((hold, seen)) => {
                let _ = seen.send(());
                Action::Hold(hold)
            }
            None => Action::Pass,
        })
        .await
        .map_err(failed("intercept"))?;
    let faulting = async move {
        match tokio::time::timeout(Duration::from_secs(20), seen_rx).await {
            Ok(Ok(())) => {
                let r = fault.await;
                release.release();
                r.map(|()| true)
            }
            _ => Ok(false),
        }
    };
    let (out, ran) = tokio::join!(call, faulting);
    cluster.remove_intercept(id).await.map_err(failed("remove intercept"))?;
    Ok((out, ran?))
}

/// R7: the transaction coordinator and the group coordinator move mid-transaction (between
/// two sends), while EndTxn is held at the old coordinator (mid-commit), and while
/// TxnOffsetCommit is held at the old group coordinator. Every transaction commits offsets
/// for an input partition; every seventh is aborted. The group's committed offset must be the
/// last committed transaction's, and read_committed must see exactly the committed records.
pub(super) async fn r7_coordinator_moves(p: Params) -> Result<(Figures, Extra), RunError> {
    const ID: &str = "r7-txn";
    const GROUP: &str = "r7-group";
    let cluster = cluster(3).await?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 3, 3).await.map_err(failed("create topic"))?;
    cluster.create_topic("r7-input", 1, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 3, PAD));
    let tail = Tail::start(&cluster, &checker, true)?;
    let producer = Producer::new(txn_config(&bootstrap, ID)).map_err(failed("producer"))?;
    producer.init_transactions().await.map_err(failed("init_transactions"))?;
    let tag = checker.new_producer();
    let group = ConsumerGroupMetadata::new(GROUP);
    let input = TopicPartition::new("r7-input", 0);
    let mut rng = Rng::new(p.seed);
    let (mut sent, mut t, mut committed_records) = (0u64, 0u64, 0usize);
    let (mut mid_txn, mut mid_commit, mut mid_offsets) = (0u64, 0u64, 0u64);
    let mut last_committed_offset = None;
    let c = &cluster;
    let move_txn = || async move {
        c.move_transaction_coordinator(ID).await.map_err(failed("move transaction coordinator"))?;
        Ok::<_, RunError>(())
    };
    let move_group = || async move {
        c.move_coordinator(GROUP).await.map_err(failed("move group coordinator"))?;
        Ok::<_, RunError>(())
    };
    while sent < p.records {
        let kind = t % 5;
        producer.begin_transaction().map_err(failed("begin"))?;
        let txn = checker.begin_txn();
        let n = (1 + rng.below(50)).min(p.records - sent);
        let mut pending = send_n(&checker, &producer, tag, n / 2, txn).await?;
        if kind == 1 {
            move_txn().await?;
            move_group().await?;
            mid_txn += 1;
        }
        pending.extend(send_n(&checker, &producer, tag, n - n / 2, txn).await?);
        sent += n;
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> =
            [(input.clone(), OffsetAndMetadata::new(t as i64 + 1))].into();
        if kind == 4 {
            let (r, moved) = hold_during(
                &cluster,
                ApiKey::TxnOffsetCommit,
                producer.send_offsets_to_transaction(&offsets, &group),
                move_group(),
            )
            .await?;
            r.map_err(failed("send_offsets_to_transaction"))?;
            mid_offsets += u64::from(moved);
        } else {
            producer.send_offsets_to_transaction(&offsets, &group).await.map_err(failed("send_offsets"))?;
        }
        let abort = t % 7 == 6;
        if abort {
            producer.abort_transaction().await.map_err(failed("abort"))?;
        } else if kind == 3 {
            let (r, moved) = hold_during(&cluster, ApiKey::EndTxn, producer.commit_transaction(), move_txn()).await?;
            r.map_err(failed("commit (coordinator moved mid-commit)"))?;
            mid_commit += u64::from(moved);
        } else {
            producer.commit_transaction().await.map_err(failed("commit"))?;
        }
        checker.end_txn(txn, !abort);
        checker.settle(pending).await;
        if !abort {
            committed_records += n as usize;
            last_committed_offset = Some(t as i64 + 1);
        }
        t += 1;
    }
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(2 * mid_txn + mid_commit + mid_offsets);
    tail.finish(&checker, committed_records, Duration::from_secs(60)).await?;
    let watcher =
        kafka_client::Consumer::new(ConsumerConfig::new(&bootstrap).set("group.id", GROUP).map_err(failed("config"))?)
            .map_err(failed("consumer"))?;
    let committed = watcher.committed([input.clone()]).await.map_err(failed("committed"))?;
    let group_offset = committed.get(&input).cloned().flatten().map(|o| o.offset);
    watcher.close().await.map_err(failed("close"))?;
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        (
            "every record of a committed transaction acknowledged",
            f.acked + f.not_persisted == f.sent && f.possibly_persisted == 0,
            format!("{} acked, {} not persisted (aborted) of {}", f.acked, f.not_persisted, f.sent),
        ),
        ("read_committed saw every committed record", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
        (
            "the group's offset is the last committed transaction's",
            group_offset == last_committed_offset,
            format!("{group_offset:?} vs {last_committed_offset:?}"),
        ),
        (
            "coordinators moved mid-transaction, mid-commit and mid-offset-commit",
            mid_txn > 0 && mid_commit > 0 && mid_offsets > 0,
            format!("{mid_txn} mid-transaction, {mid_commit} mid-commit, {mid_offsets} mid-offset-commit ({t} transactions)"),
        ),
    ];
    Ok((f, extra))
}

/// R9: every third transaction is aborted (after its records were sent; every other one
/// after they were all written), while a read_committed consumer reads along. Then a read_uncommitted consumer
/// reads the topic: it must see every record in the log (the aborted ones too) and no control
/// record.
pub(super) async fn r9_every_third_aborted(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 3, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 3, PAD));
    let tail = Tail::start(&cluster, &checker, true)?;
    let producer = Producer::new(txn_config(&bootstrap, "r9-txn")).map_err(failed("producer"))?;
    producer.init_transactions().await.map_err(failed("init_transactions"))?;
    let tag = checker.new_producer();
    let mut rng = Rng::new(p.seed);
    let (mut sent, mut t, mut committed_records, mut aborted) = (0u64, 0u64, 0usize, 0u64);
    let mut wrong_abort_outcomes = Vec::new();
    while sent < p.records {
        producer.begin_transaction().map_err(failed("begin"))?;
        let txn = checker.begin_txn();
        let n = (1 + rng.below(50)).min(p.records - sent);
        let pending = send_n(&checker, &producer, tag, n, txn).await?;
        sent += n;
        if t % 3 == 2 {
            if t % 6 == 5 {
                // Half the aborted transactions are written first, so the log holds aborted
                // records for the consumers to skip.
                producer.flush().await.map_err(failed("flush"))?;
            }
            producer.abort_transaction().await.map_err(failed("abort"))?;
            checker.end_txn(txn, false);
            aborted += 1;
            // Records already written are acknowledged; the others were failed by the abort.
            for (id, f) in pending {
                let r = f.await;
                if let Err(e) = &r {
                    if !matches!(e.error, Error::TransactionAborted) || e.persistence != Persistence::NotPersisted {
                        wrong_abort_outcomes.push(e.to_string());
                    }
                }
                checker.delivered(id, &r);
            }
        } else {
            producer.commit_transaction().await.map_err(failed("commit"))?;
            checker.end_txn(txn, true);
            checker.settle(pending).await;
            committed_records += n as usize;
        }
        t += 1;
    }
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(aborted);
    tail.finish(&checker, committed_records, Duration::from_secs(60)).await?;
    let (f, _) = finish(&checker, &cluster).await?;
    let uncommitted = read_all(&bootstrap, TOPIC, 3, "read_uncommitted").await?;
    cluster.shutdown().await;
    let foreign = uncommitted.iter().filter(|r| r.value().and_then(seq_of).is_none()).count();
    let extra = vec![
        (
            "committed records acknowledged, aborted ones acknowledged or not persisted",
            f.acked + f.not_persisted == f.sent && f.possibly_persisted == 0,
            format!("{} acked, {} not persisted of {}", f.acked, f.not_persisted, f.sent),
        ),
        (
            "an abort fails the unsent records as TransactionAborted, not persisted",
            wrong_abort_outcomes.is_empty(),
            format!("{:?}", wrong_abort_outcomes.first()),
        ),
        ("read_committed saw every committed record", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
        (
            "read_uncommitted sees the whole log, aborted records included, and no control record",
            uncommitted.len() == f.in_log && uncommitted.len() > committed_records && foreign == 0,
            format!(
                "{} read, {} in the log, {committed_records} committed, {foreign} not ours",
                uncommitted.len(),
                f.in_log
            ),
        ),
    ];
    Ok((f, extra))
}

/// R10: at every fifth of the run the current producer opens a transaction and writes part
/// of it, then a successor with the same transactional.id calls init_transactions: the
/// zombie is fenced and its open transaction aborted. The zombie goes on writing and tries to
/// commit: none of its writes may commit, and its later calls must fail. The successor takes
/// over.
pub(super) async fn r10_zombie(p: Params) -> Result<(Figures, Extra), RunError> {
    const ID: &str = "r10-txn";
    const FENCES: u64 = 4;
    let cluster = cluster(3).await?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 3, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 3, PAD));
    let tail = Tail::start(&cluster, &checker, true)?;
    let mut current = Producer::new(txn_config(&bootstrap, ID)).map_err(failed("producer"))?;
    current.init_transactions().await.map_err(failed("init_transactions"))?;
    let mut tag = checker.new_producer();
    let mut rng = Rng::new(p.seed);
    let every = (p.records / (FENCES + 1)).max(1);
    let (mut sent, mut next_fence, mut fenced, mut committed_records) = (0u64, every, 0u64, 0usize);
    let mut zombie_commits = Vec::new();
    let mut zombie_later_ok = 0u64;
    let mut zombie_txns = Vec::new();
    while sent < p.records {
        current.begin_transaction().map_err(failed("begin"))?;
        let txn = checker.begin_txn();
        let n = (1 + rng.below(50)).min(p.records - sent);
        let mut pending = send_n(&checker, &current, tag, n, txn).await?;
        sent += n;
        if sent < next_fence || fenced >= FENCES {
            current.commit_transaction().await.map_err(failed("commit"))?;
            checker.end_txn(txn, true);
            checker.settle(pending).await;
            committed_records += n as usize;
            continue;
        }
        next_fence += every;
        // The successor starts: the current producer becomes a zombie.
        let successor = Producer::new(txn_config(&bootstrap, ID)).map_err(failed("successor"))?;
        successor.init_transactions().await.map_err(failed("successor init_transactions"))?;
        fenced += 1;
        // The zombie goes on: more records in its transaction (refused, or failed), then a
        // commit, which must fail.
        for _ in 0..n {
            if let Ok(sent) = checker.send(&current, tag, None, Some(txn)).await {
                pending.push(sent);
            }
        }
        let commit = current.commit_transaction().await;
        checker.end_txn(txn, commit.is_ok());
        if commit.is_ok() {
            zombie_commits.push(txn);
        }
        checker.settle(pending).await;
        zombie_txns.push(txn);
        // Every later call fails.
        if current.begin_transaction().is_ok() {
            zombie_later_ok += 1;
        }
        let _ = current.close(Duration::from_secs(1)).await;
        current = successor;
        tag = checker.new_producer();
    }
    current.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(fenced);
    tail.finish(&checker, committed_records, Duration::from_secs(60)).await?;
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        ("the zombie was fenced", fenced == FENCES, format!("{fenced} of {FENCES}")),
        ("no zombie transaction committed", zombie_commits.is_empty(), format!("{zombie_commits:?}")),
        (
            "every later call of a zombie fails",
            zombie_later_ok == 0,
            format!("{zombie_later_ok} begin_transaction succeeded"),
        ),
        ("read_committed saw every committed record", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
    ];
    Ok((f, extra))
}

/// R13: at every sixth of the run, EndTxn (a commit) is delayed past max.block.ms: alternately
/// held unhandled at the coordinator until the application has tried to start the next
/// transaction, and handled at once but answered 2.5 s later. commit_transaction times out;
/// the application moves on and calls begin_transaction, which must be refused while the
/// commit's outcome is unknown; repeating commit_transaction then completes it. Every
/// transaction is seen by read_committed whole or not at all (no torn transaction); every
/// fourth is aborted.
pub(super) async fn r13_end_txn_delayed(p: Params) -> Result<(Figures, Extra), RunError> {
    let cluster = cluster(3).await?;
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic(TOPIC, 3, 3).await.map_err(failed("create topic"))?;
    let checker = Arc::new(Checker::new(TOPIC, 3, PAD));
    let tail = Tail::start(&cluster, &checker, true)?;
    let config = txn_config(&bootstrap, "r13-txn").max_block(Duration::from_millis(1_000));
    let producer = Producer::new(config).map_err(failed("producer"))?;
    producer.init_transactions().await.map_err(failed("init_transactions"))?;
    let tag = checker.new_producer();
    let mut rng = Rng::new(p.seed);
    let every = (p.records / 6).max(1);
    let (mut sent, mut next_delay, mut t, mut committed_records) = (0u64, every, 0u64, 0usize);
    let (mut delayed, mut timed_out, mut refused) = (0u64, 0u64, 0u64);
    let mut early_starts = Vec::new();
    let mut txns = Vec::new();
    while sent < p.records {
        producer.begin_transaction().map_err(failed("begin"))?;
        let txn = checker.begin_txn();
        let n = (1 + rng.below(50)).min(p.records - sent);
        let pending = send_n(&checker, &producer, tag, n, txn).await?;
        txns.push((txn, pending.iter().map(|(id, _)| *id).collect::<Vec<_>>()));
        sent += n;
        let abort = t % 4 == 3;
        t += 1;
        if abort {
            producer.abort_transaction().await.map_err(failed("abort"))?;
            checker.end_txn(txn, false);
            checker.settle(pending).await;
            continue;
        }
        if sent < next_delay {
            producer.commit_transaction().await.map_err(failed("commit"))?;
            checker.end_txn(txn, true);
            checker.settle(pending).await;
            committed_records += n as usize;
            continue;
        }
        next_delay += every;
        delayed += 1;
        let mut release = None;
        let intercept = if delayed % 2 == 1 {
            let (r, hold) = kafka_broker::hold();
            release = Some(r);
            let mut hold = Some(hold);
            cluster
                .intercept(ApiKey::EndTxn, Times::Once, move |_| match hold.take() {
                    Some(h) => Action::Hold(h),
                    None => Action::Pass,
                })
                .await
        } else {
            cluster.intercept(ApiKey::EndTxn, Times::Once, |_| Action::Delay(Duration::from_millis(2_500))).await
        };
        let intercept = intercept.map_err(failed("intercept"))?;
        match producer.commit_transaction().await {
            Err(Error::Timeout { .. }) => timed_out += 1,
            Err(e) => return Err(RunError::Failed(format!("delayed commit: {e}"))),
            Ok(()) => {}
        }
        // The application moves on to the next transaction while EndTxn is still pending.
        match producer.begin_transaction() {
            Err(Error::TransactionState(_)) => refused += 1,
            Ok(()) => early_starts.push(txn),
            Err(e) => return Err(RunError::Failed(format!("begin after a delayed commit: {e}"))),
        }
        if let Some(r) = release {
            r.release();
        }
        let mut attempts = 0;
        loop {
            match producer.commit_transaction().await {
                Ok(()) => break,
                Err(Error::Timeout { .. }) if attempts < 20 => attempts += 1,
                Err(e) => return Err(RunError::Failed(format!("repeating the delayed commit: {e}"))),
            }
        }
        cluster.remove_intercept(intercept).await.map_err(failed("remove intercept"))?;
        checker.end_txn(txn, true);
        checker.settle(pending).await;
        committed_records += n as usize;
    }
    producer.close(Duration::from_secs(10)).await.map_err(failed("close"))?;
    checker.add_faults(delayed);
    tail.finish(&checker, committed_records, Duration::from_secs(60)).await?;
    let torn = torn(&checker, &txns);
    let (f, _) = finish(&checker, &cluster).await?;
    cluster.shutdown().await;
    let extra = vec![
        ("no torn transaction", torn == 0, format!("{torn} of {t} seen in part")),
        (
            "the delayed commits timed out",
            delayed > 0 && timed_out == delayed,
            format!("{delayed} delayed, {timed_out} timed out"),
        ),
        (
            "the next transaction could not start before the commit was known",
            refused == delayed && early_starts.is_empty(),
            format!("{refused} refused, started early: {early_starts:?}"),
        ),
        ("read_committed saw every committed record", f.unconsumed == 0, format!("{} unconsumed", f.unconsumed)),
    ];
    Ok((f, extra))
}
