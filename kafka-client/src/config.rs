//! Typed settings with the Java client's defaults, also accepted by their Java property names.
//!
//! Every setting has a builder method and a property name; [`ProducerConfig::set`] and
//! [`ProducerConfig::from_properties`] take the names of the Java client (and
//! `kafka-console-producer --producer-property`), so existing property files carry over.
//! An unknown name or a malformed value is an [`Error::Config`] naming the key.

use std::time::Duration;

use kafka_protocol::compression::Compression;

use crate::error::{Error, Result};

/// Settings shared by every client (producer, consumer, admin): where the cluster is and how
/// connections behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` pairs used to discover the cluster. Names are
    /// resolved again at every connection attempt.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent with every request, shown in broker logs and quotas. Default
    /// `kafka-sdk`.
    pub client_id: String,
    /// `request.timeout.ms`: how long a request may wait for its response; the connection is
    /// closed when one expires (responses arrive in order, so later ones are stuck too).
    /// Default 30 s.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: TCP connect plus the ApiVersions handshake.
    /// Default 10 s.
    pub connection_setup_timeout: Duration,
    /// `reconnect.backoff.ms`: the first wait before reconnecting to a broker. Default 50 ms.
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the wait doubles per failure (with ±20% jitter) up to this.
    /// Default 1 s.
    pub reconnect_backoff_max: Duration,
    /// `retry.backoff.ms`: the first wait before retrying a failed request. Default 100 ms.
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: retries back off exponentially up to this. Default 1 s.
    pub retry_backoff_max: Duration,
    /// `metadata.max.age.ms`: metadata is refreshed at least this often. Default 5 min.
    pub metadata_max_age: Duration,
    /// `receive.message.max.bytes` (librdkafka's name): the largest response accepted; the size
    /// prefix is checked before anything is allocated. Default 100 MiB.
    pub max_response_size: usize,
    /// `security.protocol`, `ssl.*` and `sasl.*`: TLS and SASL (see [`crate::security`]).
    /// Default PLAINTEXT.
    pub security: crate::security::SecurityConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            bootstrap_servers: Vec::new(),
            client_id: "kafka-sdk".to_owned(),
            request_timeout: Duration::from_millis(30_000),
            connection_setup_timeout: Duration::from_millis(10_000),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_millis(1_000),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_millis(1_000),
            metadata_max_age: Duration::from_millis(300_000),
            max_response_size: 100 * 1024 * 1024,
            security: crate::security::SecurityConfig::default(),
        }
    }
}

impl ClientConfig {
    /// Settings for the given bootstrap servers (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig { bootstrap_servers: split_list(bootstrap_servers), ..Default::default() }
    }

    /// Applies one property by its Java name. Returns `Ok(false)` when the name is not a
    /// client-wide setting (so that producer, consumer and admin settings can add theirs).
    pub fn apply(&mut self, key: &str, value: &str) -> Result<bool> {
        match key {
            "bootstrap.servers" => {
                let servers = split_list(value);
                if servers.is_empty() {
                    return Err(config_error(key, "empty list"));
                }
                for s in &servers {
                    parse_host_port(s).map_err(|reason| config_error(key, &reason))?;
                }
                self.bootstrap_servers = servers;
            }
            "client.id" => self.client_id = value.to_owned(),
            "request.timeout.ms" => self.request_timeout = parse_ms(key, value, 1)?,
            "socket.connection.setup.timeout.ms" => self.connection_setup_timeout = parse_ms(key, value, 1)?,
            "reconnect.backoff.ms" => self.reconnect_backoff = parse_ms(key, value, 0)?,
            "reconnect.backoff.max.ms" => self.reconnect_backoff_max = parse_ms(key, value, 0)?,
            "retry.backoff.ms" => self.retry_backoff = parse_ms(key, value, 0)?,
            "retry.backoff.max.ms" => self.retry_backoff_max = parse_ms(key, value, 0)?,
            "metadata.max.age.ms" => self.metadata_max_age = parse_ms(key, value, 0)?,
            "receive.message.max.bytes" => self.max_response_size = parse_num(key, value, 1024, i32::MAX as u64)?,
            _ => return self.security.apply(key, value),
        }
        Ok(true)
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(config_error("bootstrap.servers", "no servers given"));
        }
        for s in &self.bootstrap_servers {
            parse_host_port(s).map_err(|reason| config_error("bootstrap.servers", &reason))?;
        }
        self.security.validate()
    }

    /// The security settings (`security.protocol`, TLS, SASL).
    pub fn security(mut self, security: crate::security::SecurityConfig) -> Self {
        self.security = security;
        self
    }
}

/// The `acks` setting: how many replicas must have a record before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Acks {
    /// `acks=0`: no response at all; the record counts as delivered once written to the
    /// socket, with offset -1.
    None,
    /// `acks=1`: the leader has it.
    Leader,
    /// `acks=all` (or -1): every in-sync replica has it. Kafka 3.0+ default.
    #[default]
    All,
}

impl Acks {
    /// The value sent in ProduceRequest.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Producer settings; defaults are the Java client's (Kafka 4.0).
///
/// ```
/// use std::time::Duration;
/// use kafka_client::{Acks, ProducerConfig};
///
/// let config = ProducerConfig::new("localhost:9092")
///     .linger(Duration::from_millis(10))
///     .set("compression.type", "lz4")?
///     .set("batch.size", "65536")?;
/// assert_eq!(config.batch_size, 65536);
/// assert_eq!(config.acks, Acks::All);
/// assert!(config.enable_idempotence);
///
/// // Unknown names and bad values are errors that name the key.
/// let err = ProducerConfig::new("localhost:9092").set("linger.ms", "soon").unwrap_err();
/// assert!(err.to_string().contains("linger.ms"));
/// # Ok::<(), kafka_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// `acks`, default `all`.
    pub acks: Acks,
    /// `enable.idempotence`, default true: a producer id and per-partition sequence numbers
    /// make retries safe (no duplicates, no reordering).
    pub enable_idempotence: bool,
    /// `linger.ms`, default 5 ms: how long a batch waits for more records before it is sent.
    pub linger: Duration,
    /// `batch.size`, default 16384: the size at which a partition's batch is closed.
    pub batch_size: usize,
    /// `buffer.memory`, default 32 MiB: records waiting to be sent or acknowledged; `send`
    /// waits for room up to `max.block.ms`.
    pub buffer_memory: usize,
    /// `max.in.flight.requests.per.connection`, default 5 (at most 5 with idempotence).
    pub max_in_flight: usize,
    /// `delivery.timeout.ms`, default 120 s: the bound on the time from `send` to the
    /// outcome, retries included.
    pub delivery_timeout: Duration,
    /// `max.block.ms`, default 60 s: how long `send` waits for metadata and buffer space.
    pub max_block: Duration,
    /// `compression.type`, default none.
    pub compression: Compression,
    /// `compression.level` (librdkafka's name; Java's `compression.<codec>.level` names are
    /// accepted too), default: the codec's own default.
    pub compression_level: Option<i32>,
    /// `max.request.size`, default 1 MiB: the largest Produce request, and so the largest
    /// record.
    pub max_request_size: usize,
    /// `retries`, default i32::MAX: delivery.timeout.ms is the real bound.
    pub retries: u32,
    /// `partitioner.ignore.keys`, default false: partition keyed records like unkeyed ones.
    pub partitioner_ignore_keys: bool,
    /// `transactional.id`, default none: enables transactions (and requires idempotence). Each
    /// running instance of an application needs its own, stable across restarts: a new
    /// producer with the same id fences the old one.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`, default 60 s: how long the transaction coordinator lets a
    /// transaction stay open before it aborts it.
    pub transaction_timeout: Duration,
    acks_set: bool,
    idempotence_set: bool,
    retries_set: bool,
    max_in_flight_set: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            enable_idempotence: true,
            linger: Duration::from_millis(5),
            batch_size: 16_384,
            buffer_memory: 32 * 1024 * 1024,
            max_in_flight: 5,
            delivery_timeout: Duration::from_millis(120_000),
            max_block: Duration::from_millis(60_000),
            compression: Compression::None,
            compression_level: None,
            max_request_size: 1024 * 1024,
            retries: i32::MAX as u32,
            partitioner_ignore_keys: false,
            transactional_id: None,
            transaction_timeout: Duration::from_millis(60_000),
            acks_set: false,
            idempotence_set: false,
            retries_set: false,
            max_in_flight_set: false,
        }
    }
}

impl ProducerConfig {
    /// Defaults, with the given bootstrap servers (comma-separated `host:port` list).
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerConfig { client: ClientConfig::new(bootstrap_servers), ..Default::default() }
    }

    /// Settings from Java property names and values.
    ///
    /// ```
    /// use kafka_client::ProducerConfig;
    /// let config = ProducerConfig::from_properties([("bootstrap.servers", "a:9092,b:9092"), ("acks", "1"), ("enable.idempotence", "false")])?;
    /// assert_eq!(config.client.bootstrap_servers.len(), 2);
    /// # Ok::<(), kafka_client::Error>(())
    /// ```
    pub fn from_properties<K: AsRef<str>, V: AsRef<str>>(props: impl IntoIterator<Item = (K, V)>) -> Result<Self> {
        let mut config = ProducerConfig::default();
        for (k, v) in props {
            config = config.set(k.as_ref(), v.as_ref())?;
        }
        Ok(config)
    }

    /// Sets one property by its Java name.
    pub fn set(mut self, key: &str, value: &str) -> Result<Self> {
        let value = value.trim();
        if self.client.apply(key, value)? {
            return Ok(self);
        }
        match key {
            "acks" => {
                self.acks = match value {
                    "0" => Acks::None,
                    "1" => Acks::Leader,
                    "all" | "-1" => Acks::All,
                    _ => return Err(config_error(key, "expected 0, 1, all or -1")),
                };
                self.acks_set = true;
            }
            "enable.idempotence" => {
                self.enable_idempotence = parse_bool(key, value)?;
                self.idempotence_set = true;
            }
            "linger.ms" => self.linger = parse_ms(key, value, 0)?,
            "batch.size" => self.batch_size = parse_num(key, value, 0, i32::MAX as u64)?,
            "buffer.memory" => self.buffer_memory = parse_num(key, value, 1, u32::MAX as u64 * 16)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = parse_num(key, value, 1, 1_000_000)?;
                self.max_in_flight_set = true;
            }
            "delivery.timeout.ms" => self.delivery_timeout = parse_ms(key, value, 1)?,
            "max.block.ms" => self.max_block = parse_ms(key, value, 0)?,
            "compression.type" | "compression.codec" => {
                self.compression =
                    value.parse().map_err(|_| config_error(key, "expected none, gzip, snappy, lz4 or zstd"))?;
            }
            "compression.level" | "compression.gzip.level" | "compression.lz4.level" | "compression.zstd.level" => {
                let level: i32 = value.parse().map_err(|_| config_error(key, "expected an integer"))?;
                self.compression_level = Some(level);
            }
            "max.request.size" => self.max_request_size = parse_num(key, value, 1, i32::MAX as u64)?,
            "retries" => {
                self.retries = parse_num::<u32>(key, value, 0, i32::MAX as u64)?;
                self.retries_set = true;
            }
            "partitioner.ignore.keys" => self.partitioner_ignore_keys = parse_bool(key, value)?,
            "transactional.id" => {
                self.transactional_id = if value.is_empty() { None } else { Some(value.to_owned()) };
            }
            "transaction.timeout.ms" => self.transaction_timeout = parse_ms(key, value, 1)?,
            _ => return Err(config_error(key, "unknown producer setting")),
        }
        Ok(self)
    }

    /// `bootstrap.servers`.
    pub fn bootstrap_servers(mut self, servers: &str) -> Self {
        self.client.bootstrap_servers = split_list(servers);
        self
    }

    /// `client.id`.
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client.client_id = id.into();
        self
    }

    /// `acks`.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self.acks_set = true;
        self
    }

    /// `enable.idempotence`.
    pub fn enable_idempotence(mut self, on: bool) -> Self {
        self.enable_idempotence = on;
        self.idempotence_set = true;
        self
    }

    /// `linger.ms`.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// `batch.size`.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// `buffer.memory`.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// `max.in.flight.requests.per.connection`.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self.max_in_flight_set = true;
        self
    }

    /// `delivery.timeout.ms`.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// `request.timeout.ms`.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.client.request_timeout = timeout;
        self
    }

    /// `max.block.ms`.
    pub fn max_block(mut self, timeout: Duration) -> Self {
        self.max_block = timeout;
        self
    }

    /// `compression.type`.
    pub fn compression(mut self, codec: Compression) -> Self {
        self.compression = codec;
        self
    }

    /// `compression.level`.
    pub fn compression_level(mut self, level: Option<i32>) -> Self {
        self.compression_level = level;
        self
    }

    /// `max.request.size`.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// `transactional.id` (see the field).
    pub fn transactional_id(mut self, id: impl Into<String>) -> Self {
        self.transactional_id = Some(id.into());
        self
    }

    /// `transaction.timeout.ms`.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// `retry.backoff.ms`.
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.client.retry_backoff = backoff;
        self
    }

    /// Checks the settings together, as the Java client does when a producer is created, and
    /// resolves the implicit ones (idempotence is turned off when it was not asked for and
    /// `acks` or `max.in.flight` rule it out).
    pub fn validate(&mut self) -> Result<()> {
        self.client.validate()?;
        if self.transactional_id.is_some() {
            if self.idempotence_set && !self.enable_idempotence {
                return Err(config_error("enable.idempotence", "must be true when transactional.id is set"));
            }
            self.enable_idempotence = true;
            self.idempotence_set = true;
            if i32::try_from(self.transaction_timeout.as_millis()).is_err() {
                return Err(config_error("transaction.timeout.ms", "must fit a 32-bit number of milliseconds"));
            }
        }
        if self.enable_idempotence {
            let conflict = if self.acks != Acks::All {
                Some(("acks", "must be all when enable.idempotence is true"))
            } else if self.max_in_flight > 5 {
                Some(("max.in.flight.requests.per.connection", "must be at most 5 when enable.idempotence is true"))
            } else if self.retries == 0 {
                Some(("retries", "must be greater than 0 when enable.idempotence is true"))
            } else {
                None
            };
            if let Some((key, reason)) = conflict {
                let explicit = match key {
                    "acks" => self.acks_set,
                    "retries" => self.retries_set,
                    _ => self.max_in_flight_set,
                };
                if self.idempotence_set || !explicit {
                    return Err(config_error(key, reason));
                }
                // Java 3.2+: idempotence left at its default is turned off by an explicit
                // conflicting setting, with a log line.
                tracing::info!("enable.idempotence turned off: {key} conflicts with it");
                self.enable_idempotence = false;
            }
        }
        let floor = self.linger.saturating_add(self.client.request_timeout);
        if self.delivery_timeout < floor {
            return Err(config_error(
                "delivery.timeout.ms",
                &format!("must be at least linger.ms + request.timeout.ms ({} ms)", floor.as_millis()),
            ));
        }
        if self.compression_level.is_some() {
            self.compression
                .resolve_level(self.compression_level)
                .map_err(|e| config_error("compression.level", &e.to_string()))?;
        }
        if self.max_request_size < kafka_protocol::records::RECORD_BATCH_OVERHEAD + 64 {
            return Err(config_error("max.request.size", "too small to hold one record batch"));
        }
        Ok(())
    }
}

pub(crate) fn config_error(key: &str, reason: &str) -> Error {
    Error::Config { key: key.to_owned(), reason: reason.to_owned() }
}

pub(crate) fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Splits `host:port` (IPv6 as `[::1]:9092`), checking the port.
pub(crate) fn parse_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    let port: u16 = port.parse().map_err(|_| format!("`{s}` has no valid port"))?;
    Ok((host.to_owned(), port))
}

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(config_error(key, "expected true or false")),
    }
}

pub(crate) fn parse_num<T: TryFrom<u64>>(key: &str, value: &str, min: u64, max: u64) -> Result<T> {
    let n: u64 = value.parse().map_err(|_| config_error(key, "expected a non-negative integer"))?;
    if n < min || n > max {
        return Err(config_error(key, &format!("{n} is outside {min}..={max}")));
    }
    T::try_from(n).map_err(|_| config_error(key, "value too large"))
}

pub(crate) fn parse_ms(key: &str, value: &str, min: u64) -> Result<Duration> {
    parse_num::<u64>(key, value, min, i64::MAX as u64 / 1_000_000).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_defaults() {
        let c = ProducerConfig::default();
        assert_eq!(c.acks, Acks::All);
        assert!(c.enable_idempotence);
        assert_eq!(c.linger, Duration::from_millis(5));
        assert_eq!(c.batch_size, 16384);
        assert_eq!(c.buffer_memory, 32 * 1024 * 1024);
        assert_eq!(c.max_in_flight, 5);
        assert_eq!(c.delivery_timeout, Duration::from_millis(120_000));
        assert_eq!(c.client.request_timeout, Duration::from_millis(30_000));
        assert_eq!(c.client.retry_backoff, Duration::from_millis(100));
        assert_eq!(c.client.retry_backoff_max, Duration::from_millis(1000));
        assert_eq!(c.max_block, Duration::from_millis(60_000));
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.max_request_size, 1024 * 1024);
    }

    #[test]
    fn properties_by_java_name() {
        let c = ProducerConfig::from_properties([
            ("bootstrap.servers", "h1:9092, h2:9093"),
            ("linger.ms", "20"),
            ("acks", "all"),
            ("compression.type", "zstd"),
            ("compression.zstd.level", "7"),
            ("max.request.size", "2097152"),
            ("client.id", "me"),
        ])
        .unwrap();
        assert_eq!(c.client.bootstrap_servers, vec!["h1:9092", "h2:9093"]);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.compression, Compression::Zstd);
        assert_eq!(c.compression_level, Some(7));
        assert_eq!(c.max_request_size, 2 << 20);
        assert_eq!(c.client.client_id, "me");
    }

    #[test]
    fn errors_name_the_key() {
        for (k, v) in [
            ("no.such.setting", "1"),
            ("linger.ms", "-1"),
            ("batch.size", "big"),
            ("acks", "2"),
            ("enable.idempotence", "yes"),
            ("compression.type", "brotli"),
            ("bootstrap.servers", "nohostport"),
        ] {
            let e = ProducerConfig::default().set(k, v).unwrap_err();
            assert!(matches!(&e, Error::Config { key, .. } if key == k), "{k}: {e}");
        }
    }

    #[test]
    fn idempotence_conflicts() {
        // Explicit idempotence with acks=1: an error, as in Java.
        let mut c = ProducerConfig::new("h:1").enable_idempotence(true).acks(Acks::Leader);
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "acks"));
        // Default idempotence with explicit acks=1: idempotence is turned off.
        let mut c = ProducerConfig::new("h:1").acks(Acks::Leader);
        c.validate().unwrap();
        assert!(!c.enable_idempotence);
        let mut c = ProducerConfig::new("h:1").enable_idempotence(true).max_in_flight(6);
        assert!(c.validate().is_err());
        let mut c = ProducerConfig::new("h:1").delivery_timeout(Duration::from_millis(1000));
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "delivery.timeout.ms"));
        let mut c = ProducerConfig::default();
        assert!(matches!(c.validate(), Err(Error::Config { key, .. }) if key == "bootstrap.servers"));
    }

    #[test]
    fn host_port() {
        assert_eq!(parse_host_port("localhost:9092").unwrap(), ("localhost".into(), 9092));
        assert_eq!(parse_host_port("[::1]:9092").unwrap(), ("::1".into(), 9092));
        assert!(parse_host_port(":9092").is_err());
        assert!(parse_host_port("h:99999").is_err());
    }
}
