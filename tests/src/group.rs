//! Helpers for the consumer-group tests (`tests/consumer.rs`, `tests/consumer_kip848.rs`):
//! a background reader per member, waiting for a condition, and checking how a group split
//! its partitions. They fail the calling test with a message (panic) when a wait runs out.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_client::{Consumer, ConsumerRecord, Error, TopicPartition};

/// How long the waits here give a group before failing the test.
pub const WAIT: Duration = Duration::from_secs(30);

/// A task that polls a consumer and keeps what it receives, until stopped.
pub struct Reader {
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Polls `consumer` every 50 ms until stopped, keeping every record.
    pub fn spawn(consumer: Arc<Consumer>) -> Reader {
        Self::spawn_with(consumer, Duration::ZERO, |_| {})
    }

    /// `check` sees every record as it is handed out; each batch takes `pace` to "process".
    pub fn spawn_with(
        consumer: Arc<Consumer>,
        pace: Duration,
        check: impl Fn(&ConsumerRecord) + Send + 'static,
    ) -> Reader {
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (records.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(50)).await {
                    Ok(batch) => {
                        batch.iter().for_each(&check);
                        let any = !batch.is_empty();
                        r.lock().unwrap().extend(batch);
                        if any && !pace.is_zero() {
                            tokio::time::sleep(pace).await;
                        }
                    }
                    Err(Error::Closed(_)) => break,
                    Err(e) => panic!("poll failed: {e}"),
                }
            }
        });
        Reader { records, stop, task }
    }

    /// How many records it has received so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Stops polling and returns everything received.
    pub async fn stop(self) -> Vec<ConsumerRecord> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

/// Waits until `check` holds, failing with `what` after WAIT.
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Each member's current assignment.
pub fn assignments(members: &[Arc<Consumer>]) -> Vec<BTreeSet<TopicPartition>> {
    members.iter().map(|c| c.assignment().into_iter().collect()).collect()
}

/// Every partition owned by exactly one member, and the sizes as wanted.
pub fn exact_split(members: &[Arc<Consumer>], partitions: usize, sizes: &[usize]) -> bool {
    let a = assignments(members);
    let mut all = BTreeSet::new();
    let total: usize = a.iter().map(BTreeSet::len).sum();
    for s in &a {
        all.extend(s.iter().cloned());
    }
    let mut got: Vec<usize> = a.iter().map(BTreeSet::len).collect();
    got.sort_unstable();
    let mut want = sizes.to_vec();
    want.sort_unstable();
    total == partitions && all.len() == partitions && got == want
}
