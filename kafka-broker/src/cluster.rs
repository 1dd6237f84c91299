//! The cluster: its state, owned by one task, and the handle tests hold.
//!
//! Every change to cluster state happens on the state task, one request at a time, in the
//! order requests arrive (franz-go's kfake does the same). That keeps handlers free of locks
//! and makes fault schedules reproducible: the same seed sees the same request order per
//! connection. Connection tasks only frame, decode and encode, which is where the bytes are.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use kafka_protocol::messages::{RequestBody, RequestHeader, ResponseBody};
use kafka_protocol::primitives::Uuid;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::configs::{self, LogSettings};
use crate::error::BrokerError;
use crate::handlers;
use crate::log::PartitionLog;

/// One broker of the cluster as clients see it.
#[derive(Debug, Clone)]
pub(crate) struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// A partition's replication state and its log (replication is simulated: one log per
/// partition, every replica in the ISR is always caught up).
#[derive(Debug)]
pub(crate) struct Partition {
    /// The leader's node id, -1 when the partition has none (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub log: PartitionLog,
}

impl Partition {
    /// A new, empty partition led by the first replica, with every replica in sync.
    pub fn new(replicas: Vec<i32>) -> Self {
        Partition {
            leader: replicas.first().copied().unwrap_or(-1),
            leader_epoch: 0,
            isr: replicas.clone(),
            replicas,
            log: PartitionLog::default(),
        }
    }
}

/// A topic: its id, partitions and topic-level configs (Kafka's names).
#[derive(Debug)]
pub(crate) struct Topic {
    pub id: Uuid,
    pub partitions: Vec<Partition>,
    /// Configs set on the topic (not the defaults it inherits).
    pub configs: BTreeMap<String, String>,
    /// The resolved settings the log acts on; refreshed by [`State::set_topic_configs`].
    pub settings: LogSettings,
}

/// Cluster-wide settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub default_partitions: i32,
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    pub broker_configs: BTreeMap<String, String>,
    pub max_frame_size: usize,
    /// How often retention and compaction run (`log.retention.check.interval.ms`).
    pub housekeeping_interval: Duration,
}

/// Everything the state task owns.
#[derive(Debug)]
pub(crate) struct State {
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: BTreeMap<String, Topic>,
    pub settings: Settings,
    next_topic_id: u64,
    /// Bumped whenever a log gains data, so waiting fetches look again.
    pub data_version: u64,
    /// Added to the system clock (tests advance time for retention without sleeping).
    pub clock_offset_ms: i64,
    /// The next producer id InitProducerId hands out.
    pub next_producer_id: i64,
}

impl State {
    /// A fresh topic id: unique within the cluster, never the zero UUID.
    pub fn new_topic_id(&mut self) -> Uuid {
        self.next_topic_id += 1;
        Uuid::from_u64_pair(0x6b61_666b_6173_646b, self.next_topic_id)
    }

    /// Creates a topic whose name, partition count and replication factor were validated,
    /// spreading leaders over the brokers round robin (partition p of the n-th topic leads on
    /// broker (n + p) mod brokers) with the following brokers as replicas.
    pub fn add_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Uuid {
        let id = self.new_topic_id();
        let n = self.brokers.len().max(1);
        let start = self.topics.len();
        let parts = (0..partitions.max(0) as usize)
            .map(|p| {
                let replicas: Vec<i32> = (0..replication_factor.max(1) as usize)
                    .filter_map(|r| self.brokers.get((start + p + r) % n).map(|b| b.node_id))
                    .collect();
                Partition::new(replicas)
            })
            .collect();
        self.insert_topic(name, id, parts, configs);
        id
    }

    /// Inserts a topic with the given partitions and configs.
    pub fn insert_topic(
        &mut self,
        name: &str,
        id: Uuid,
        partitions: Vec<Partition>,
        configs: BTreeMap<String, String>,
    ) {
        let settings = configs::log_settings(&configs, &self.settings.broker_configs);
        self.topics.insert(name.to_string(), Topic { id, partitions, configs, settings });
    }

    /// Replaces a topic's own configs and re-resolves its settings; false if no such topic.
    pub fn set_topic_configs(&mut self, name: &str, configs: BTreeMap<String, String>) -> bool {
        let settings = configs::log_settings(&configs, &self.settings.broker_configs);
        match self.topics.get_mut(name) {
            Some(t) => {
                t.configs = configs;
                t.settings = settings;
                true
            }
            None => false,
        }
    }

    /// The name of the topic with id `id`.
    pub fn topic_name_by_id(&self, id: Uuid) -> Option<&str> {
        if id.is_zero() {
            return None;
        }
        self.topics.iter().find(|(_, t)| t.id == id).map(|(n, _)| n.as_str())
    }
}

/// A cluster state with `brokers` brokers (node ids 1..=n, ports 9092..) and the builder's
/// default settings, no task and no listener: for handler unit tests.
#[cfg(test)]
pub(crate) fn test_state(brokers: usize) -> State {
    let settings = ClusterBuilder::default().settings;
    State {
        cluster_id: "test-cluster".into(),
        controller_id: 1,
        brokers: (1..=brokers.max(1))
            .map(|i| BrokerInfo { node_id: i as i32, host: "localhost".into(), port: 9091 + i as u16, rack: None })
            .collect(),
        topics: BTreeMap::new(),
        settings: Settings { default_replication_factor: brokers.clamp(1, 3) as i16, ..settings },
        next_topic_id: 0,
        data_version: 0,
        clock_offset_ms: 0,
        next_producer_id: 1000,
    }
}

/// What the state task decided about one request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Write this response.
    Response(ResponseBody),
    /// Write nothing (acks=0).
    Silent,
    /// Close the connection, logging the reason.
    Close(String),
    /// The API or version is not implemented: close the connection.
    NotImplemented,
}

/// A reply and how long the connection waits before acting on it (injected latency).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub reply: Reply,
    pub delay: Duration,
}

/// What connection tasks and the cluster handle send to the state task.
pub(crate) enum Command {
    /// A decoded request from a client of `broker`.
    Request(Pending),
    /// In-process access to the state (the test API).
    Run(Box<dyn FnOnce(&mut State) + Send>),
}

/// A request waiting for its answer.
pub(crate) struct Pending {
    pub broker: i32,
    pub header: RequestHeader,
    pub version: i16,
    pub body: Box<RequestBody>,
    pub reply: oneshot::Sender<Delivery>,
    /// For a parked request: when it must be answered.
    pub deadline: Option<Instant>,
}

/// Configures and starts a [`Cluster`].
///
/// Defaults: one broker, three partitions for auto-created topics, auto-creation on,
/// listeners on 127.0.0.1 with ephemeral ports.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    brokers: usize,
    host: String,
    ports: Option<Vec<u16>>,
    settings: Settings,
    cluster_id: String,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            brokers: 1,
            host: "127.0.0.1".into(),
            ports: None,
            settings: Settings {
                default_partitions: 3,
                default_replication_factor: -1,
                auto_create_topics: true,
                broker_configs: BTreeMap::new(),
                max_frame_size: kafka_protocol::frame::DEFAULT_MAX_FRAME_SIZE,
                housekeeping_interval: Duration::from_millis(1000),
            },
            cluster_id: "kafka-sdk-bundled".into(),
        }
    }
}

impl ClusterBuilder {
    /// The number of brokers (node ids 1..=n).
    pub fn brokers(mut self, n: usize) -> Self {
        self.brokers = n.max(1);
        self
    }

    /// Partitions of auto-created topics and of topics created with `num_partitions = -1`
    /// (Kafka's `num.partitions`).
    pub fn default_partitions(mut self, n: i32) -> Self {
        self.settings.default_partitions = n.max(1);
        self
    }

    /// Whether Metadata requests create missing topics (Kafka's `auto.create.topics.enable`).
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.settings.auto_create_topics = on;
        self
    }

    /// The listeners' host (default 127.0.0.1); brokers advertise it.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Fixed ports, one per broker, instead of ephemeral ones.
    pub fn ports(mut self, ports: Vec<u16>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// The cluster id reported in Metadata.
    pub fn cluster_id(mut self, id: impl Into<String>) -> Self {
        self.cluster_id = id.into();
        self
    }

    /// A broker setting by Kafka's name, e.g. `("log.retention.ms", "60000")`. Settings that
    /// the bundled broker does not interpret are kept and reported, not rejected.
    pub fn broker_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into(), value.into());
        match key.as_str() {
            "num.partitions" => {
                if let Ok(n) = value.parse() {
                    self.settings.default_partitions = n;
                }
            }
            "default.replication.factor" => {
                if let Ok(n) = value.parse() {
                    self.settings.default_replication_factor = n;
                }
            }
            "auto.create.topics.enable" => self.settings.auto_create_topics = value == "true",
            "socket.request.max.bytes" => {
                if let Ok(n) = value.parse() {
                    self.settings.max_frame_size = n;
                }
            }
            "log.retention.check.interval.ms" => {
                if let Ok(n) = value.parse::<u64>() {
                    self.settings.housekeeping_interval = Duration::from_millis(n.max(1));
                }
            }
            _ => {}
        }
        self.settings.broker_configs.insert(key, value);
        self
    }

    /// Binds every listener and starts the cluster.
    ///
    /// # Errors
    /// [`BrokerError::Bind`] if a listener cannot bind (port taken), [`BrokerError::Config`]
    /// if ports were given but not one per broker.
    pub async fn start(self) -> Result<Cluster, BrokerError> {
        if let Some(ports) = &self.ports {
            if ports.len() != self.brokers {
                return Err(BrokerError::Config(format!("{} ports given for {} brokers", ports.len(), self.brokers)));
            }
        }
        let mut listeners = Vec::new();
        let mut brokers = Vec::new();
        for i in 0..self.brokers {
            let port = self.ports.as_ref().and_then(|p| p.get(i).copied()).unwrap_or(0);
            let addr = format!("{}:{port}", self.host);
            let listener =
                TcpListener::bind(&addr).await.map_err(|source| BrokerError::Bind { addr: addr.clone(), source })?;
            let local = listener.local_addr().map_err(|source| BrokerError::Bind { addr, source })?;
            let node_id = i as i32 + 1;
            brokers.push(BrokerInfo { node_id, host: self.host.clone(), port: local.port(), rack: None });
            listeners.push((node_id, local, listener));
        }
        let mut settings = self.settings;
        if settings.default_replication_factor <= 0 {
            settings.default_replication_factor = brokers.len().min(3) as i16;
        }
        let state = State {
            cluster_id: self.cluster_id,
            controller_id: 1,
            brokers,
            topics: BTreeMap::new(),
            settings: settings.clone(),
            next_topic_id: 0,
            data_version: 0,
            clock_offset_ms: 0,
            next_producer_id: 1000,
        };
        let (tx, rx) = mpsc::channel(1024);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(run_state(state, rx))];
        let mut addrs = Vec::new();
        for (node_id, local, listener) in listeners {
            addrs.push((node_id, local));
            tasks.push(tokio::spawn(crate::server::accept_loop(
                listener,
                node_id,
                tx.clone(),
                shutdown_rx.clone(),
                settings.max_frame_size,
            )));
            tracing::info!(node_id, %local, "broker listening");
        }
        Ok(Cluster { addrs, tx, shutdown: shutdown_tx, tasks })
    }
}

async fn run_state(mut state: State, mut rx: mpsc::Receiver<Command>) {
    let mut parked: Vec<Pending> = Vec::new();
    let mut housekeeping = tokio::time::interval(state.settings.housekeeping_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_deadline = parked.iter().filter_map(|p| p.deadline).min();
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                let version_before = state.data_version;
                match cmd {
                    Command::Request(pending) => {
                        if let Some(p) = state.process(pending, false) {
                            parked.push(p);
                        }
                    }
                    Command::Run(f) => f(&mut state),
                }
                if state.data_version != version_before && !parked.is_empty() {
                    // New data: every waiting fetch looks again.
                    for p in std::mem::take(&mut parked) {
                        if let Some(p) = state.process(p, false) {
                            parked.push(p);
                        }
                    }
                }
            }
            () = sleep_until(next_deadline) => {
                let now = Instant::now();
                for p in std::mem::take(&mut parked) {
                    let due = p.deadline.is_some_and(|d| d <= now);
                    if let Some(p) = state.process(p, due) {
                        parked.push(p);
                    }
                }
            }
            _ = housekeeping.tick() => state.housekeeping(),
        }
        // A client that went away no longer waits.
        parked.retain(|p| !p.reply.is_closed());
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

impl State {
    /// The cluster clock: the system clock plus whatever tests advanced it by.
    pub fn now_ms(&self) -> i64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        system.saturating_add(self.clock_offset_ms)
    }

    /// Runs one request; returns it back if it has to wait (a parked fetch).
    fn process(&mut self, pending: Pending, final_attempt: bool) -> Option<Pending> {
        let ctx = handlers::Ctx {
            broker: pending.broker,
            header: &pending.header,
            version: pending.version,
            now_ms: self.now_ms(),
            final_attempt,
        };
        let handled = handlers::handle(self, ctx, &pending.body);
        let reply = match handled {
            handlers::Handled::Respond(body) => Reply::Response(body),
            handlers::Handled::Silent => Reply::Silent,
            handlers::Handled::Close(reason) => Reply::Close(reason),
            handlers::Handled::NotImplemented => Reply::NotImplemented,
            handlers::Handled::Park(deadline) => {
                return Some(Pending { deadline: Some(pending.deadline.unwrap_or(deadline)), ..pending });
            }
        };
        // The connection may be gone; its response is simply dropped.
        let _ = pending.reply.send(Delivery { reply, delay: Duration::ZERO });
        None
    }

    /// Background work: retention and compaction of every partition.
    pub fn housekeeping(&mut self) {
        let now = self.now_ms();
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                p.log.apply_retention(&topic.settings, now);
                p.log.compact(&topic.settings, now);
            }
        }
    }
}

/// A running in-memory cluster. Dropping it without [`Cluster::shutdown`] stops accepting
/// work too (its tasks end when the runtime does); `shutdown` waits for them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kafka_broker::BrokerError> {
/// use kafka_broker::Cluster;
///
/// let cluster = Cluster::builder().brokers(3).default_partitions(3).start().await?;
/// cluster.create_topic("orders", 6, 3).await?;
/// println!("bootstrap.servers={}", cluster.bootstrap_servers());
/// cluster.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Cluster {
    addrs: Vec<(i32, SocketAddr)>,
    tx: mpsc::Sender<Command>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request(p) => write!(
                f,
                "Request(broker {}, api {}, v{})",
                p.broker, p.header.request_api_key, p.header.request_api_version
            ),
            Command::Run(_) => f.write_str("Run"),
        }
    }
}

impl Cluster {
    /// A builder with the defaults of [`ClusterBuilder`].
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// `host:port` of every broker, comma separated: the value for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.addrs.iter().map(|(_, a)| a.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Each broker's node id and listening address.
    pub fn broker_addrs(&self) -> Vec<(i32, SocketAddr)> {
        self.addrs.clone()
    }

    /// Runs `f` on the state task and returns its result.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> R + Send + 'static,
    ) -> Result<R, BrokerError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Run(Box::new(move |state| {
            let _ = reply.send(f(state));
        }));
        self.tx.send(cmd).await.map_err(|_| BrokerError::Stopped)?;
        rx.await.map_err(|_| BrokerError::Stopped)
    }

    /// Creates a topic, as CreateTopics would (same validation and errors).
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION,
    /// INVALID_PARTITIONS or INVALID_REPLICATION_FACTOR; [`BrokerError::Stopped`] after shutdown.
    pub async fn create_topic(&self, name: &str, partitions: i32, replication_factor: i16) -> Result<(), BrokerError> {
        let name = name.to_string();
        self.run(move |state| {
            handlers::create_topics::create(state, &name, partitions, replication_factor, BTreeMap::new(), false)
        })
        .await?
        .map(|_created| ())
        .map_err(|(code, message)| BrokerError::Kafka { code, message })
    }

    /// A topic's configs as set at creation (Kafka's names; defaults are not listed).
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with UNKNOWN_TOPIC_OR_PARTITION for a missing topic.
    pub async fn topic_configs(&self, name: &str) -> Result<BTreeMap<String, String>, BrokerError> {
        let name = name.to_string();
        self.run(move |state| state.topics.get(&name).map(|t| t.configs.clone())).await?.ok_or_else(|| {
            BrokerError::Kafka {
                code: kafka_protocol::ErrorCode::UnknownTopicOrPartition,
                message: "unknown topic".into(),
            }
        })
    }

    /// Stops every listener and connection, then the state task, and waits for all of them.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        drop(self.tx);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
