//! What the records of one batch share: the batch's outcome, and the futures waiting for it.
//!
//! A record's delivery future holds the batch (one reference count) and its index in it;
//! completing a batch wakes every future of its records at once. There is no channel and no
//! allocation per record.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::DeliveryError;

/// Where a record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 with `acks=0` (no response, so no offset).
    pub offset: i64,
    /// The record's timestamp: the one it was sent with (CreateTime), or the broker's append
    /// time on topics with `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// The outcome of a batch that was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// The offset of the batch's first record (-1 for acks=0).
    pub base_offset: i64,
    /// The broker's append time, or -1 for CreateTime topics.
    pub log_append_time: i64,
}

#[derive(Default)]
struct State {
    outcome: Option<Result<Written, DeliveryError>>,
    wakers: Vec<Waker>,
}

/// The shared completion of one batch.
pub(crate) struct BatchShared {
    pub topic: Arc<str>,
    pub partition: i32,
    state: Mutex<State>,
}

impl BatchShared {
    pub fn new(topic: Arc<str>, partition: i32) -> Arc<Self> {
        Arc::new(BatchShared { topic, partition, state: Mutex::new(State::default()) })
    }

    /// Sets the outcome (the first one wins) and wakes every waiter.
    pub fn complete(&self, outcome: Result<Written, DeliveryError>) {
        let wakers = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if s.outcome.is_some() {
                return;
            }
            s.outcome = Some(outcome);
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    pub fn is_done(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).outcome.is_some()
    }

    fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<Written, DeliveryError>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &s.outcome {
            Some(o) => Poll::Ready(o.clone()),
            None => {
                // Futures polled by the same task share one waker; looking at the last few
                // keeps this O(1) when many tasks wait on one batch.
                if !s.wakers.iter().rev().take(4).any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Resolves to the delivery outcome of one record: its [`RecordMetadata`], or a
/// [`DeliveryError`] that says whether the record may nevertheless be in the log.
///
/// Dropping the future does not cancel the delivery.
#[must_use = "a delivery future does nothing unless awaited (the record is sent either way)"]
pub struct DeliveryFuture {
    pub(crate) batch: Arc<BatchShared>,
    pub(crate) index: i32,
    pub(crate) timestamp: i64,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("topic", &self.batch.topic)
            .field("partition", &self.batch.partition)
            .field("index", &self.index)
            .finish()
    }
}

impl DeliveryFuture {
    /// The partition the record was appended to.
    pub fn partition(&self) -> i32 {
        self.batch.partition
    }

    /// Whether the outcome is known (awaiting will not wait).
    pub fn is_done(&self) -> bool {
        self.batch.is_done()
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, DeliveryError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.batch.poll_outcome(cx).map(|outcome| {
            outcome.map(|w| RecordMetadata {
                topic: this.batch.topic.clone(),
                partition: this.batch.partition,
                offset: if w.base_offset < 0 { -1 } else { w.base_offset + i64::from(this.index) },
                timestamp: if w.log_append_time >= 0 { w.log_append_time } else { this.timestamp },
            })
        })
    }
}

/// Waits for a batch's outcome, whatever it is (for `flush`).
pub(crate) struct BatchDone(pub Arc<BatchShared>);

impl Future for BatchDone {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_outcome(cx).map(|_| ())
    }
}
