//! Fault injection: what tests use to make the cluster misbehave on purpose, and the request
//! log they use to see what clients did.
//!
//! Everything here is state of the state task, so faults apply in request order and a seeded
//! chaos schedule picks the same faults at the same request counts every run.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, RequestBody, ResponseBody};
use kafka_protocol::ErrorCode;
use tokio::sync::oneshot;

/// A request as an interceptor sees it.
#[derive(Debug)]
pub struct InterceptedRequest<'a> {
    /// The node id of the broker the client is connected to.
    pub broker: i32,
    /// The API.
    pub api_key: ApiKey,
    /// The request's version.
    pub version: i16,
    /// The client id from the request header.
    pub client_id: Option<&'a str>,
    /// The correlation id from the request header.
    pub correlation_id: i32,
    /// The decoded request.
    pub body: &'a RequestBody,
}

/// What an interceptor does with a request.
#[derive(Debug)]
pub enum Action {
    /// Handle it normally (and do not count it against the interceptor's uses).
    Pass,
    /// Answer with this body instead of handling it.
    Respond(ResponseBody),
    /// Answer with this error code in every partition (or at the top level), as a broker that
    /// refuses the request does; nothing is handled.
    Error(ErrorCode),
    /// Handle it normally, then hold the answer back for this long.
    Delay(Duration),
    /// Close the connection without handling it.
    DropConnection,
    /// Handle it normally, then close the connection instead of answering: the client cannot
    /// know whether the request took effect.
    DropResponse,
    /// Keep the request unhandled until the [`Release`] paired with this [`Hold`] is
    /// released (or dropped); then handle it normally.
    Hold(Hold),
}

/// The waiting half of a hold: see [`hold`].
#[derive(Debug)]
pub struct Hold(pub(crate) oneshot::Receiver<()>);

/// The releasing half of a hold: see [`hold`].
#[derive(Debug)]
pub struct Release(oneshot::Sender<()>);

impl Release {
    /// Lets the held request be handled.
    pub fn release(self) {
        let _ = self.0.send(());
    }
}

/// A pair for [`Action::Hold`]: the request waits until `Release::release` (or until the
/// `Release` is dropped).
pub fn hold() -> (Release, Hold) {
    let (tx, rx) = oneshot::channel();
    (Release(tx), Hold(rx))
}

/// How many times an interceptor acts (requests it answers [`Action::Pass`] do not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// Once, then it is removed.
    Once,
    /// This many times, then it is removed.
    Count(u32),
    /// Until removed with `Cluster::remove_intercept`.
    Always,
}

/// Identifies an interceptor for `Cluster::remove_intercept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterceptId(pub(crate) u64);

/// An interceptor's function.
pub type InterceptFn = Box<dyn FnMut(&InterceptedRequest<'_>) -> Action + Send>;

pub(crate) struct Interceptor {
    pub id: InterceptId,
    pub api: ApiKey,
    pub remaining: Times,
    pub f: InterceptFn,
}

impl fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptor")
            .field("id", &self.id)
            .field("api", &self.api)
            .field("remaining", &self.remaining)
            .finish()
    }
}

/// Where errors pushed with `Cluster::push_errors` apply.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorScope {
    /// Any broker: the whole response carries the error.
    Cluster,
    /// Requests to this broker: the whole response carries the error.
    Broker(i32),
    /// This partition's entry in requests that name it (Produce, Fetch, ListOffsets,
    /// DeleteRecords, OffsetForLeaderEpoch, DescribeProducers); other partitions of the same
    /// request are handled normally.
    Partition(String, i32),
}

/// How many Produce responses to lose after the batch was written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// None.
    Off,
    /// The next `n` Produce requests that write something.
    Count(u32),
    /// Each Produce request that writes something, with this probability (drawn from the
    /// chaos seed's generator, or seed 0 if no chaos schedule is set).
    Probability(f64),
}

/// A seeded chaos schedule: for each request of the listed APIs, in the order the cluster
/// receives them, one fault or none is drawn from a generator seeded with `seed`. The same
/// seed and the same request sequence give the same faults at the same request counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    /// The generator's seed.
    pub seed: u64,
    /// The APIs faults apply to (empty: Produce and Fetch).
    pub apis: Vec<ApiKey>,
    /// Probability of closing the connection instead of handling the request.
    pub drop_connection: f64,
    /// Probability of answering with one of `errors` (chosen uniformly).
    pub inject_error: f64,
    /// The errors to inject (empty: NOT_LEADER_OR_FOLLOWER and REQUEST_TIMED_OUT).
    pub errors: Vec<ErrorCode>,
    /// Probability of moving the leadership of a random partition to another in-sync replica
    /// before handling the request.
    pub move_leader: f64,
    /// Probability of delaying the answer by up to `max_latency`.
    pub latency: f64,
    /// The longest injected delay.
    pub max_latency: Duration,
}

impl Default for Chaos {
    fn default() -> Self {
        Chaos {
            seed: 0,
            apis: Vec::new(),
            drop_connection: 0.0,
            inject_error: 0.0,
            errors: Vec::new(),
            move_leader: 0.0,
            latency: 0.0,
            max_latency: Duration::from_millis(50),
        }
    }
}

/// One fault the chaos schedule applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection was closed instead of handling the request.
    DropConnection,
    /// The request was answered with this error.
    Error(ErrorCode),
    /// Leadership of the partition moved to the broker.
    MoveLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The new leader.
        to: i32,
    },
    /// The answer was delayed.
    Latency(Duration),
}

/// A chaos fault and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosEvent {
    /// The request's number in the cluster (1 = the first request received).
    pub request: u64,
    /// The broker that received it.
    pub broker: i32,
    /// Its API.
    pub api_key: ApiKey,
    /// What was done.
    pub fault: Fault,
}

/// One entry of the request log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The request's number in the cluster (1 = the first request received).
    pub number: u64,
    /// The broker that received it.
    pub broker: i32,
    /// Its API.
    pub api_key: ApiKey,
    /// Its version.
    pub version: i16,
    /// The client id from its header.
    pub client_id: Option<String>,
    /// The correlation id from its header.
    pub correlation_id: i32,
    /// When the broker received it.
    pub at: Instant,
}

/// Oldest entries are dropped beyond this many.
const REQUEST_LOG_LIMIT: usize = 100_000;

/// SplitMix64: a tiny generator whose sequence is fixed by its definition, so a seed means
/// the same schedule in every version of this crate and of its dependencies.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

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
}

/// The fault state the state task keeps.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub interceptors: Vec<Interceptor>,
    pub next_intercept: u64,
    pub pushed: HashMap<(ApiKey, ErrorScope), std::collections::VecDeque<ErrorCode>>,
    pub latency: HashMap<i32, Duration>,
    pub loss: Option<Loss>,
    pub chaos: Option<(Chaos, SplitMix64)>,
    pub chaos_log: Vec<ChaosEvent>,
    pub loss_rng: Option<SplitMix64>,
    pub request_log: std::collections::VecDeque<RequestRecord>,
    pub request_count: u64,
    /// The API of the request being handled, for partition-scoped errors.
    pub current_api: Option<ApiKey>,
}

impl Faults {
    /// The next pushed error for `api` in `scope`, if any (0 means "no error this time").
    pub fn pop(&mut self, api: ApiKey, scope: &ErrorScope) -> Option<ErrorCode> {
        let key = (api, scope.clone());
        let queue = self.pushed.get_mut(&key)?;
        let code = queue.pop_front();
        if queue.is_empty() {
            self.pushed.remove(&key);
        }
        code
    }

    /// A pushed error for this partition in the request being handled.
    pub fn partition_error(&mut self, topic: &str, partition: i32) -> Option<ErrorCode> {
        let api = self.current_api?;
        if self.pushed.is_empty() {
            return None;
        }
        self.pop(api, &ErrorScope::Partition(topic.to_string(), partition)).filter(|c| *c != ErrorCode::None)
    }

    pub fn log(&mut self, record: RequestRecord) {
        if self.request_log.len() >= REQUEST_LOG_LIMIT {
            self.request_log.pop_front();
        }
        self.request_log.push_back(record);
    }

    /// Whether the next Produce response that wrote something is lost.
    pub fn lose_response(&mut self) -> bool {
        match self.loss {
            None | Some(Loss::Off) => false,
            Some(Loss::Count(n)) => {
                self.loss = if n <= 1 { None } else { Some(Loss::Count(n - 1)) };
                n > 0
            }
            Some(Loss::Probability(p)) => {
                let rng = self.loss_rng.get_or_insert_with(|| SplitMix64::new(0));
                rng.next_f64() < p
            }
        }
    }
}
