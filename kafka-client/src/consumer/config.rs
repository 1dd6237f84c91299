//! Consumer settings, with the Java consumer's names and defaults.

use std::time::Duration;

use crate::config::{config_error, parse_bool, parse_ms, parse_num, split_list, ClientConfig};
use crate::error::{Error, Result};

/// `auto.offset.reset`: where to start when a partition has no committed offset, or when the
/// position is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// The earliest offset still in the log.
    Earliest,
    /// The end of the log: only records written from now on (Java's default).
    #[default]
    Latest,
    /// No reset: `poll` returns [`Error::NoOffset`] for the partition.
    None,
}

/// `isolation.level`: which records of transactions a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationLevel {
    /// Every record, including those of open and aborted transactions (the default).
    #[default]
    ReadUncommitted,
    /// Only committed records, up to the last stable offset.
    ReadCommitted,
}

impl IsolationLevel {
    /// The value on the wire (Fetch and ListOffsets).
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

/// `group.protocol`: the classic group protocol or the next-generation one (KIP-848).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kafka_client::{Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
///
/// let cluster = kafka_broker::Cluster::builder().start().await?;
/// cluster.create_topic("orders", 2, 1).await?;
/// let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()))?;
/// producer.send(ProducerRecord::new("orders").value("v")).await?.await?;
///
/// // The broker assigns the partitions; the listener and commits work as with `classic`.
/// let consumer = Consumer::new(
///     ConsumerConfig::new(&cluster.bootstrap_servers())
///         .set("group.id", "billing")?
///         .set("group.protocol", "consumer")?
///         .set("auto.offset.reset", "earliest")?,
/// )?;
/// consumer.subscribe(["orders"])?;
/// let record = consumer.recv().await?;
/// assert_eq!(record.value(), Some(&b"v"[..]));
/// assert_eq!(consumer.assignment().len(), 2);
/// assert!(consumer.group_metadata().unwrap().generation_id > 0); // the member epoch
/// consumer.commit().await?;
/// consumer.close().await?;
/// # producer.close(std::time::Duration::from_secs(5)).await?;
/// # cluster.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup / SyncGroup / Heartbeat with client-side assignment.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat with server-side assignment (needs a broker that
    /// supports it, e.g. Kafka 4.0+ or the bundled broker).
    Consumer,
}

/// Consumer settings.
///
/// ```
/// use kafka_client::ConsumerConfig;
/// let config = ConsumerConfig::new("localhost:9092")
///     .set("group.id", "billing")?
///     .set("auto.offset.reset", "earliest")?
///     .set("partition.assignment.strategy", "cooperative-sticky")?;
/// assert_eq!(config.group_id.as_deref(), Some("billing"));
/// # Ok::<(), kafka_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// `group.id`: the consumer group. Without one, only `assign` works and offsets cannot be
    /// committed.
    pub group_id: Option<String>,
    /// `group.instance.id`: makes this member static (KIP-345): a restart within
    /// `session.timeout.ms` gets its assignment back without a rebalance.
    pub group_instance_id: Option<String>,
    /// `auto.offset.reset`, default latest.
    pub auto_offset_reset: OffsetReset,
    /// `enable.auto.commit`, default true (false without a group.id): commits the positions of
    /// records handed out by earlier `poll`/`recv` calls every `auto.commit.interval.ms`.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`, default 5 s.
    pub auto_commit_interval: Duration,
    /// `fetch.min.bytes`, default 1.
    pub fetch_min_bytes: i32,
    /// `fetch.max.wait.ms`, default 500 ms: how long the broker may hold a fetch waiting for
    /// `fetch.min.bytes`.
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`, default 50 MiB: the byte limit of one fetch response.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`, default 1 MiB: per partition per fetch; also the
    /// prefetch limit of one partition.
    pub max_partition_fetch_bytes: i32,
    /// `queued.max.messages.kbytes` (librdkafka's name), default 65536 (64 MiB): the total
    /// prefetched data waiting for the application; fetching stops above it.
    pub max_buffered_bytes: usize,
    /// `max.poll.records`, default 500: the most records one `poll` returns.
    pub max_poll_records: usize,
    /// `max.poll.interval.ms`, default 5 min: a member that does not call `poll`/`recv` for
    /// this long leaves the group; also the rebalance timeout.
    pub max_poll_interval: Duration,
    /// `session.timeout.ms`, default 45 s.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`, default 3 s.
    pub heartbeat_interval: Duration,
    /// `partition.assignment.strategy`, default `range, cooperative-sticky` (Java 3.x's
    /// default): the assignors this member supports, preferred first.
    pub assignment_strategies: Vec<String>,
    /// `isolation.level`, default read_uncommitted.
    pub isolation_level: IsolationLevel,
    /// `check.crcs`, default true: verify every batch's CRC-32C.
    pub check_crcs: bool,
    /// `client.rack`: sent with fetches (KIP-392 follower fetching) and subscriptions.
    pub client_rack: Option<String>,
    /// `group.protocol`, default classic. With `consumer` (KIP-848) the broker assigns
    /// partitions and sets the heartbeat interval and session timeout;
    /// `partition.assignment.strategy`, `heartbeat.interval.ms` and `session.timeout.ms` must
    /// then keep their defaults ([`Self::validate`] refuses them otherwise, as Java 4 does).
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the server-side assignor the group should use with
    /// `group.protocol=consumer` (e.g. `uniform`, `range`); none by default (the broker's
    /// default).
    pub group_remote_assignor: Option<String>,
    /// `allow.auto.create.topics`, default true: subscribing asks the broker to create
    /// missing topics (if the broker allows it).
    pub allow_auto_create_topics: bool,
    /// `exclude.internal.topics`, default true: patterns never match internal topics.
    pub exclude_internal_topics: bool,
    /// `default.api.timeout.ms`, default 60 s: the bound on blocking calls without their own
    /// timeout (commit, committed, offset lookups, close).
    pub default_api_timeout: Duration,
    auto_commit_set: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            group_instance_id: None,
            auto_offset_reset: OffsetReset::Latest,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5_000),
            fetch_min_bytes: 1,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 52_428_800,
            max_partition_fetch_bytes: 1_048_576,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_poll_records: 500,
            max_poll_interval: Duration::from_millis(300_000),
            session_timeout: Duration::from_millis(45_000),
            heartbeat_interval: Duration::from_millis(3_000),
            assignment_strategies: vec!["range".to_owned(), "cooperative-sticky".to_owned()],
            isolation_level: IsolationLevel::ReadUncommitted,
            check_crcs: true,
            client_rack: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
            allow_auto_create_topics: true,
            exclude_internal_topics: true,
            default_api_timeout: Duration::from_millis(60_000),
            auto_commit_set: false,
        }
    }
}

impl ConsumerConfig {
    /// Defaults, with the given bootstrap servers (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Self {
        ConsumerConfig { client: ClientConfig::new(bootstrap_servers), ..Default::default() }
    }

    /// Settings from Java property names and values.
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> Result<Self> {
        let mut config = ConsumerConfig::default();
        for (k, v) in props {
            config = config.set(k.as_ref(), v.as_ref())?;
        }
        Ok(config)
    }

    /// Sets one property by its Java name (a few librdkafka names are accepted too).
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let value = value.trim();
        if self.client.apply(key, value)? {
            return Ok(self);
        }
        match key {
            "group.id" => self.group_id = (!value.is_empty()).then(|| value.to_owned()),
            "group.instance.id" => self.group_instance_id = (!value.is_empty()).then(|| value.to_owned()),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value.to_ascii_lowercase().as_str() {
                    "earliest" | "smallest" | "beginning" => OffsetReset::Earliest,
                    "latest" | "largest" | "end" => OffsetReset::Latest,
                    "none" | "error" => OffsetReset::None,
                    _ => return Err(config_error(key, "expected earliest, latest or none")),
                }
            }
            "enable.auto.commit" => {
                self.enable_auto_commit = parse_bool(key, value)?;
                self.auto_commit_set = true;
            }
            "auto.commit.interval.ms" => self.auto_commit_interval = parse_ms(key, value, 1)?,
            "fetch.min.bytes" => self.fetch_min_bytes = parse_num(key, value, 0, i32::MAX as u64)?,
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => self.fetch_max_wait = parse_ms(key, value, 0)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_num(key, value, 1, i32::MAX as u64)?,
            "max.partition.fetch.bytes" | "fetch.message.max.bytes" => {
                self.max_partition_fetch_bytes = parse_num(key, value, 1, i32::MAX as u64)?
            }
            "queued.max.messages.kbytes" => {
                let kb: usize = parse_num(key, value, 1, 2_097_151)?;
                self.max_buffered_bytes = kb * 1024;
            }
            "max.poll.records" => self.max_poll_records = parse_num(key, value, 1, i32::MAX as u64)?,
            "max.poll.interval.ms" => self.max_poll_interval = parse_ms(key, value, 1)?,
            "session.timeout.ms" => self.session_timeout = parse_ms(key, value, 1)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = parse_ms(key, value, 1)?,
            "partition.assignment.strategy" => {
                let list = split_list(value);
                if list.is_empty() {
                    return Err(config_error(key, "empty list"));
                }
                self.assignment_strategies = list;
            }
            "isolation.level" => {
                self.isolation_level = match value.to_ascii_lowercase().as_str() {
                    "read_uncommitted" => IsolationLevel::ReadUncommitted,
                    "read_committed" => IsolationLevel::ReadCommitted,
                    _ => return Err(config_error(key, "expected read_uncommitted or read_committed")),
                }
            }
            "check.crcs" => self.check_crcs = parse_bool(key, value)?,
            "client.rack" => self.client_rack = (!value.is_empty()).then(|| value.to_owned()),
            "group.protocol" => {
                self.group_protocol = match value.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(config_error(key, "expected classic or consumer")),
                }
            }
            "group.remote.assignor" => self.group_remote_assignor = (!value.is_empty()).then(|| value.to_owned()),
            "allow.auto.create.topics" => self.allow_auto_create_topics = parse_bool(key, value)?,
            "exclude.internal.topics" => self.exclude_internal_topics = parse_bool(key, value)?,
            "default.api.timeout.ms" => self.default_api_timeout = parse_ms(key, value, 1)?,
            // Accepted for compatibility with Java property files: this client hands out
            // keys and values as bytes.
            "key.deserializer" | "value.deserializer" => {}
            _ => return Err(config_error(key, "unknown consumer setting")),
        }
        Ok(self)
    }

    /// Sets `group.id`.
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Sets `auto.offset.reset`.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Sets `enable.auto.commit`.
    pub fn enable_auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self.auto_commit_set = true;
        self
    }

    /// Checks the settings together, as the Java consumer does.
    pub fn validate(&mut self) -> Result<()> {
        self.client.validate()?;
        if self.group_id.is_none() {
            if self.enable_auto_commit && self.auto_commit_set {
                return Err(config_error("enable.auto.commit", "needs a group.id"));
            }
            self.enable_auto_commit = false;
            if self.group_instance_id.is_some() {
                return Err(config_error("group.instance.id", "needs a group.id"));
            }
        }
        if self.group_protocol == GroupProtocol::Consumer {
            // As the Java consumer (4.x) does: with KIP-848 the broker assigns partitions and
            // sets the heartbeat interval and session timeout, so the classic settings would be
            // silently ignored. Java rejects them when set at all; here, when they differ from
            // the defaults (the public fields cannot tell "set to the default" from "unset").
            let defaults = ConsumerConfig::default();
            let set: Vec<&str> = [
                ("partition.assignment.strategy", self.assignment_strategies != defaults.assignment_strategies),
                ("heartbeat.interval.ms", self.heartbeat_interval != defaults.heartbeat_interval),
                ("session.timeout.ms", self.session_timeout != defaults.session_timeout),
            ]
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect();
            if !set.is_empty() {
                return Err(config_error(
                    "group.protocol",
                    &format!("{} cannot be set when group.protocol=CONSUMER", set.join(", ")),
                ));
            }
        } else {
            if self.heartbeat_interval >= self.session_timeout {
                return Err(config_error("heartbeat.interval.ms", "must be lower than session.timeout.ms"));
            }
            if self.group_remote_assignor.is_some() {
                return Err(config_error(
                    "group.remote.assignor",
                    "group.remote.assignor cannot be set when group.protocol=CLASSIC",
                ));
            }
        }
        for s in &self.assignment_strategies {
            crate::consumer::assignor::assignor_by_name(s)?;
        }
        Ok(())
    }

    pub(crate) fn require_group(&self, what: &str) -> Result<&str> {
        self.group_id
            .as_deref()
            .ok_or_else(|| Error::InvalidArgument(format!("{what} needs a group.id in the consumer settings")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn java_defaults() {
        let c = ConsumerConfig::default();
        assert_eq!(c.auto_offset_reset, OffsetReset::Latest);
        assert!(c.enable_auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(c.fetch_max_wait, Duration::from_millis(500));
        assert_eq!(c.fetch_max_bytes, 50 * 1024 * 1024);
        assert_eq!(c.max_partition_fetch_bytes, 1024 * 1024);
        assert_eq!(c.max_poll_records, 500);
        assert_eq!(c.max_poll_interval, Duration::from_secs(300));
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(c.assignment_strategies, vec!["range", "cooperative-sticky"]);
        assert!(c.check_crcs);
    }

    #[test]
    fn auto_commit_needs_a_group() {
        let mut c = ConsumerConfig::new("h:1");
        c.validate().unwrap();
        assert!(!c.enable_auto_commit, "defaulted auto-commit is turned off without a group");
        let mut c = ConsumerConfig::new("h:1").set("enable.auto.commit", "true").unwrap();
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "enable.auto.commit"));
    }

    #[test]
    fn the_consumer_protocol_and_its_server_assignor() {
        let mut c = ConsumerConfig::new("h:1")
            .set("group.id", "g")
            .unwrap()
            .set("group.protocol", "consumer")
            .unwrap()
            .set("group.remote.assignor", "uniform")
            .unwrap();
        c.validate().unwrap();
        assert_eq!(c.group_protocol, GroupProtocol::Consumer);
        assert_eq!(c.group_remote_assignor.as_deref(), Some("uniform"));
        let mut c = ConsumerConfig::new("h:1").set("group.remote.assignor", "range").unwrap();
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "group.remote.assignor"));
    }

    #[test]
    fn classic_only_settings_are_refused_with_the_consumer_protocol() {
        let consumer =
            || ConsumerConfig::new("h:1").set("group.id", "g").unwrap().set("group.protocol", "consumer").unwrap();
        let mut c = consumer()
            .set("session.timeout.ms", "10000")
            .unwrap()
            .set("partition.assignment.strategy", "range")
            .unwrap();
        match c.validate() {
            Err(Error::Config { key, reason }) => {
                assert_eq!(key, "group.protocol");
                assert_eq!(
                    reason,
                    "partition.assignment.strategy, session.timeout.ms cannot be set when group.protocol=CONSUMER"
                );
            }
            other => panic!("{other:?}"),
        }
        let mut c = consumer().set("heartbeat.interval.ms", "500").unwrap();
        assert!(
            matches!(c.validate(), Err(Error::Config { reason, .. }) if reason.starts_with("heartbeat.interval.ms cannot"))
        );
        // Left at their defaults, they pass.
        consumer().validate().unwrap();
        // With the classic protocol the same settings are fine.
        let mut c = ConsumerConfig::new("h:1").set("session.timeout.ms", "10000").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        for (k, v) in [
            ("auto.offset.reset", "sometimes"),
            ("isolation.level", "serializable"),
            ("max.poll.records", "0"),
            ("no.such.thing", "1"),
            ("group.protocol", "other"),
        ] {
            let e = ConsumerConfig::default().set(k, v).unwrap_err();
            assert!(matches!(&e, Error::Config { key, .. } if key == k), "{k}: {e}");
        }
        let mut c = ConsumerConfig::new("h:1").set("heartbeat.interval.ms", "50000").unwrap();
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "heartbeat.interval.ms"));
    }
}
