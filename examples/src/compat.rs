//! The checks of `kafka-compat-check`: what this SDK needs from a cluster, tried for real
//! against any broker (Apache Kafka, Redpanda, the bundled broker, another implementation).
//!
//! Every check creates its own topics (named after the run's prefix), checks what came back
//! with exact comparisons, and deletes what it made. A check that needs an API the broker
//! does not advertise is skipped with the API named, never failed: the result says what was
//! not tried. Nothing here is specific to the bundled broker.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_admin::{
    AdminClient, AdminConfig, AlterConfigOp, ConfigResource, ConfigSource, NewPartitions, NewTopic, OffsetSpec,
};
use kafka_client::consumer::BoxFuture;
use kafka_client::{
    Acks, Client, ClientConfig, Compression, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig,
    ProducerRecord, RebalanceListener, TopicPartition,
};
use kafka_protocol::records::TimestampType;
use kafka_protocol::{ApiKey, ErrorCode};

/// Every check, in the order they run.
pub const CHECKS: &[&str] = &[
    "api-versions",
    "cluster",
    "topics",
    "create-partitions",
    "configs",
    "produce-consume-none",
    "produce-consume-gzip",
    "produce-consume-snappy",
    "produce-consume-lz4",
    "produce-consume-zstd",
    "list-offsets",
    "delete-records",
    "group-range",
    "group-cooperative-sticky",
    "group-consumer-protocol",
    "transactions",
];

/// What the checks run with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The cluster (`host:port`, comma-separated).
    pub bootstrap: String,
    /// Client properties (Java names) given to every client: connection and security
    /// settings. Group, producer and consumer settings here would change what the checks do.
    pub properties: Vec<(String, String)>,
    /// Records each produce and group check sends (at least 8: a group check sends half of
    /// them over four partitions, twice).
    pub records: usize,
    /// Replication factor of the topics the checks create; `None` for the broker's default.
    pub replication_factor: Option<i16>,
    /// The longest one check may take.
    pub check_timeout: Duration,
    /// Prefix of every topic, group and transactional id the run creates.
    pub prefix: String,
}

impl Settings {
    /// Defaults for `bootstrap`: 2,000 records, the broker's replication factor, two minutes
    /// a check, a prefix unique to this process and moment.
    pub fn new(bootstrap: &str) -> Settings {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Settings {
            bootstrap: bootstrap.to_owned(),
            properties: Vec::new(),
            records: 2000,
            replication_factor: None,
            check_timeout: Duration::from_secs(120),
            prefix: format!("compat-{}-{}", std::process::id(), millis % 100_000_000),
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything checked held; what was checked.
    Pass(String),
    /// Not tried: the broker lacks an API the check needs (named).
    Skip(String),
    /// Something did not hold: what, with the values seen.
    Fail(String),
}

impl Outcome {
    /// `PASS`, `SKIP` or `FAIL`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "PASS",
            Outcome::Skip(_) => "SKIP",
            Outcome::Fail(_) => "FAIL",
        }
    }

    /// The detail text.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(d) | Outcome::Skip(d) | Outcome::Fail(d) => d,
        }
    }
}

/// Why a check stopped early.
#[derive(Debug)]
enum Stop {
    Skip(String),
    Fail(String),
}

impl From<kafka_client::Error> for Stop {
    fn from(e: kafka_client::Error) -> Self {
        Stop::Fail(e.to_string())
    }
}

impl From<kafka_admin::Error> for Stop {
    fn from(e: kafka_admin::Error) -> Self {
        Stop::Fail(e.to_string())
    }
}

type Step<T> = Result<T, Stop>;

fn fail<T>(message: impl Into<String>) -> Step<T> {
    Err(Stop::Fail(message.into()))
}

/// Mismatches a check noted and went on past, so that one run reports every one of them;
/// any makes the check FAIL, with all of them in its line.
#[derive(Debug, Default)]
struct Findings(Vec<String>);

impl Findings {
    fn check(&mut self, condition: bool, message: impl FnOnce() -> String) {
        if !condition {
            self.0.push(message());
        }
    }

    /// PASS with `detail` if nothing was noted.
    fn finish(self, detail: String) -> Step<String> {
        if self.0.is_empty() {
            Ok(detail)
        } else {
            Err(Stop::Fail(self.0.join("; ")))
        }
    }
}

fn ensure(condition: bool, message: impl FnOnce() -> String) -> Step<()> {
    if condition {
        Ok(())
    } else {
        Err(Stop::Fail(message()))
    }
}

/// Runs one check by name (one of [`CHECKS`]) within the settings' time limit.
pub async fn run_check(name: &str, settings: &Settings) -> Outcome {
    let check = async {
        match name {
            "api-versions" => api_versions(settings).await,
            "cluster" => cluster(settings).await,
            "topics" => topics(settings).await,
            "create-partitions" => create_partitions(settings).await,
            "configs" => configs(settings).await,
            "produce-consume-none" => produce_consume(settings, Compression::None).await,
            "produce-consume-gzip" => produce_consume(settings, Compression::Gzip).await,
            "produce-consume-snappy" => produce_consume(settings, Compression::Snappy).await,
            "produce-consume-lz4" => produce_consume(settings, Compression::Lz4).await,
            "produce-consume-zstd" => produce_consume(settings, Compression::Zstd).await,
            "list-offsets" => list_offsets(settings).await,
            "delete-records" => delete_records(settings).await,
            "group-range" => group(settings, GroupKind::Classic("range")).await,
            "group-cooperative-sticky" => group(settings, GroupKind::Classic("cooperative-sticky")).await,
            "group-consumer-protocol" => group(settings, GroupKind::Consumer).await,
            "transactions" => transactions(settings).await,
            other => fail(format!("no check named {other}")),
        }
    };
    // Each check limits its own steps to `check_timeout` and then cleans up; this outer
    // limit only bounds a cleanup that hangs.
    let limit = settings.check_timeout + settings.check_timeout.min(MAX_CLEANUP_TIME);
    match tokio::time::timeout(limit, check).await {
        Ok(Ok(detail)) => Outcome::Pass(detail),
        Ok(Err(Stop::Skip(why))) => Outcome::Skip(why),
        Ok(Err(Stop::Fail(why))) => Outcome::Fail(why),
        Err(_) => Outcome::Fail(format!("did not finish, cleanup included, within {} ms", limit.as_millis())),
    }
}

/// The most a check may spend cleaning up after its steps (and never more than the steps
/// had).
const MAX_CLEANUP_TIME: Duration = Duration::from_secs(60);

/// Runs a check's steps within the settings' time limit, so that the check can clean up
/// after steps that ran out of time.
async fn within<T>(s: &Settings, steps: impl Future<Output = Step<T>>) -> Step<T> {
    match tokio::time::timeout(s.check_timeout, steps).await {
        Ok(result) => result,
        Err(_) => fail(format!("did not finish within {} ms", s.check_timeout.as_millis())),
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

fn client_config(s: &Settings) -> Step<ClientConfig> {
    let mut config = ClientConfig::new(&s.bootstrap);
    for (k, v) in &s.properties {
        config.apply(k, v)?;
    }
    Ok(config)
}

fn admin(s: &Settings) -> Step<AdminClient> {
    let mut config = AdminConfig::new(&s.bootstrap);
    for (k, v) in &s.properties {
        config = config.set(k, v)?;
    }
    Ok(AdminClient::new(config)?)
}

fn producer_config(s: &Settings) -> Step<ProducerConfig> {
    let mut config = ProducerConfig::new(&s.bootstrap);
    for (k, v) in &s.properties {
        config = config.set(k, v)?;
    }
    Ok(config.acks(Acks::All).linger(Duration::from_millis(5)).max_block(Duration::from_secs(30)))
}

fn consumer_config(s: &Settings) -> Step<ConsumerConfig> {
    let mut config = ConsumerConfig::new(&s.bootstrap);
    for (k, v) in &s.properties {
        config = config.set(k, v)?;
    }
    Ok(config.set("auto.offset.reset", "earliest")?.set("fetch.max.wait.ms", "100")?)
}

/// The API versions of one broker, for deciding what to skip.
async fn broker_apis(s: &Settings) -> Step<kafka_client::conn::ApiVersionTable> {
    let client = Client::new(client_config(s)?, false)?;
    let conn = client.any_connection().await;
    let table = conn.map(|c| c.versions().clone());
    client.close();
    Ok(table?)
}

/// Skips the check unless the broker advertises every API of `needed`.
async fn require(s: &Settings, needed: &[ApiKey]) -> Step<()> {
    let table = broker_apis(s).await?;
    let missing: Vec<&str> = needed.iter().filter(|a| table.broker_range(**a).is_none()).map(|a| a.name()).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Stop::Skip(format!("the broker does not support {}", missing.join(", "))))
    }
}

/// A topic name for one check of this run.
fn topic_name(s: &Settings, check: &str) -> String {
    format!("{}-{check}", s.prefix)
}

/// Creates `name` with `partitions` partitions and waits until every partition has a leader
/// in the metadata.
async fn create_topic(s: &Settings, admin: &AdminClient, name: &str, partitions: i32) -> Step<()> {
    create_topic_with(s, admin, name, partitions, &[]).await
}

/// [`create_topic`] with topic configs.
async fn create_topic_with(
    s: &Settings,
    admin: &AdminClient,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Step<()> {
    let mut topic = NewTopic {
        num_partitions: Some(partitions),
        replication_factor: s.replication_factor,
        ..NewTopic::with_defaults(name)
    };
    for (k, v) in configs {
        topic = topic.config(*k, *v);
    }
    let created = admin.create_topics([topic], false).await?;
    match created.get(name) {
        Some(Ok(_)) => {}
        Some(Err(e)) => return fail(format!("creating {name}: {e}")),
        None => return fail(format!("creating {name}: no result for the topic")),
    }
    wait_until(Duration::from_secs(30), || async {
        let described = admin.describe_topics([name]).await.ok()?;
        let topic = described.get(name)?.as_ref().ok()?;
        (topic.partitions.len() == partitions as usize && topic.partitions.iter().all(|p| p.leader.is_some()))
            .then_some(())
    })
    .await
    .ok_or_else(|| Stop::Fail(format!("{name}: {partitions} partitions with leaders never showed in the metadata")))
}

/// Deletes what a check created; failures here do not change the check's result.
async fn cleanup(admin: &AdminClient, topics: &[&str]) {
    let _ = admin.delete_topics(topics.iter().copied()).await;
}

/// Runs a check's steps on a topic of its own (named after `label`) within the time limit,
/// then deletes the topic whatever happened.
async fn on_topic(
    s: &Settings,
    label: &str,
    steps: impl AsyncFnOnce(&AdminClient, &str) -> Step<String>,
) -> Step<String> {
    let admin = admin(s)?;
    let name = topic_name(s, label);
    let result = within(s, steps(&admin, &name)).await;
    cleanup(&admin, &[&name]).await;
    admin.close();
    result
}

/// Polls `probe` every 100 ms until it returns `Some`, or `None` after `limit`.
async fn wait_until<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Every record of `partitions` of `topic` from the start to the end offsets (the last
/// stable offset for read_committed), as one consumer without a group reads them.
async fn read_all(s: &Settings, topic: &str, partitions: i32, isolation: &str) -> Step<Vec<ConsumerRecord>> {
    let consumer = Consumer::new(consumer_config(s)?.set("isolation.level", isolation)?)?;
    let tps: Vec<TopicPartition> = (0..partitions).map(|p| TopicPartition::new(topic, p)).collect();
    consumer.assign(tps.clone())?;
    let ends = consumer.end_offsets(&tps).await?;
    let mut out = Vec::new();
    loop {
        let mut done = true;
        for tp in &tps {
            if consumer.position(tp).await? < ends.get(tp).copied().unwrap_or(0) {
                done = false;
            }
        }
        if done {
            break;
        }
        out.extend(consumer.poll(Duration::from_millis(200)).await?);
    }
    consumer.close().await?;
    Ok(out)
}

/// One line for every API: the broker's version range and the version this SDK would use,
/// or why it would use none (`kafka-compat-check --api-versions`).
pub async fn api_table(s: &Settings) -> Result<Vec<String>, String> {
    let table = broker_apis(s).await.map_err(|e| match e {
        Stop::Skip(m) | Stop::Fail(m) => m,
    })?;
    Ok(ApiKey::ALL
        .iter()
        .map(|a| {
            let ours = format!("v{}-{}", a.valid_versions().min, a.max_stable_version());
            match (table.broker_range(*a), table.pick(*a, 0)) {
                (Some(r), Some(v)) => format!("{:32} broker v{}-{}, ours {ours}: using v{v}", a.name(), r.min, r.max),
                (Some(r), None) => {
                    format!("{:32} broker v{}-{}, ours {ours}: no common version", a.name(), r.min, r.max)
                }
                (None, _) => format!("{:32} not supported by the broker", a.name()),
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// The APIs the client and admin use, and the version negotiated for each.
async fn api_versions(s: &Settings) -> Step<String> {
    let table = broker_apis(s).await?;
    let supported = ApiKey::ALL.iter().filter(|a| table.broker_range(**a).is_some()).count();
    let core = [ApiKey::ApiVersions, ApiKey::Metadata, ApiKey::Produce, ApiKey::Fetch, ApiKey::ListOffsets];
    let missing: Vec<&str> = core.iter().filter(|a| table.pick(**a, 0).is_none()).map(|a| a.name()).collect();
    ensure(missing.is_empty(), || format!("no usable version of {}", missing.join(", ")))?;
    let shown = [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::JoinGroup,
        ApiKey::OffsetCommit,
        ApiKey::InitProducerId,
        ApiKey::ConsumerGroupHeartbeat,
    ];
    let picked: Vec<String> = shown
        .iter()
        .map(|a| match (table.broker_range(*a), table.pick(*a, 0)) {
            (Some(r), Some(v)) => format!("{} v{}-{} (using v{v})", a.name(), r.min, r.max),
            (Some(r), None) => format!("{} v{}-{} (no common version)", a.name(), r.min, r.max),
            (None, _) => format!("{} absent", a.name()),
        })
        .collect();
    Ok(format!("{supported} APIs; {}", picked.join(", ")))
}

/// Metadata and DescribeCluster list the same brokers.
async fn cluster(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::DescribeCluster]).await?;
    let client = Client::new(client_config(s)?, false)?;
    let metadata = client.refresh_metadata().await;
    client.close();
    let metadata = metadata?;
    ensure(!metadata.brokers.is_empty(), || "the metadata lists no brokers".to_owned())?;
    let ids: BTreeSet<i32> = metadata.brokers.keys().copied().collect();
    let admin = admin(s)?;
    let described = admin.describe_cluster().await;
    admin.close();
    let described = described?;
    let described_ids: BTreeSet<i32> = described.brokers.iter().map(|b| b.node_id).collect();
    ensure(described_ids == ids, || format!("Metadata lists brokers {ids:?}, DescribeCluster {described_ids:?}"))?;
    Ok(format!(
        "{} broker(s) {:?}, controller {}, cluster id {}",
        ids.len(),
        ids,
        metadata.controller_id,
        metadata.cluster_id.as_deref().unwrap_or("(none)")
    ))
}

/// Create (and a second create refused with TOPIC_ALREADY_EXISTS), list, describe, delete.
async fn topics(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::CreateTopics, ApiKey::DeleteTopics]).await?;
    on_topic(s, "topics", async |admin, name| topics_steps(s, admin, name).await).await
}

async fn topics_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    let mut findings = Findings::default();
    create_topic(s, admin, name, 3).await?;
    let again = admin.create_topics([NewTopic::with_defaults(name)], false).await?;
    let code = again.get(name).and_then(|r| r.as_ref().err()).and_then(|e| e.code());
    findings.check(code == Some(ErrorCode::TopicAlreadyExists), || {
        format!("creating {name} a second time: expected TOPIC_ALREADY_EXISTS, got {:?}", again.get(name))
    });
    let listed = admin.list_topics(false).await?;
    findings.check(listed.iter().any(|t| t.name == name), || format!("{name} is not in the topic list"));
    let deleted = admin.delete_topics([name]).await?;
    if let Some(Err(e)) = deleted.get(name) {
        return fail(format!("deleting: {e}"));
    }
    let gone = wait_until(Duration::from_secs(30), || async {
        let listed = admin.list_topics(false).await.ok()?;
        (!listed.iter().any(|t| t.name == name)).then_some(())
    })
    .await;
    findings.check(gone.is_some(), || "the deleted topic stayed in the topic list for 30 s".to_owned());
    findings.finish(
        "created with 3 partitions (leaders in the metadata), a second create refused with \
         TOPIC_ALREADY_EXISTS, listed, deleted and gone from the list"
            .to_owned(),
    )
}

/// A topic grows from 3 to 5 partitions, and the new ones take records.
async fn create_partitions(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::CreatePartitions]).await?;
    on_topic(s, "create-partitions", async |admin, name| create_partitions_steps(s, admin, name).await).await
}

async fn create_partitions_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    create_topic(s, admin, name, 3).await?;
    let added = admin.create_partitions(BTreeMap::from([(name.to_owned(), NewPartitions::increase_to(5))])).await?;
    if let Some(Err(e)) = added.get(name) {
        return fail(format!("adding partitions: {e}"));
    }
    wait_until(Duration::from_secs(30), || async {
        let described = admin.describe_topics([name]).await.ok()?;
        let topic = described.get(name)?.as_ref().ok()?;
        (topic.partitions.len() == 5 && topic.partitions.iter().all(|p| p.leader.is_some())).then_some(())
    })
    .await
    .ok_or_else(|| Stop::Fail("the topic never showed 5 partitions with leaders after CreatePartitions".to_owned()))?;
    send_spread(s, name, 5, 10).await?;
    let read = read_all(s, name, 5, "read_uncommitted").await?;
    let per_partition: BTreeSet<i32> = read.iter().map(ConsumerRecord::partition).collect();
    ensure(read.len() == 10 && per_partition == (0..5).collect(), || {
        format!("sent 2 records to each of 5 partitions, read {} back from partitions {per_partition:?}", read.len())
    })?;
    Ok("grown from 3 to 5 partitions (leaders in the metadata); records sent to the new ones are read back".to_owned())
}

/// A topic config set at creation, changed and removed incrementally.
async fn configs(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::DescribeConfigs, ApiKey::IncrementalAlterConfigs]).await?;
    on_topic(s, "configs", async |admin, name| configs_steps(s, admin, name).await).await
}

/// The topic's `retention.ms` value and source, or `None` when the description has no such
/// entry.
async fn retention(admin: &AdminClient, name: &str) -> Step<Option<(Option<String>, ConfigSource)>> {
    let resource = ConfigResource::topic(name);
    let described = admin.describe_configs([resource.clone()], false).await?;
    match described.get(&resource) {
        Some(Ok(entries)) => Ok(entries.iter().find(|e| e.name == "retention.ms").map(|e| (e.value.clone(), e.source))),
        Some(Err(e)) => fail(format!("describing {name}'s configs: {e}")),
        None => fail(format!("no configs came back for {name}")),
    }
}

/// Reads `retention.ms` until `wanted` holds of it (for up to 10 s: on KRaft each broker
/// applies a config change after the controller commits it, within a second or so, and
/// DescribeConfigs answers from the broker's own copy), and returns the last reading.
async fn retention_until(
    admin: &AdminClient,
    name: &str,
    wanted: impl Fn(&Option<(Option<String>, ConfigSource)>) -> bool,
) -> Step<Option<(Option<String>, ConfigSource)>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = retention(admin, name).await?;
        if wanted(&seen) || Instant::now() >= deadline {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn configs_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    create_topic_with(s, admin, name, 1, &[("retention.ms", "3600000")]).await?;
    let mut findings = Findings::default();
    let topic_own = |value: &'static str| {
        move |seen: &Option<(Option<String>, ConfigSource)>| {
            seen.as_ref()
                .is_some_and(|(v, source)| v.as_deref() == Some(value) && *source == ConfigSource::DynamicTopic)
        }
    };
    let first = retention_until(admin, name, topic_own("3600000")).await?;
    findings.check(topic_own("3600000")(&first), || {
        format!("retention.ms after creation: {first:?}, expected 3600000 from the topic (DynamicTopic)")
    });
    let resource = ConfigResource::topic(name);
    let changes = BTreeMap::from([(resource.clone(), vec![AlterConfigOp::set("retention.ms", "7200000")])]);
    if let Some(Err(e)) = admin.incremental_alter_configs(changes, false).await?.get(&resource) {
        return fail(format!("setting retention.ms: {e}"));
    }
    let set = retention_until(admin, name, topic_own("7200000")).await?;
    findings.check(topic_own("7200000")(&set), || {
        format!("retention.ms after IncrementalAlterConfigs SET 7200000: {set:?}, expected 7200000 from the topic")
    });
    let changes = BTreeMap::from([(resource.clone(), vec![AlterConfigOp::delete("retention.ms")])]);
    if let Some(Err(e)) = admin.incremental_alter_configs(changes, false).await?.get(&resource) {
        return fail(format!("removing retention.ms: {e}"));
    }
    // The default: a value, from the broker's settings or Kafka's own default.
    let default = |seen: &Option<(Option<String>, ConfigSource)>| {
        seen.as_ref().is_some_and(|(value, source)| {
            value.is_some()
                && value.as_deref() != Some("7200000")
                && matches!(
                    source,
                    ConfigSource::Default
                        | ConfigSource::StaticBroker
                        | ConfigSource::DynamicBroker
                        | ConfigSource::DynamicDefaultBroker
                )
        })
    };
    let removed = retention_until(admin, name, default).await?;
    findings.check(default(&removed), || {
        format!("retention.ms after IncrementalAlterConfigs DELETE: {removed:?}, expected a default value")
    });
    let (value, source) = removed.unwrap_or((None, ConfigSource::Unknown));
    findings.finish(format!(
        "retention.ms 3600000 at creation, 7200000 after IncrementalAlterConfigs SET, {} ({source:?}) after DELETE",
        value.as_deref().unwrap_or("null"),
    ))
}

/// The value of record `i`: text of varying length, some empty, some null (tombstones).
fn payload(i: usize) -> Option<Vec<u8>> {
    match i % 50 {
        0 => None,
        1 => Some(Vec::new()),
        n => Some(format!("{{\"seq\":{i},\"text\":\"{}\"}}", "kafka ".repeat(n)).into_bytes()),
    }
}

/// An idempotent producer with `codec` sends keyed records with headers and timestamps to 3
/// partitions; a consumer reads every one back exactly once, in order, equal in every field.
async fn produce_consume(s: &Settings, codec: Compression) -> Step<String> {
    on_topic(s, &format!("produce-{codec}"), async |admin, name| produce_consume_steps(s, admin, name, codec).await)
        .await
}

struct Sent {
    key: String,
    value: Option<Vec<u8>>,
    timestamp: i64,
    seq: usize,
}

async fn produce_consume_steps(s: &Settings, admin: &AdminClient, name: &str, codec: Compression) -> Step<String> {
    // CreateTime explicitly: a cluster may default to LogAppendTime.
    create_topic_with(s, admin, name, 3, &[("message.timestamp.type", "CreateTime")]).await?;
    let producer = Producer::new(producer_config(s)?.enable_idempotence(true).compression(codec))?;
    let base = now_ms() - 60_000;
    let mut pending = Vec::new();
    for i in 0..s.records {
        let key = format!("key-{}", i % 17);
        let value = payload(i);
        let seq = i.to_string();
        let mut record = ProducerRecord::new(name).key(&key).timestamp(base + i as i64).header("seq", &seq);
        if let Some(v) = &value {
            record = record.value(v);
        }
        if i % 7 == 0 {
            record = record.null_header("marker");
        }
        let delivery = producer.send(record).await?;
        pending.push((Sent { key, value, timestamp: base + i as i64, seq: i }, delivery));
    }
    let mut sent: BTreeMap<(i32, i64), Sent> = BTreeMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (record, delivery) in pending {
        let meta = delivery.await.map_err(|e| Stop::Fail(format!("record {} not delivered: {e}", record.seq)))?;
        // Records of one key go to one partition in send order: offsets must grow with it.
        let last = last_offset.entry(meta.partition).or_insert(-1);
        ensure(meta.offset > *last, || {
            format!(
                "partition {}: record {} got offset {} after offset {last}",
                meta.partition, record.seq, meta.offset
            )
        })?;
        *last = meta.offset;
        sent.insert((meta.partition, meta.offset), record);
    }
    producer.close(Duration::from_secs(10)).await?;

    let read = read_all(s, name, 3, "read_uncommitted").await?;
    ensure(read.len() == sent.len(), || format!("sent {} records, read {} back", sent.len(), read.len()))?;
    for r in &read {
        let Some(expected) = sent.get(&(r.partition(), r.offset())) else {
            return fail(format!(
                "read partition {} offset {}, which no send was acknowledged at",
                r.partition(),
                r.offset()
            ));
        };
        let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            r.headers().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
        let mut want_headers = vec![(b"seq".to_vec(), Some(expected.seq.to_string().into_bytes()))];
        if expected.seq % 7 == 0 {
            want_headers.push((b"marker".to_vec(), None));
        }
        ensure(
            r.key() == Some(expected.key.as_bytes())
                && r.value() == expected.value.as_deref()
                && r.timestamp() == expected.timestamp
                && r.timestamp_type() == TimestampType::CreateTime
                && headers == want_headers,
            || {
                format!(
                    "record {} (partition {} offset {}) came back different: key {:?}, {} value bytes, timestamp {} \
                     ({:?}), headers {headers:?}",
                    expected.seq,
                    r.partition(),
                    r.offset(),
                    r.key().map(String::from_utf8_lossy),
                    r.value().map_or(0, <[u8]>::len),
                    r.timestamp(),
                    r.timestamp_type()
                )
            },
        )?;
    }
    let distinct: BTreeSet<(i32, i64)> = read.iter().map(|r| (r.partition(), r.offset())).collect();
    ensure(distinct.len() == read.len(), || "a record was read twice".to_owned())?;
    // Each partition's records arrive in offset order.
    let mut last_read: BTreeMap<i32, i64> = BTreeMap::new();
    for r in &read {
        let last = last_read.entry(r.partition()).or_insert(-1);
        ensure(r.offset() > *last, || {
            format!("partition {}: offset {} was read after offset {last}", r.partition(), r.offset())
        })?;
        *last = r.offset();
    }
    let per_partition: Vec<String> = (0..3).map(|p| last_offset.get(&p).map_or(0, |o| o + 1).to_string()).collect();
    Ok(format!(
        "{} records (idempotent, {codec}, keys, headers, null and empty values) to partitions of {} records; \
         every one read back once, in offset order, with equal key, value, headers and timestamp",
        sent.len(),
        per_partition.join("/")
    ))
}

/// Earliest, latest, by timestamp and max timestamp, through the admin client and the consumer.
async fn list_offsets(s: &Settings) -> Step<String> {
    on_topic(s, "list-offsets", async |admin, name| list_offsets_steps(s, admin, name).await).await
}

/// Sends `count` records to partition 0 of `topic`, timestamps `base + 1000 * i`.
async fn send_timed(s: &Settings, topic: &str, count: i64, base: i64) -> Step<()> {
    let producer = Producer::new(producer_config(s)?)?;
    let mut pending = Vec::new();
    for i in 0..count {
        let value = format!("record {i}");
        pending.push(
            producer.send(ProducerRecord::new(topic).partition(0).value(&value).timestamp(base + 1000 * i)).await?,
        );
    }
    for delivery in pending {
        delivery.await.map_err(|e| Stop::Fail(format!("not delivered: {e}")))?;
    }
    producer.close(Duration::from_secs(10)).await?;
    Ok(())
}

async fn list_offsets_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    create_topic_with(s, admin, name, 1, &[("message.timestamp.type", "CreateTime")]).await?;
    let base = now_ms() - 600_000;
    send_timed(s, name, 10, base).await?;
    let tp = TopicPartition::new(name, 0);
    let mut specs = vec![
        ("earliest", OffsetSpec::Earliest, 0),
        ("latest", OffsetSpec::Latest, 10),
        ("timestamp +3.5 s", OffsetSpec::Timestamp(base + 3500), 4),
    ];
    let max_timestamp = broker_apis(s).await?.broker_range(ApiKey::ListOffsets).is_some_and(|r| r.max >= 7);
    if max_timestamp {
        specs.push(("max timestamp", OffsetSpec::MaxTimestamp, 9));
    }
    let mut findings = Findings::default();
    let mut seen = Vec::new();
    for (what, spec, want) in specs {
        // Each lookup on its own: one the broker cannot answer does not hide the others.
        let got = match admin.list_offsets(BTreeMap::from([(tp.clone(), spec)]), false).await {
            Ok(listed) => match listed.get(&tp) {
                Some(Ok(o)) => o.offset,
                Some(Err(e)) => {
                    findings.check(false, || format!("{what}: {e}"));
                    continue;
                }
                None => {
                    findings.check(false, || format!("{what}: no result"));
                    continue;
                }
            },
            Err(e) => {
                findings.check(false, || format!("{what}: {e}"));
                continue;
            }
        };
        findings.check(got == want, || format!("{what}: offset {got}, expected {want}"));
        seen.push(format!("{what} {got}"));
    }
    let consumer = Consumer::new(consumer_config(s)?)?;
    let by_time = consumer.offsets_for_times(BTreeMap::from([(tp.clone(), base + 6000)])).await;
    let end = consumer.end_offsets(std::slice::from_ref(&tp)).await;
    consumer.close().await?;
    let by_time = by_time?.get(&tp).cloned().flatten().map(|o| o.offset);
    findings.check(by_time == Some(6), || format!("the consumer's offsets_for_times(+6 s): {by_time:?}, expected 6"));
    let end = end?.get(&tp).copied();
    findings.check(end == Some(10), || format!("the consumer's end offset: {end:?}, expected 10"));
    if !max_timestamp {
        seen.push("max timestamp not tried (ListOffsets below v7)".to_owned());
    }
    findings.finish(format!("10 records a second apart: {}; the consumer agrees", seen.join(", ")))
}

/// DeleteRecords moves the log start: the earliest offset and a consumer from the beginning
/// both start there.
async fn delete_records(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::DeleteRecords]).await?;
    on_topic(s, "delete-records", async |admin, name| delete_records_steps(s, admin, name).await).await
}

async fn delete_records_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    create_topic(s, admin, name, 1).await?;
    send_timed(s, name, 10, now_ms() - 60_000).await?;
    let tp = TopicPartition::new(name, 0);
    let mut findings = Findings::default();
    let deleted = admin.delete_records(BTreeMap::from([(tp.clone(), 4)])).await?;
    match deleted.get(&tp) {
        Some(Ok(low)) => findings.check(*low == 4, || format!("DeleteRecords before 4 reported low watermark {low}")),
        Some(Err(e)) => return fail(format!("DeleteRecords: {e}")),
        None => return fail("DeleteRecords: no result"),
    }
    let listed = admin.list_offsets(BTreeMap::from([(tp.clone(), OffsetSpec::Earliest)]), false).await?;
    let earliest = listed.get(&tp).and_then(|r| r.as_ref().ok()).map(|o| o.offset);
    findings.check(earliest == Some(4), || format!("earliest offset after DeleteRecords: {earliest:?}, expected 4"));
    let read = read_all(s, name, 1, "read_uncommitted").await?;
    let offsets: Vec<i64> = read.iter().map(ConsumerRecord::offset).collect();
    findings.check(offsets == (4..10).collect::<Vec<_>>(), || format!("read offsets {offsets:?}, expected 4..10"));
    findings.finish("records before offset 4 deleted: low watermark 4, earliest 4, a consumer reads 4-9".to_owned())
}

#[derive(Debug, Clone, Copy)]
enum GroupKind {
    /// The classic protocol with this assignor.
    Classic(&'static str),
    /// KIP-848's consumer protocol (the broker assigns).
    Consumer,
}

/// Commits what the application was handed before partitions move to another member, as
/// an application that must not read a record twice does.
struct CommitOnRevoke;

impl RebalanceListener for CommitOnRevoke {
    fn on_partitions_revoked<'a>(
        &'a self,
        consumer: &'a Consumer,
        partitions: &'a [TopicPartition],
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !partitions.is_empty() {
                let _ = consumer.commit().await;
            }
        })
    }

    fn on_partitions_assigned<'a>(&'a self, _: &'a Consumer, _: &'a [TopicPartition]) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What one group member has done.
struct Member {
    consumer: Consumer,
    seen: Vec<(i32, i64)>,
    /// Commits after a poll that the coordinator refused because a rebalance had begun (or
    /// that failed retriably). The records stay covered: a partition that moves is committed
    /// in the revocation listener, one that stays by the member's next commit.
    refused_commits: usize,
}

/// The commit errors of a group in the middle of a rebalance.
fn rebalance_error(e: &kafka_client::Error) -> bool {
    e.is_retriable()
        || matches!(
            e.code(),
            Some(
                ErrorCode::RebalanceInProgress
                    | ErrorCode::IllegalGeneration
                    | ErrorCode::UnknownMemberId
                    | ErrorCode::FencedMemberEpoch
                    | ErrorCode::StaleMemberEpoch
            )
        )
}

/// A KIP-848 heartbeat the broker answers UNSUPPORTED_VERSION: the API is advertised but the
/// protocol is disabled (`group.coordinator.rebalance.protocols`, or `group.version` 0).
fn consumer_protocol_disabled(e: kafka_client::Error) -> Stop {
    match e {
        kafka_client::Error::UnsupportedVersion { api: ApiKey::ConsumerGroupHeartbeat, .. } => {
            Stop::Skip("the broker has the consumer group protocol (KIP-848) disabled".to_owned())
        }
        e => Stop::from(e),
    }
}

impl Member {
    fn new(config: ConsumerConfig) -> Step<Member> {
        Ok(Member { consumer: Consumer::with_listener(config, CommitOnRevoke)?, seen: Vec::new(), refused_commits: 0 })
    }

    async fn poll(&mut self) -> Step<()> {
        let records = self.consumer.poll(Duration::from_millis(100)).await.map_err(consumer_protocol_disabled)?;
        if !records.is_empty() {
            self.seen.extend(records.iter().map(|r| (r.partition(), r.offset())));
            match self.consumer.commit().await {
                Ok(()) => {}
                Err(e) if rebalance_error(&e) => self.refused_commits += 1,
                Err(e) => return fail(format!("committing: {e}")),
            }
        }
        Ok(())
    }

    /// A last commit, which must succeed, then a clean leave.
    async fn leave(&self) -> Step<()> {
        self.consumer.commit().await?;
        Ok(self.consumer.close().await?)
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.consumer.assignment().iter().map(|tp| tp.partition).collect()
    }
}

/// Two members split four partitions; one leaves and the other takes them all; every record
/// is read exactly once across both (offsets committed after each poll); the committed
/// offsets and the group's description are what the admin client sees; the group is deleted.
async fn group(s: &Settings, kind: GroupKind) -> Step<String> {
    let (label, needed): (&str, &[ApiKey]) = match kind {
        GroupKind::Classic(assignor) => (
            assignor,
            &[
                ApiKey::FindCoordinator,
                ApiKey::JoinGroup,
                ApiKey::SyncGroup,
                ApiKey::Heartbeat,
                ApiKey::LeaveGroup,
                ApiKey::OffsetCommit,
                ApiKey::OffsetFetch,
                ApiKey::DescribeGroups,
                ApiKey::DeleteGroups,
            ],
        ),
        GroupKind::Consumer => (
            "consumer-protocol",
            &[
                ApiKey::FindCoordinator,
                ApiKey::ConsumerGroupHeartbeat,
                ApiKey::ConsumerGroupDescribe,
                ApiKey::OffsetCommit,
                ApiKey::OffsetFetch,
                ApiKey::DeleteGroups,
            ],
        ),
    };
    require(s, needed).await?;
    let admin = admin(s)?;
    let name = topic_name(s, &format!("group-{label}"));
    let group_id = format!("{}-group-{label}", s.prefix);
    let mut config = consumer_config(s)?.set("group.id", &group_id)?.set("enable.auto.commit", "false")?;
    config = match kind {
        GroupKind::Classic(assignor) => config.set("partition.assignment.strategy", assignor)?,
        GroupKind::Consumer => config.set("group.protocol", "consumer")?,
    };
    let mut a = Member::new(config.clone().set("client.id", "compat-a")?)?;
    let mut b = Member::new(config.set("client.id", "compat-b")?)?;
    let result = within(s, group_steps(s, &admin, &name, &group_id, &mut a, &mut b)).await;
    // Both members leave (again, if they did) so that the group is empty and can be deleted.
    let _ = a.consumer.close().await;
    let _ = b.consumer.close().await;
    let _ = admin.delete_consumer_groups([&group_id]).await;
    cleanup(&admin, &[&name]).await;
    admin.close();
    result
}

async fn group_steps(
    s: &Settings,
    admin: &AdminClient,
    name: &str,
    group_id: &str,
    a: &mut Member,
    b: &mut Member,
) -> Step<String> {
    const PARTITIONS: i32 = 4;
    create_topic(s, admin, name, PARTITIONS).await?;
    a.consumer.subscribe([name])?;
    b.consumer.subscribe([name])?;
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    let split = |a: &Member, b: &Member| {
        let (pa, pb) = (a.partitions(), b.partitions());
        !pa.is_empty()
            && !pb.is_empty()
            && pa.is_disjoint(&pb)
            && pa.union(&pb).copied().collect::<BTreeSet<_>>() == all
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !split(a, b) {
        ensure(Instant::now() < deadline, || {
            format!("the two members never split the partitions: {:?} and {:?}", a.partitions(), b.partitions())
        })?;
        a.poll().await?;
        b.poll().await?;
    }
    let first_split = (a.partitions(), b.partitions());

    // The group as the admin client describes it: the same split, once the coordinator has
    // heard both members acknowledge it (a heartbeat or two after they hold it).
    let want = vec![("compat-a".to_owned(), first_split.0.clone()), ("compat-b".to_owned(), first_split.1.clone())];
    let mut findings = Findings::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let described = admin.describe_consumer_groups([group_id]).await?;
        let description = match described.get(group_id) {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => return fail(format!("describing the group: {e}")),
            None => return fail("describing the group: no result"),
        };
        let mut members: Vec<(String, BTreeSet<i32>)> = description
            .members
            .iter()
            .map(|m| (m.client_id.clone(), m.assignment.iter().map(|tp| tp.partition).collect()))
            .collect();
        members.sort();
        if members == want {
            break;
        }
        if Instant::now() >= deadline {
            findings.check(false, || format!("the group's description lists {members:?}, the members hold {want:?}"));
            break;
        }
        a.poll().await?;
        b.poll().await?;
        ensure((a.partitions(), b.partitions()) == first_split, || {
            format!("the split moved from {first_split:?} to {:?}", (a.partitions(), b.partitions()))
        })?;
    }

    // Records arrive while both are members.
    let half = (s.records / 2) as i64;
    send_spread(s, name, PARTITIONS, half).await?;
    let total = |a: &Member, b: &Member| (a.seen.len() + b.seen.len()) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(a, b) < half {
        ensure(Instant::now() < deadline, || format!("read {} of {half} records", total(a, b)))?;
        a.poll().await?;
        b.poll().await?;
    }

    // b leaves (after its last commit); a takes every partition.
    b.leave().await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.partitions() != all {
        ensure(Instant::now() < deadline, || format!("after b left, a holds {:?}", a.partitions()))?;
        a.poll().await?;
    }
    send_spread(s, name, PARTITIONS, half).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while total(a, b) < 2 * half {
        ensure(Instant::now() < deadline, || format!("read {} of {} records", total(a, b), 2 * half))?;
        a.poll().await?;
    }
    a.leave().await?;

    let mut seen: Vec<(i32, i64)> = a.seen.iter().chain(&b.seen).copied().collect();
    seen.sort_unstable();
    let read = seen.len();
    seen.dedup();
    findings.check(read == seen.len(), || format!("{} records were read twice", read - seen.len()));
    findings.check(read as i64 == 2 * half, || format!("read {read} records, {} were sent", 2 * half));

    // The committed offsets are where reading stopped, and the end offsets too.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset) in &seen {
        next.insert(*partition, offset + 1);
    }
    let tps: Vec<TopicPartition> = (0..PARTITIONS).map(|p| TopicPartition::new(name, p)).collect();
    let ends = admin.list_offsets(tps.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect(), false).await?;
    let committed = admin.list_consumer_group_offsets(group_id, Some(&tps)).await?;
    for tp in &tps {
        let read_to = next.get(&tp.partition).copied();
        let got = committed.get(tp).and_then(|r| r.as_ref().ok()).cloned().flatten().map(|o| o.offset);
        findings.check(got == read_to, || {
            format!("partition {}: committed {got:?}, records were read up to {read_to:?}", tp.partition)
        });
        let end = ends.get(tp).and_then(|r| r.as_ref().ok()).map(|o| o.offset);
        findings.check(end == read_to, || {
            format!("partition {}: end offset {end:?}, records were read up to {read_to:?}", tp.partition)
        });
    }
    let deleted = admin.delete_consumer_groups([group_id]).await?;
    if let Some(Err(e)) = deleted.get(group_id) {
        return fail(format!("deleting the empty group: {e}"));
    }
    let refused = a.refused_commits + b.refused_commits;
    findings.finish(format!(
        "split {:?}/{:?} (as described by the admin client), all {PARTITIONS} to one member after the other \
         left; {read} records read exactly once; committed offsets = end offsets = where reading stopped \
         ({refused} commit(s) refused \
         during a rebalance); group deleted",
        first_split.0, first_split.1
    ))
}

/// Sends `count` records round-robin over `partitions`.
async fn send_spread(s: &Settings, topic: &str, partitions: i32, count: i64) -> Step<()> {
    let producer = Producer::new(producer_config(s)?)?;
    let mut pending = Vec::new();
    for i in 0..count {
        let value = format!("record {i}");
        let record = ProducerRecord::new(topic).partition((i % i64::from(partitions)) as i32).value(&value);
        pending.push(producer.send(record).await?);
    }
    for delivery in pending {
        delivery.await.map_err(|e| Stop::Fail(format!("not delivered: {e}")))?;
    }
    producer.close(Duration::from_secs(10)).await?;
    Ok(())
}

/// A committed, an aborted and a second committed transaction: read_committed sees the
/// committed ones only, read_uncommitted all three, neither sees the markers.
async fn transactions(s: &Settings) -> Step<String> {
    require(s, &[ApiKey::InitProducerId, ApiKey::AddPartitionsToTxn, ApiKey::EndTxn]).await?;
    on_topic(s, "transactions", async |admin, name| transactions_steps(s, admin, name).await).await
}

async fn transactions_steps(s: &Settings, admin: &AdminClient, name: &str) -> Step<String> {
    create_topic(s, admin, name, 2).await?;
    let producer = Producer::new(
        producer_config(s)?.transactional_id(format!("{}-txn", s.prefix)).transaction_timeout(Duration::from_secs(60)),
    )?;
    producer.init_transactions().await?;
    let per = 50;
    let mut committed = Vec::new();
    let mut everything = Vec::new();
    for (txn, commit) in [(0, true), (1, false), (2, true)] {
        producer.begin_transaction()?;
        let mut pending = Vec::new();
        for i in 0..per {
            let value = format!("txn {txn} record {i}");
            pending.push(producer.send(ProducerRecord::new(name).partition(i % 2).value(&value)).await?);
            everything.push(value.clone());
            if commit {
                committed.push(value);
            }
        }
        for delivery in pending {
            delivery.await.map_err(|e| Stop::Fail(format!("transaction {txn}: not delivered: {e}")))?;
        }
        if commit {
            producer.commit_transaction().await?;
        } else {
            producer.abort_transaction().await?;
        }
    }
    producer.close(Duration::from_secs(10)).await?;
    let values = |records: Vec<ConsumerRecord>| -> Vec<String> {
        let mut v: Vec<String> =
            records.iter().map(|r| String::from_utf8_lossy(r.value().unwrap_or_default()).into_owned()).collect();
        v.sort();
        v
    };
    committed.sort();
    everything.sort();
    // EndTxn is answered once the commit is in the transaction log; the markers reach the
    // partitions after that. Wait until the last stable offset is the end of each partition.
    let tps: Vec<TopicPartition> = (0..2).map(|p| TopicPartition::new(name, p)).collect();
    let latest = |read_committed: bool| {
        let wanted = tps.iter().map(|tp| (tp.clone(), OffsetSpec::Latest)).collect();
        async move {
            let listed = admin.list_offsets(wanted, read_committed).await.ok()?;
            listed.into_iter().map(|(tp, r)| r.ok().map(|o| (tp, o.offset))).collect::<Option<BTreeMap<_, _>>>()
        }
    };
    let stable = wait_until(Duration::from_secs(30), || async {
        let (lso, end) = (latest(true).await?, latest(false).await?);
        (lso == end).then_some(())
    })
    .await;
    let mut findings = Findings::default();
    findings.check(stable.is_some(), || "the last stable offset did not reach the end offset within 30 s".to_owned());
    let rc = values(read_all(s, name, 2, "read_committed").await?);
    findings.check(rc == committed, || {
        let aborted = rc.iter().filter(|v| v.starts_with("txn 1 ")).count();
        format!("read_committed read {} records ({aborted} aborted), {} were committed", rc.len(), committed.len())
    });
    let ru = values(read_all(s, name, 2, "read_uncommitted").await?);
    findings.check(ru == everything, || {
        format!("read_uncommitted read {} records, {} were written", ru.len(), everything.len())
    });
    findings.finish(format!(
        "3 transactions of {per} records (commit, abort, commit): read_committed reads the {} committed, \
         read_uncommitted all {}",
        committed.len(),
        everything.len()
    ))
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn every_check_is_dispatched() {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        // An unknown name fails at once; a known one gets as far as connecting (nothing
        // listens on port 1, so it fails or is cut off by the short limit, never "no check named").
        let mut s = Settings::new("127.0.0.1:1");
        s.check_timeout = Duration::from_millis(200);
        assert!(matches!(runtime.block_on(run_check("nope", &s)), Outcome::Fail(m) if m == "no check named nope"));
        for name in CHECKS {
            let outcome = runtime.block_on(run_check(name, &s));
            assert!(!outcome.detail().starts_with("no check named"), "{name}: {outcome:?}");
        }
    }
}
