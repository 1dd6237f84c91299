//! The cluster: its state, owned by one task, and the handle tests hold.
//!
//! Every change to cluster state happens on the state task, one request at a time, in the
//! order requests arrive (franz-go's kfake does the same). That keeps handlers free of locks
//! and makes fault schedules reproducible: the same seed sees the same request order per
//! connection. Connection tasks only frame, decode and encode, which is where the bytes are.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody};
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
    /// `replica.selector.class` is Kafka's RackAwareReplicaSelector: consumers that send a
    /// rack are pointed at an in-sync replica in it (KIP-392).
    pub rack_aware_replica_selector: bool,
    /// The group coordinator's settings (`group.*`, `offset*`).
    pub groups: crate::groups::GroupConfig,
    /// The transaction coordinator's settings (`transaction*`).
    pub txns: crate::txn::TxnConfig,
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
    /// Open fetch sessions (KIP-227).
    pub fetch_sessions: handlers::fetch::Sessions,
    /// Injected faults and the request log.
    pub faults: crate::faults::Faults,
    /// Client byte-rate quotas and what clients moved.
    pub quotas: crate::quotas::Quotas,
    /// Brokers stopped with `Cluster::stop_broker`.
    pub stopped: std::collections::BTreeSet<i32>,
    /// The group coordinator.
    pub groups: crate::groups::Coordinator,
    /// Requests waiting for the group coordinator (JoinGroup, SyncGroup), by ticket.
    pub waiting: WaitingRequests,
    /// The transaction coordinator.
    pub txns: crate::txn::TxnCoordinator,
    /// Buffers of dropped batches, for the listeners to read large frames into.
    pub pool: std::sync::Arc<crate::pool::BufferPool>,
}

impl State {
    /// A cluster with no topics.
    pub fn new(cluster_id: String, brokers: Vec<BrokerInfo>, settings: Settings) -> Self {
        let quotas = crate::quotas::Quotas {
            default_produce: settings.broker_configs.get("quota.producer.default").and_then(|v| v.parse().ok()),
            default_fetch: settings.broker_configs.get("quota.consumer.default").and_then(|v| v.parse().ok()),
            ..Default::default()
        };
        let groups = crate::groups::Coordinator::new(settings.groups.clone());
        let txns = crate::txn::TxnCoordinator::new(settings.txns.clone());
        State {
            cluster_id,
            controller_id: brokers.first().map_or(1, |b| b.node_id),
            brokers,
            topics: BTreeMap::new(),
            settings,
            next_topic_id: 0,
            data_version: 0,
            clock_offset_ms: 0,
            next_producer_id: 1000,
            fetch_sessions: Default::default(),
            faults: Default::default(),
            groups,
            quotas,
            stopped: Default::default(),
            waiting: Default::default(),
            txns,
            pool: Default::default(),
        }
    }

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

    /// Removes a topic with its committed offsets; its partitions leave every transaction
    /// (their markers can no longer be written, and a new topic of the same name must not get
    /// them), which may let transactions waiting for a marker complete.
    pub fn delete_topic(&mut self, name: &str) {
        self.topics.remove(name);
        self.groups.on_topic_deleted(name);
        self.txns.on_topic_deleted(name);
        self.retry_pending_markers();
        self.data_version += 1;
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
    State::new(
        "test-cluster".into(),
        (1..=brokers.max(1))
            .map(|i| BrokerInfo { node_id: i as i32, host: "localhost".into(), port: 9091 + i as u16, rack: None })
            .collect(),
        Settings { default_replication_factor: brokers.clamp(1, 3) as i16, ..settings },
    )
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
    /// Held by an interceptor: wait for the release, then send the request again (it then
    /// bypasses interceptors and chaos).
    Hold(crate::faults::Hold, Box<RequestBody>, RequestHeader),
}

/// A reply and how long the connection waits before acting on it (injected latency).
#[derive(Debug)]
pub(crate) struct Delivery {
    pub reply: Reply,
    pub delay: Duration,
    /// After writing the response, read nothing from the connection for this long (a
    /// throttled client, KIP-219).
    pub mute: Duration,
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
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    pub header: RequestHeader,
    pub version: i16,
    pub body: Box<RequestBody>,
    pub reply: oneshot::Sender<Delivery>,
    /// For a parked request: when it must be answered.
    pub deadline: Option<Instant>,
    /// Already seen by interceptors and chaos (a held request coming back, a parked fetch).
    pub bypass_faults: bool,
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
    racks: Vec<Option<String>>,
    settings: Settings,
    cluster_id: String,
    security: SecuritySetup,
}

/// The listeners' TLS and SASL settings, turned into a `ListenerSecurity` at start.
#[derive(Debug, Clone, Default)]
struct SecuritySetup {
    protocol: crate::security::SecurityProtocol,
    tls: crate::security::TlsIdentity,
    client_auth: bool,
    users: Vec<crate::security::SaslUser>,
    oauth_test_validator: bool,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            brokers: 1,
            host: "127.0.0.1".into(),
            ports: None,
            racks: Vec::new(),
            settings: Settings {
                default_partitions: 3,
                default_replication_factor: -1,
                auto_create_topics: true,
                broker_configs: BTreeMap::new(),
                max_frame_size: kafka_protocol::frame::DEFAULT_MAX_FRAME_SIZE,
                housekeeping_interval: Duration::from_millis(1000),
                rack_aware_replica_selector: false,
                groups: crate::groups::GroupConfig::default(),
                txns: crate::txn::TxnConfig::default(),
            },
            cluster_id: "kafka-sdk-bundled".into(),
            security: SecuritySetup::default(),
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

    /// Each broker's rack (`broker.rack`), in node id order; brokers beyond the list have none.
    /// With `broker_config("replica.selector.class", "...RackAwareReplicaSelector")`, consumers
    /// that send a rack are pointed at a replica in it.
    pub fn racks<S: Into<String>>(mut self, racks: impl IntoIterator<Item = S>) -> Self {
        self.racks = racks.into_iter().map(|r| Some(r.into())).collect();
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
            "replica.selector.class" => {
                self.settings.rack_aware_replica_selector = value.ends_with("RackAwareReplicaSelector");
            }
            "log.retention.check.interval.ms" => {
                if let Ok(n) = value.parse::<u64>() {
                    self.settings.housekeeping_interval = Duration::from_millis(n.max(1));
                }
            }
            _ => {
                self.settings.groups.apply(&key, &value);
                self.settings.txns.apply(&key, &value);
            }
        }
        self.settings.broker_configs.insert(key, value);
        self
    }

    /// The listeners' `security.protocol` (default PLAINTEXT). TLS listeners use a test CA
    /// generated at start unless [`Self::tls_identity`] or [`Self::tls_ca`] says otherwise;
    /// SASL listeners need users ([`Self::sasl_user`]) or the OAUTHBEARER test validator.
    pub fn security_protocol(mut self, protocol: crate::security::SecurityProtocol) -> Self {
        self.security.protocol = protocol;
        self
    }

    /// The TLS listeners' certificate chain and private key (PEM texts), instead of
    /// generated ones.
    pub fn tls_identity(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.security.tls = crate::security::TlsIdentity::Pem { cert: cert_pem.into(), key: key_pem.into() };
        self
    }

    /// The CA that issues the TLS listeners' certificate (and, with
    /// [`Self::tls_client_auth_required`], that client certificates must chain to).
    pub fn tls_ca(mut self, ca: crate::security::TestCa) -> Self {
        self.security.tls = crate::security::TlsIdentity::FromCa(ca);
        self
    }

    /// Requires client certificates issued by the cluster's CA (Kafka's
    /// `ssl.client.auth=required`, mTLS). Needs a generated or given CA.
    pub fn tls_client_auth_required(mut self) -> Self {
        self.security.client_auth = true;
        self
    }

    /// A SASL user with a password, for one mechanism (repeat for more users or mechanisms).
    /// SCRAM users are stored as Kafka stores them: salt, 4096 iterations, derived keys.
    pub fn sasl_user(
        mut self,
        name: impl Into<String>,
        password: impl Into<String>,
        mechanism: crate::security::SaslMechanism,
    ) -> Self {
        self.security.users.push(crate::security::SaslUser { name: name.into(), password: password.into(), mechanism });
        self
    }

    /// **For tests only**: enables OAUTHBEARER with a validator that accepts *unsigned* JWTs
    /// (`alg: none`) with a `sub` and a future `exp`, like Kafka's
    /// `OAuthBearerUnsecuredValidatorCallbackHandler`. Anyone can forge such a token.
    pub fn sasl_oauthbearer_unsecured_test_validator(mut self) -> Self {
        self.security.oauth_test_validator = true;
        self
    }

    fn listener_security(
        &self,
    ) -> Result<(crate::security::ListenerSecurity, Option<crate::security::TestCa>), BrokerError> {
        use crate::security::{SaslServer, TestCa, TlsIdentity};
        let setup = &self.security;
        let (tls, ca) = if setup.protocol.uses_tls() {
            let (ca, identity) = match &setup.tls {
                TlsIdentity::Pem { cert, key } => (None, (cert.clone(), key.clone())),
                TlsIdentity::Generate | TlsIdentity::FromCa(_) => {
                    let ca = match &setup.tls {
                        TlsIdentity::FromCa(ca) => ca.clone(),
                        _ => TestCa::generate()?,
                    };
                    let mut names = vec![self.host.as_str(), "localhost", "127.0.0.1", "::1"];
                    names.dedup();
                    let identity = ca.issue(&names)?;
                    (Some(ca), identity)
                }
            };
            let client_ca = match (setup.client_auth, &ca) {
                (false, _) => None,
                (true, Some(ca)) => Some(ca.certificate_pem()),
                (true, None) => {
                    return Err(BrokerError::Config("client authentication needs the cluster's CA (tls_ca)".into()))
                }
            };
            (Some(crate::security::server_tls(&identity.0, &identity.1, client_ca.as_deref())?), ca)
        } else {
            (None, None)
        };
        let sasl = if setup.protocol.uses_sasl() {
            if setup.users.is_empty() && !setup.oauth_test_validator {
                return Err(BrokerError::Config("a SASL listener needs at least one user".into()));
            }
            let max_reauth = self
                .settings
                .broker_configs
                .get("connections.max.reauth.ms")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis);
            Some(Arc::new(SaslServer::new(&setup.users, setup.oauth_test_validator, max_reauth)))
        } else {
            None
        };
        Ok((crate::security::ListenerSecurity { tls, sasl }, ca))
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
        let (security, ca) = self.listener_security()?;
        let security = Arc::new(security);
        let mut listeners = Vec::new();
        let mut brokers = Vec::new();
        for i in 0..self.brokers {
            let port = self.ports.as_ref().and_then(|p| p.get(i).copied()).unwrap_or(0);
            let addr = format!("{}:{port}", self.host);
            let listener =
                TcpListener::bind(&addr).await.map_err(|source| BrokerError::Bind { addr: addr.clone(), source })?;
            let local = listener.local_addr().map_err(|source| BrokerError::Bind { addr, source })?;
            let node_id = i as i32 + 1;
            let rack = self.racks.get(i).cloned().flatten();
            brokers.push(BrokerInfo { node_id, host: self.host.clone(), port: local.port(), rack });
            listeners.push((node_id, local, listener));
        }
        let mut settings = self.settings;
        if settings.default_replication_factor <= 0 {
            settings.default_replication_factor = brokers.len().min(3) as i16;
        }
        let state = State::new(self.cluster_id, brokers, settings.clone());
        let pool = state.pool.clone();
        let (tx, rx) = mpsc::channel(1024);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(run_state(state, rx))];
        let mut addrs = Vec::new();
        let mut controls = Vec::new();
        for (node_id, local, listener) in listeners {
            addrs.push((node_id, local));
            let (up_tx, up_rx) = watch::channel(true);
            let (listener_tx, listener_rx) = mpsc::channel(1);
            controls.push(BrokerControl { node_id, addr: local, up: up_tx, listeners: listener_tx });
            tasks.push(tokio::spawn(crate::server::accept_loop(crate::server::BrokerTask {
                node_id,
                listener: Some(listener),
                listeners: listener_rx,
                up: up_rx,
                state: tx.clone(),
                shutdown: shutdown_rx.clone(),
                max_frame_size: settings.max_frame_size,
                security: security.clone(),
                pool: pool.clone(),
            })));
            tracing::info!(node_id, %local, "broker listening");
        }
        Ok(Cluster { addrs, tx, shutdown: shutdown_tx, tasks, controls, security, ca })
    }
}

async fn run_state(mut state: State, mut rx: mpsc::Receiver<Command>) {
    let mut parked: Vec<Pending> = Vec::new();
    let mut housekeeping = tokio::time::interval(state.settings.housekeeping_interval);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_deadline = parked.iter().filter_map(|p| p.deadline).min();
        let timer_deadline = state.timer_instant();
        let version_before = state.data_version;
        tokio::select! {
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { break };
                // Coordinator timers that are due run first, so that a request sees the
                // sessions and transactions that `advance_clock` ended.
                state.fire_timers();
                match cmd {
                    Command::Request(pending) => {
                        if let Some(p) = state.process(pending, false) {
                            parked.push(p);
                        }
                    }
                    Command::Run(f) => f(&mut state),
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
            () = sleep_until(timer_deadline) => state.fire_timers(),
            _ = housekeeping.tick() => state.housekeeping(false),
        }
        if state.data_version != version_before && !parked.is_empty() {
            // New data (a produce, a marker, a timed-out transaction's abort, a delete): every
            // waiting fetch looks again.
            for p in std::mem::take(&mut parked) {
                if let Some(p) = state.process(p, false) {
                    parked.push(p);
                }
            }
        }
        state.deliver_completions();
        // A client that went away no longer waits.
        parked.retain(|p| !p.reply.is_closed());
        state.waiting.0.retain(|_, w| !w.pending.reply.is_closed());
    }
}

/// A request the group coordinator answers later, with what fault injection decided for it.
pub(crate) struct Waiting {
    pub pending: Pending,
    pub delay: Duration,
    pub drop_response: bool,
}

/// Requests waiting for the group coordinator, by ticket.
#[derive(Default)]
pub(crate) struct WaitingRequests(pub std::collections::HashMap<u64, Waiting>);

impl std::fmt::Debug for WaitingRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} waiting requests", self.0.len())
    }
}

/// What fault injection decided before a request is handled.
enum Injected {
    Nothing,
    Reply(Reply),
    Hold(crate::faults::Hold),
    Delay(Duration),
    DropResponse,
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
    fn process(&mut self, mut pending: Pending, final_attempt: bool) -> Option<Pending> {
        let api = pending.body.api_key();
        let mut delay = self.faults.latency.get(&pending.broker).copied().unwrap_or_default();
        let mut drop_response = false;
        if !pending.bypass_faults {
            self.faults.request_count += 1;
            let number = self.faults.request_count;
            self.faults.log(crate::faults::RequestRecord {
                number,
                broker: pending.broker,
                api_key: api,
                version: pending.version,
                client_id: pending.header.client_id.clone(),
                correlation_id: pending.header.correlation_id,
                at: Instant::now(),
            });
            match self.inject(&pending, number) {
                Injected::Nothing => {}
                Injected::Reply(reply) => {
                    let _ = pending.reply.send(Delivery { reply, delay, mute: Duration::ZERO });
                    return None;
                }
                Injected::Hold(hold) => {
                    let reply = Reply::Hold(hold, pending.body, pending.header);
                    let _ = pending.reply.send(Delivery { reply, delay: Duration::ZERO, mute: Duration::ZERO });
                    return None;
                }
                Injected::Delay(d) => delay += d,
                Injected::DropResponse => drop_response = true,
            }
        }
        let ctx = handlers::Ctx {
            broker: pending.broker,
            peer: pending.peer,
            header: &pending.header,
            version: pending.version,
            now_ms: self.now_ms(),
            final_attempt,
        };
        let data_before = self.data_version;
        self.faults.current_api = Some(api);
        let handled = handlers::handle(self, ctx, &mut pending.body);
        self.faults.current_api = None;
        let reply = match handled {
            handlers::Handled::Respond(body) => Reply::Response(body),
            handlers::Handled::Silent => Reply::Silent,
            handlers::Handled::Close(reason) => Reply::Close(reason),
            handlers::Handled::NotImplemented => Reply::NotImplemented,
            handlers::Handled::Park(deadline) => {
                return Some(Pending {
                    deadline: Some(pending.deadline.unwrap_or(deadline)),
                    bypass_faults: true,
                    ..pending
                });
            }
            handlers::Handled::Wait(ticket) => {
                self.waiting.0.insert(ticket, Waiting { pending, delay, drop_response });
                self.deliver_completions();
                return None;
            }
        };
        let wrote = api == ApiKey::Produce && self.data_version != data_before;
        let reply = if drop_response || (wrote && self.faults.lose_response()) {
            Reply::Close("response lost after the write (fault injection)".into())
        } else {
            reply
        };
        // A throttled client: KIP-219 versions get the answer at once and a muted channel;
        // older ones get the answer late.
        let mut mute = Duration::ZERO;
        let throttle = match &reply {
            Reply::Response(ResponseBody::Produce(r)) => Some((r.throttle_time_ms, 6)),
            Reply::Response(ResponseBody::Fetch(r)) => Some((r.throttle_time_ms, 8)),
            _ => None,
        };
        if let Some((ms, kip219_version)) = throttle.filter(|(ms, _)| *ms > 0) {
            let d = Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            if pending.version >= kip219_version {
                mute = d;
            } else {
                delay += d;
            }
        }
        // The connection may be gone; its response is simply dropped.
        let _ = pending.reply.send(Delivery { reply, delay, mute });
        None
    }

    /// Interceptors, pushed errors and chaos, in that order, for a request not yet handled.
    fn inject(&mut self, pending: &Pending, number: u64) -> Injected {
        use crate::faults::{Action, ErrorScope, Fault, InterceptedRequest, Times};
        let api = pending.body.api_key();
        let version = pending.version;
        let error_reply =
            |code: kafka_protocol::ErrorCode| match handlers::errors::error_response(&pending.body, version, code) {
                Some(body) => Reply::Response(body),
                None => Reply::Close(format!("injected {code} for an API without an error layout")),
            };
        // Interceptors: the first that acts wins.
        let seen = InterceptedRequest {
            broker: pending.broker,
            api_key: api,
            version,
            client_id: pending.header.client_id.as_deref(),
            correlation_id: pending.header.correlation_id,
            body: &pending.body,
        };
        let mut acted: Option<(usize, Action)> = None;
        for (i, icp) in self.faults.interceptors.iter_mut().enumerate() {
            if icp.api != api {
                continue;
            }
            match (icp.f)(&seen) {
                Action::Pass => continue,
                action => {
                    acted = Some((i, action));
                    break;
                }
            }
        }
        if let Some((i, action)) = acted {
            if let Some(icp) = self.faults.interceptors.get_mut(i) {
                let done = match icp.remaining {
                    Times::Once | Times::Count(0) | Times::Count(1) => true,
                    Times::Count(n) => {
                        icp.remaining = Times::Count(n - 1);
                        false
                    }
                    Times::Always => false,
                };
                if done {
                    self.faults.interceptors.remove(i);
                }
            }
            return match action {
                Action::Pass => Injected::Nothing,
                Action::Respond(body) => Injected::Reply(Reply::Response(body)),
                Action::Error(code) => Injected::Reply(error_reply(code)),
                Action::Delay(d) => Injected::Delay(d),
                Action::DropConnection => Injected::Reply(Reply::Close("dropped by an interceptor".into())),
                Action::DropResponse => Injected::DropResponse,
                Action::Hold(h) => Injected::Hold(h),
            };
        }
        // Pushed errors: cluster-wide, then this broker's.
        if !self.faults.pushed.is_empty() {
            for scope in [ErrorScope::Cluster, ErrorScope::Broker(pending.broker)] {
                if let Some(code) = self.faults.pop(api, &scope) {
                    if code != kafka_protocol::ErrorCode::None {
                        return Injected::Reply(error_reply(code));
                    }
                    return Injected::Nothing;
                }
            }
        }
        // Chaos.
        let Some((chaos, rng)) = self.faults.chaos.as_mut() else { return Injected::Nothing };
        let applies = if chaos.apis.is_empty() {
            matches!(api, ApiKey::Produce | ApiKey::Fetch)
        } else {
            chaos.apis.contains(&api)
        };
        if !applies {
            return Injected::Nothing;
        }
        // Draw every probability each time so the sequence does not depend on outcomes.
        let (d_drop, d_err, d_move, d_lat) = (rng.next_f64(), rng.next_f64(), rng.next_f64(), rng.next_f64());
        let (pick_err, pick_part, pick_lat) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let fault = if d_drop < chaos.drop_connection {
            Some(Fault::DropConnection)
        } else if d_err < chaos.inject_error {
            let errors = if chaos.errors.is_empty() {
                vec![kafka_protocol::ErrorCode::NotLeaderOrFollower, kafka_protocol::ErrorCode::RequestTimedOut]
            } else {
                chaos.errors.clone()
            };
            errors.get((pick_err % errors.len() as u64) as usize).copied().map(Fault::Error)
        } else if d_move < chaos.move_leader {
            self.chaos_move_leader(pick_part)
        } else if d_lat < chaos.latency {
            let max = u64::try_from(chaos.max_latency.as_millis()).unwrap_or(u64::MAX).max(1);
            Some(Fault::Latency(Duration::from_millis(1 + pick_lat % max)))
        } else {
            None
        };
        let Some(fault) = fault else { return Injected::Nothing };
        self.faults.chaos_log.push(crate::faults::ChaosEvent {
            request: number,
            broker: pending.broker,
            api_key: api,
            fault: fault.clone(),
        });
        match fault {
            Fault::DropConnection => Injected::Reply(Reply::Close("dropped by the chaos schedule".into())),
            Fault::Error(code) => Injected::Reply(error_reply(code)),
            Fault::MoveLeader { .. } => Injected::Nothing,
            Fault::Latency(d) => Injected::Delay(d),
        }
    }

    /// Moves the leadership of the `pick`-th partition (over all topics) to its next in-sync
    /// replica, if it has another.
    fn chaos_move_leader(&mut self, pick: u64) -> Option<crate::faults::Fault> {
        let total: usize = self.topics.values().map(|t| t.partitions.len()).sum();
        if total == 0 {
            return None;
        }
        let mut n = (pick % total as u64) as usize;
        for (name, t) in &mut self.topics {
            if n >= t.partitions.len() {
                n -= t.partitions.len();
                continue;
            }
            let p = t.partitions.get_mut(n)?;
            let pos = p.isr.iter().position(|b| *b == p.leader).unwrap_or(0);
            let next = p.isr.get((pos + 1) % p.isr.len().max(1)).copied()?;
            if next == p.leader {
                return None;
            }
            p.leader = next;
            p.leader_epoch += 1;
            return Some(crate::faults::Fault::MoveLeader { topic: name.clone(), partition: n as i32, to: next });
        }
        None
    }

    /// Marks a broker stopped: it leaves every ISR, and partitions it led move to the next
    /// in-sync live replica (or have no leader) with a bumped leader epoch.
    pub fn stop_broker(&mut self, id: i32) {
        self.stopped.insert(id);
        let stopped = self.stopped.clone();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                let was_in_isr = p.isr.contains(&id);
                if was_in_isr && p.isr.len() > 1 {
                    p.isr.retain(|b| *b != id);
                }
                if p.leader == id {
                    p.leader = p.isr.iter().copied().find(|b| !stopped.contains(b)).unwrap_or(-1);
                    p.leader_epoch += 1;
                }
            }
        }
        if self.controller_id == id {
            if let Some(b) = self.brokers.iter().find(|b| !self.stopped.contains(&b.node_id)) {
                self.controller_id = b.node_id;
            }
        }
        self.fetch_sessions = Default::default();
        self.data_version += 1;
        // Its groups move to a live broker.
        self.sync_coordinators();
    }

    /// Marks a stopped broker running again: it rejoins the ISR of its partitions at once
    /// (replication is simulated) and leads the partitions that had no leader.
    pub fn start_broker(&mut self, id: i32) {
        self.stopped.remove(&id);
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if !p.replicas.contains(&id) {
                    continue;
                }
                if !p.isr.contains(&id) {
                    p.isr.push(id);
                }
                if p.leader < 0 {
                    p.leader = id;
                    p.isr.retain(|b| *b == id || !self.stopped.contains(b));
                    p.leader_epoch += 1;
                }
            }
        }
        self.data_version += 1;
        // Groups whose coordinator partition it leads move back to it.
        self.sync_coordinators();
        // Partitions that had no leader can take their transaction markers now.
        self.retry_pending_markers();
    }

    /// Background work: retention and compaction of every partition, due coordinator timers,
    /// markers waiting for a leader, and (every `offsets.retention.check.interval.ms` and
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, or now if `force`) offset
    /// and transactional id expiration.
    pub fn housekeeping(&mut self, force: bool) {
        let now = self.now_ms();
        let mut trimmed = false;
        for topic in self.topics.values_mut() {
            for p in &mut topic.partitions {
                trimmed |= p.log.apply_retention(&topic.settings, now) > 0;
                trimmed |= p.log.compact(&topic.settings, now) > 0;
                self.pool.give_all(p.log.take_freed());
            }
        }
        if trimmed {
            self.data_version += 1;
        }
        self.pool.shed();
        self.fire_timers();
        self.retry_pending_markers();
        self.groups.maybe_cleanup(now, force);
        self.expire_transactional_ids(force);
    }

    /// Moves the coordinator of `key` (a group or a transactional id) to the next live broker.
    fn move_coordinator(&mut self, key_type: i8, key: &str) -> Result<i32, BrokerError> {
        let current = self.coordinator_for(key_type, key);
        let live: Vec<i32> = self.brokers.iter().map(|b| b.node_id).filter(|id| !self.stopped.contains(id)).collect();
        let pos = live.iter().position(|id| Some(*id) == current).unwrap_or(0);
        let next = live.get((pos + 1) % live.len().max(1)).copied().filter(|n| Some(*n) != current);
        let Some(next) = next else {
            return Err(BrokerError::Config(format!("no other live broker to coordinate {key}")));
        };
        self.groups.overrides.insert((key_type, key.to_string()), next);
        self.sync_coordinators();
        self.deliver_completions();
        Ok(next)
    }

    /// Runs the group and transaction timers that are due.
    pub fn fire_timers(&mut self) {
        self.fire_group_timers();
        self.fire_txn_timers();
    }

    /// Runs the group timers that are due.
    pub fn fire_group_timers(&mut self) {
        if self.groups.next_deadline().is_none() {
            return;
        }
        let now = self.now_ms();
        if self.groups.next_deadline().is_some_and(|d| d <= now) {
            self.groups.fire_timers(now);
        }
    }

    /// When the next coordinator timer is due, as an instant for the state task's sleep.
    fn timer_instant(&self) -> Option<Instant> {
        let at = match (self.groups.next_deadline(), self.txns.next_deadline()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let wait = u64::try_from(at.saturating_sub(self.now_ms())).unwrap_or(0);
        Instant::now().checked_add(Duration::from_millis(wait))
    }

    /// Sends the coordinator's answers to the requests waiting for them.
    pub fn deliver_completions(&mut self) {
        if self.groups.completions.is_empty() {
            return;
        }
        for completion in std::mem::take(&mut self.groups.completions) {
            // A request whose client went away is no longer waiting.
            let Some(w) = self.waiting.0.remove(&completion.ticket()) else { continue };
            let body: ResponseBody = match completion {
                crate::groups::Completion::Join(waiter, r) => handlers::join_group::response(waiter.version, r).into(),
                crate::groups::Completion::Sync(waiter, r) => handlers::sync_group::response(waiter.version, r).into(),
            };
            let reply = if w.drop_response {
                Reply::Close("response lost after the write (fault injection)".into())
            } else {
                Reply::Response(body)
            };
            let _ = w.pending.reply.send(Delivery { reply, delay: w.delay, mute: Duration::ZERO });
        }
    }
}

/// A partition's log and replication state (see [`Cluster::partition_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// The first offset still stored.
    pub log_start_offset: i64,
    /// The high watermark (the log end: replication is simulated).
    pub high_watermark: i64,
    /// The last stable offset: where read_committed consumers stop (the first offset of the
    /// oldest open transaction, or the high watermark).
    pub last_stable_offset: i64,
    /// Bytes of record batches stored.
    pub stored_bytes: usize,
    /// The leader's node id (-1: none).
    pub leader: i32,
    /// The leader epoch.
    pub leader_epoch: i32,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
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
    controls: Vec<BrokerControl>,
    security: Arc<crate::security::ListenerSecurity>,
    ca: Option<crate::security::TestCa>,
}

/// The handle on one broker's listener task.
#[derive(Debug)]
struct BrokerControl {
    node_id: i32,
    addr: SocketAddr,
    up: watch::Sender<bool>,
    listeners: mpsc::Sender<TcpListener>,
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

    /// The CA certificate (PEM) that TLS clients must trust, when the cluster made or was
    /// given a CA: the value for `ssl.ca.location` (as a file) or `ssl.ca.pem`.
    pub fn tls_ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(|ca| ca.certificate_pem())
    }

    /// The cluster's CA, to issue client certificates for mTLS tests.
    pub fn tls_ca(&self) -> Option<&crate::security::TestCa> {
        self.ca.as_ref()
    }

    /// Counters of SASL authentications, re-authentications, failures and refused
    /// connections (all zero on listeners without SASL).
    pub fn security_stats(&self) -> crate::security::SecurityStats {
        self.security.sasl.as_ref().map(|s| s.counters.snapshot()).unwrap_or_default()
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

    /// Creates a topic with topic configs by Kafka's names, e.g.
    /// `[("cleanup.policy", "compact")]`, validated as CreateTopics validates them.
    ///
    /// # Errors
    /// As [`Cluster::create_topic`], and INVALID_CONFIG for an unknown config or bad value.
    pub async fn create_topic_with_configs(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<(), BrokerError> {
        let name = name.to_string();
        let configs: BTreeMap<String, String> =
            configs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        self.run(move |state| {
            handlers::create_topics::create(state, &name, partitions, replication_factor, configs, false)
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

    /// Moves the cluster clock forward by `ms` milliseconds, so retention, compaction,
    /// timestamps, the group coordinator's timeouts (sessions, rebalance timeouts, the
    /// initial rebalance delay) and transaction timeouts (`transaction.timeout.ms`: the
    /// transaction is aborted and its producer fenced) can be tested without waiting. Timers
    /// that are due by then have fired when this returns (their answers are on their way to
    /// the clients). The clock never goes back.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn advance_clock(&self, ms: u64) -> Result<(), BrokerError> {
        self.run(move |state| {
            state.clock_offset_ms = state.clock_offset_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
            state.fire_timers();
            state.deliver_completions();
        })
        .await
    }

    /// Runs retention and compaction on every partition now (they also run every
    /// `log.retention.check.interval.ms`, 1 s by default here, 5 min in Kafka), and the group
    /// coordinator's cleanup: expired offsets and empty groups without offsets are removed
    /// (otherwise every `offsets.retention.check.interval.ms`, 10 min as in Kafka).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn run_housekeeping(&self) -> Result<(), BrokerError> {
        self.run(|state| {
            state.housekeeping(true);
            state.deliver_completions();
        })
        .await
    }

    fn control(&self, id: i32) -> Result<&BrokerControl, BrokerError> {
        self.controls
            .iter()
            .find(|c| c.node_id == id)
            .ok_or_else(|| BrokerError::Config(format!("no broker with node id {id}")))
    }

    /// Stops a broker: its listener closes (connections are refused), its connections end,
    /// it leaves every ISR, and the partitions it led move to another in-sync replica with a
    /// bumped leader epoch (or have no leader if none is left). Clients then get
    /// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH and must re-route.
    ///
    /// # Errors
    /// [`BrokerError::Config`] for an unknown node id; [`BrokerError::Stopped`] after shutdown.
    pub async fn stop_broker(&self, id: i32) -> Result<(), BrokerError> {
        let control = self.control(id)?;
        self.run(move |state| state.stop_broker(id)).await?;
        let _ = control.up.send(false);
        Ok(())
    }

    /// Starts a stopped broker again on its old address; it rejoins the ISR of its
    /// partitions and leads those that had no leader. Leadership that moved away stays
    /// where it is (use [`Cluster::set_leader`] to move it back).
    ///
    /// # Errors
    /// [`BrokerError::Bind`] if the old port was taken meanwhile; [`BrokerError::Config`] for
    /// an unknown node id; [`BrokerError::Stopped`] after shutdown.
    pub async fn start_broker(&self, id: i32) -> Result<(), BrokerError> {
        let control = self.control(id)?;
        if *control.up.borrow() {
            return Ok(());
        }
        let addr = control.addr;
        let listener =
            TcpListener::bind(addr).await.map_err(|source| BrokerError::Bind { addr: addr.to_string(), source })?;
        control.listeners.send(listener).await.map_err(|_| BrokerError::Stopped)?;
        let _ = control.up.send(true);
        self.run(move |state| state.start_broker(id)).await
    }

    /// Makes `broker` the leader of a partition (it must be a replica), or leaves the
    /// partition without a leader (`None`), bumping the leader epoch either way.
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with UNKNOWN_TOPIC_OR_PARTITION, or INVALID_REPLICA_ASSIGNMENT
    /// when `broker` is not a replica of the partition.
    pub async fn set_leader(&self, topic: &str, partition: i32, broker: Option<i32>) -> Result<(), BrokerError> {
        let topic = topic.to_string();
        self.run(move |state| {
            let unknown = || BrokerError::Kafka {
                code: kafka_protocol::ErrorCode::UnknownTopicOrPartition,
                message: format!("{topic}-{partition}"),
            };
            let t = state.topics.get_mut(&topic).ok_or_else(unknown)?;
            let p = usize::try_from(partition).ok().and_then(|i| t.partitions.get_mut(i)).ok_or_else(unknown)?;
            match broker {
                Some(b) if !p.replicas.contains(&b) => {
                    return Err(BrokerError::Kafka {
                        code: kafka_protocol::ErrorCode::InvalidReplicaAssignment,
                        message: format!("broker {b} is not a replica of {topic}-{partition}"),
                    })
                }
                Some(b) => {
                    if !p.isr.contains(&b) {
                        p.isr.push(b);
                    }
                    p.leader = b;
                }
                None => p.leader = -1,
            }
            p.leader_epoch += 1;
            state.data_version += 1;
            state.retry_pending_markers();
            Ok(())
        })
        .await?
    }

    /// The broker coordinating group `group_id` (where FindCoordinator points its members).
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with COORDINATOR_NOT_AVAILABLE if every broker is stopped;
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn group_coordinator(&self, group_id: &str) -> Result<i32, BrokerError> {
        let group = group_id.to_string();
        self.run(move |state| state.coordinator_for(crate::groups::KEY_TYPE_GROUP, &group)).await?.ok_or_else(|| {
            BrokerError::Kafka {
                code: kafka_protocol::ErrorCode::CoordinatorNotAvailable,
                message: "no live broker".into(),
            }
        })
    }

    /// Moves group `group_id`'s coordinator to the next live broker, as a leadership change
    /// of its `__consumer_offsets` partition would: the old coordinator answers the group's
    /// requests with NOT_COORDINATOR, and JoinGroup and SyncGroup requests waiting there are
    /// answered NOT_COORDINATOR at once, so members look the coordinator up again
    /// (FindCoordinator) and carry on with the new one. Returns the new coordinator's node id.
    ///
    /// The group's members, generation and offsets move with it (Kafka would reload them
    /// from the log: the same members and offsets, but a rebalance in progress restarts).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kafka_broker::BrokerError> {
    /// use kafka_broker::Cluster;
    ///
    /// let cluster = Cluster::builder().brokers(3).start().await?;
    /// let before = cluster.group_coordinator("payments").await?;
    /// let after = cluster.move_coordinator("payments").await?;
    /// assert_ne!(before, after);
    /// assert_eq!(cluster.group_coordinator("payments").await?, after);
    /// cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`BrokerError::Config`] when no other broker is running; [`BrokerError::Stopped`]
    /// after shutdown.
    pub async fn move_coordinator(&self, group_id: &str) -> Result<i32, BrokerError> {
        let group = group_id.to_string();
        self.run(move |state| state.move_coordinator(crate::groups::KEY_TYPE_GROUP, &group)).await?
    }

    /// The broker coordinating transactional id `transactional_id` (where FindCoordinator
    /// with key type 1 points its producer).
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with COORDINATOR_NOT_AVAILABLE if every broker is stopped;
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn transaction_coordinator(&self, transactional_id: &str) -> Result<i32, BrokerError> {
        let id = transactional_id.to_string();
        self.run(move |state| state.coordinator_for(crate::groups::KEY_TYPE_TRANSACTION, &id)).await?.ok_or_else(|| {
            BrokerError::Kafka {
                code: kafka_protocol::ErrorCode::CoordinatorNotAvailable,
                message: "no live broker".into(),
            }
        })
    }

    /// Moves transactional id `transactional_id`'s coordinator to the next live broker, as a
    /// leadership change of its `__transaction_state` partition would: the old coordinator
    /// answers NOT_COORDINATOR, and the producer looks the coordinator up again. The
    /// transaction's state moves with it (an open transaction stays open). Returns the new
    /// coordinator's node id.
    ///
    /// # Errors
    /// [`BrokerError::Config`] when no other broker is running; [`BrokerError::Stopped`]
    /// after shutdown.
    pub async fn move_transaction_coordinator(&self, transactional_id: &str) -> Result<i32, BrokerError> {
        let id = transactional_id.to_string();
        self.run(move |state| state.move_coordinator(crate::groups::KEY_TYPE_TRANSACTION, &id)).await?
    }

    /// Adds an interceptor for requests of `api`: `f` sees each request (in arrival order,
    /// on the cluster's state task: keep it quick) and decides what happens to it. It acts
    /// `times` times; requests it answers [`crate::Action::Pass`] do not count. The first
    /// interceptor that acts wins.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kafka_broker::BrokerError> {
    /// use kafka_broker::{Action, Cluster, Times};
    /// use kafka_protocol::{ApiKey, ErrorCode};
    ///
    /// let cluster = Cluster::builder().start().await?;
    /// // The next Produce is refused as if the broker had lost leadership.
    /// let id = cluster.intercept(ApiKey::Produce, Times::Once, |_req| Action::Error(ErrorCode::NotLeaderOrFollower)).await?;
    /// cluster.remove_intercept(id).await?; // or let it fire
    /// cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn intercept<F>(
        &self,
        api: ApiKey,
        times: crate::faults::Times,
        f: F,
    ) -> Result<crate::faults::InterceptId, BrokerError>
    where
        F: FnMut(&crate::faults::InterceptedRequest<'_>) -> crate::faults::Action + Send + 'static,
    {
        self.run(move |state| {
            state.faults.next_intercept += 1;
            let id = crate::faults::InterceptId(state.faults.next_intercept);
            state.faults.interceptors.push(crate::faults::Interceptor { id, api, remaining: times, f: Box::new(f) });
            id
        })
        .await
    }

    /// Removes an interceptor; false if it was already gone (used up or removed).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn remove_intercept(&self, id: crate::faults::InterceptId) -> Result<bool, BrokerError> {
        self.run(move |state| {
            let before = state.faults.interceptors.len();
            state.faults.interceptors.retain(|i| i.id != id);
            state.faults.interceptors.len() != before
        })
        .await
    }

    /// Queues error codes for requests of `api` in `scope`: each matching request (or, for
    /// [`crate::ErrorScope::Partition`], each request naming the partition) takes the next
    /// code. [`kafka_protocol::ErrorCode::None`] in the queue lets one request through.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn push_errors(
        &self,
        api: ApiKey,
        scope: crate::faults::ErrorScope,
        codes: impl IntoIterator<Item = kafka_protocol::ErrorCode>,
    ) -> Result<(), BrokerError> {
        let codes: Vec<_> = codes.into_iter().collect();
        self.run(move |state| state.faults.pushed.entry((api, scope)).or_default().extend(codes)).await
    }

    /// Delays every answer of `broker` by `latency` (zero removes the delay).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn set_latency(&self, broker: i32, latency: Duration) -> Result<(), BrokerError> {
        self.run(move |state| {
            if latency.is_zero() {
                state.faults.latency.remove(&broker);
            } else {
                state.faults.latency.insert(broker, latency);
            }
        })
        .await
    }

    /// Loses Produce responses after the batch was written: the connection closes instead
    /// of answering, a "possibly persisted" outcome for the client.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn lose_response_after_append(&self, loss: crate::faults::Loss) -> Result<(), BrokerError> {
        self.run(move |state| {
            if let crate::faults::Loss::Probability(_) = loss {
                let seed = state.faults.chaos.as_ref().map_or(0, |(c, _)| c.seed);
                state.faults.loss_rng = Some(crate::faults::SplitMix64::new(seed ^ 0x6c6f_7373));
            }
            state.faults.loss = Some(loss);
        })
        .await
    }

    /// Forgets every producer's idempotence state on every partition, as a broker that lost
    /// it would: the next batch of a producer that does not start at sequence 0 gets
    /// UNKNOWN_PRODUCER_ID. Producers with a transaction open on a partition keep their
    /// state there (Kafka rebuilds it from the log).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn forget_producer_state(&self) -> Result<(), BrokerError> {
        self.run(|state| {
            for t in state.topics.values_mut() {
                for p in &mut t.partitions {
                    p.log.forget_producers();
                }
            }
        })
        .await
    }

    /// Starts a seeded chaos schedule (replacing any earlier one), or stops it (`None`).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn set_chaos(&self, chaos: Option<crate::faults::Chaos>) -> Result<(), BrokerError> {
        self.run(move |state| {
            state.faults.chaos = chaos.map(|c| {
                let rng = crate::faults::SplitMix64::new(c.seed);
                (c, rng)
            });
        })
        .await
    }

    /// The faults the chaos schedule applied so far, in order.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn chaos_log(&self) -> Result<Vec<crate::faults::ChaosEvent>, BrokerError> {
        self.run(|state| state.faults.chaos_log.clone()).await
    }

    /// The requests the brokers received, oldest first (the last 100,000).
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn request_log(&self) -> Result<Vec<crate::faults::RequestRecord>, BrokerError> {
        self.run(|state| state.faults.request_log.iter().cloned().collect()).await
    }

    /// Empties the request log.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn clear_request_log(&self) -> Result<(), BrokerError> {
        self.run(|state| state.faults.request_log.clear()).await
    }

    /// Sets a client's byte-rate quotas (Kafka's `producer_byte_rate` and
    /// `consumer_byte_rate` client quotas), bytes per second; `None` falls back to the
    /// broker defaults `quota.producer.default` / `quota.consumer.default` (unlimited if
    /// unset). Over its quota, a client gets `throttle_time_ms` and a muted connection.
    ///
    /// # Errors
    /// [`BrokerError::Stopped`] after shutdown.
    pub async fn set_client_quota(
        &self,
        client_id: &str,
        producer_byte_rate: Option<f64>,
        consumer_byte_rate: Option<f64>,
    ) -> Result<(), BrokerError> {
        let client = client_id.to_string();
        self.run(move |state| {
            state.quotas.per_client.insert(client, (producer_byte_rate, consumer_byte_rate));
        })
        .await
    }

    /// A partition's log as the broker holds it: offsets and stored bytes.
    ///
    /// # Errors
    /// [`BrokerError::Kafka`] with UNKNOWN_TOPIC_OR_PARTITION; [`BrokerError::Stopped`].
    pub async fn partition_stats(&self, topic: &str, partition: i32) -> Result<PartitionStats, BrokerError> {
        let name = topic.to_string();
        self.run(move |state| {
            handlers::lookup_partition(state, &name, partition).map(|p| PartitionStats {
                log_start_offset: p.log.log_start_offset(),
                high_watermark: p.log.high_watermark(),
                last_stable_offset: p.log.last_stable_offset(),
                stored_bytes: p.log.size_bytes(),
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                isr: p.isr.clone(),
            })
        })
        .await?
        .ok_or_else(|| BrokerError::Kafka {
            code: kafka_protocol::ErrorCode::UnknownTopicOrPartition,
            message: format!("{topic}-{partition}"),
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
