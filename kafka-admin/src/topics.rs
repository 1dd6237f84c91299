//! Topics, partitions and the cluster: CreateTopics, DeleteTopics, Metadata,
//! CreatePartitions and DescribeCluster.

use std::collections::{BTreeMap, BTreeSet};

use kafka_client::metadata::BrokerMetadata;
use kafka_protocol::messages::create_partitions_request::{CreatePartitionsAssignment, CreatePartitionsTopic};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest, MetadataRequest,
    MetadataResponse,
};
use kafka_protocol::primitives::Uuid;
use kafka_protocol::{ApiKey, ErrorCode};

use crate::client::{check, fill_missing, AdminClient, Attempt};
use crate::configs::{ConfigEntry, ConfigSource};
use crate::error::{Error, Result};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The name.
    pub name: String,
    /// The partition count, or `None` for the broker's `num.partitions` (needs CreateTopics
    /// v4, Kafka 2.4+). Ignored when `replica_assignment` is given.
    pub num_partitions: Option<i32>,
    /// The replication factor, or `None` for the broker's `default.replication.factor`.
    /// Ignored when `replica_assignment` is given.
    pub replication_factor: Option<i16>,
    /// An explicit assignment: partition index to its replicas (the first is the preferred
    /// leader).
    pub replica_assignment: BTreeMap<i32, Vec<i32>>,
    /// Topic configs (`cleanup.policy`, `retention.ms`, ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions, each on `replication_factor` brokers.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i16) -> Self {
        NewTopic {
            name: name.into(),
            num_partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            replica_assignment: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }

    /// A topic with the broker's default partition count and replication factor.
    pub fn with_defaults(name: impl Into<String>) -> Self {
        NewTopic { num_partitions: None, replication_factor: None, ..NewTopic::new(name, -1, -1) }
    }

    /// A topic whose partition `i` is on the brokers of `assignment[i]`.
    pub fn with_assignment(name: impl Into<String>, assignment: impl IntoIterator<Item = Vec<i32>>) -> Self {
        NewTopic {
            num_partitions: None,
            replication_factor: None,
            replica_assignment: (0..).zip(assignment).collect(),
            ..NewTopic::new(name, -1, -1)
        }
    }

    /// Adds a topic config.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.insert(key.into(), value.into());
        self
    }
}

/// What the controller says about a topic it created (Kafka 2.4+ sends these; older
/// brokers leave them at -1 and empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedTopic {
    /// The topic id (zero before Kafka 2.8).
    pub topic_id: Uuid,
    /// The partition count, or -1.
    pub num_partitions: i32,
    /// The replication factor, or -1.
    pub replication_factor: i16,
    /// The topic's configs, when the broker sent them.
    pub configs: Vec<ConfigEntry>,
}

/// A topic in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicListing {
    /// The name.
    pub name: String,
    /// The topic id (zero when the broker does not send ids).
    pub topic_id: Uuid,
    /// Whether it is internal (`__consumer_offsets`, `__transaction_state`).
    pub is_internal: bool,
}

/// One partition of a described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The index.
    pub partition: i32,
    /// The leader, or `None` when the partition has none.
    pub leader: Option<i32>,
    /// The leader epoch, or -1 when the broker did not say.
    pub leader_epoch: i32,
    /// The replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas that are offline.
    pub offline_replicas: Vec<i32>,
}

/// A described topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// The name.
    pub name: String,
    /// The topic id (zero when the broker does not send ids).
    pub topic_id: Uuid,
    /// Whether it is internal.
    pub is_internal: bool,
    /// The partitions, by index.
    pub partitions: Vec<PartitionDescription>,
}

/// A new partition count for an existing topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPartitions {
    /// The total partition count after the change; must be above the current one.
    pub total_count: i32,
    /// Replicas of each new partition (one entry per new partition), or `None` for the
    /// controller's choice.
    pub assignments: Option<Vec<Vec<i32>>>,
}

impl NewPartitions {
    /// Grow to `total_count` partitions, replicas placed by the controller.
    pub fn increase_to(total_count: i32) -> Self {
        NewPartitions { total_count, assignments: None }
    }
}

/// The cluster as DescribeCluster (or Metadata, on brokers before 2.8) describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The controller (with KRaft, the broker that forwards to it), when known.
    pub controller: Option<i32>,
    /// The brokers, by node id.
    pub brokers: Vec<BrokerMetadata>,
}

fn topic_resource(name: &str) -> String {
    format!("topic {name}")
}

fn topic_name_error(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("the topic name is empty".to_owned())
    } else if name == "." || name == ".." {
        Some(format!("the topic name cannot be \"{name}\""))
    } else {
        None
    }
}

impl AdminClient {
    /// Creates topics (on the controller). With `validate_only` the controller checks
    /// everything and creates nothing. Each topic has its own result: an invalid or existing
    /// topic fails alone (INVALID_TOPIC_EXCEPTION, TOPIC_ALREADY_EXISTS, INVALID_CONFIG, ...).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kafka_admin::{AdminClient, AdminConfig, NewTopic};
    /// let cluster = kafka_broker::Cluster::builder().brokers(3).start().await?;
    /// let admin = AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers()))?;
    /// let topics = [
    ///     NewTopic::new("events", 6, 3).config("retention.ms", "3600000"),
    ///     NewTopic::with_assignment("pinned", [vec![1, 2], vec![2, 3]]),
    /// ];
    /// for (name, result) in admin.create_topics(topics, false).await? {
    ///     println!("{name}: {} partitions", result?.num_partitions);
    /// }
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn create_topics(
        &self,
        topics: impl IntoIterator<Item = NewTopic>,
        validate_only: bool,
    ) -> Result<BTreeMap<String, Result<CreatedTopic>>> {
        let mut wanted: BTreeMap<String, NewTopic> = BTreeMap::new();
        let mut refused = BTreeMap::new();
        for t in topics {
            if let Some(reason) = topic_name_error(&t.name) {
                refused.insert(t.name.clone(), Err(Error::invalid(topic_resource(&t.name), reason)));
            } else if wanted.contains_key(&t.name) {
                refused.insert(t.name.clone(), Err(Error::invalid(topic_resource(&t.name), "named twice in one call")));
            } else {
                wanted.insert(t.name.clone(), t);
            }
        }
        for name in refused.keys() {
            wanted.remove(name);
        }
        let keys: Vec<String> = wanted.keys().cloned().collect();
        let wanted = &wanted;
        let mut out = if keys.is_empty() {
            BTreeMap::new()
        } else {
            self.run("CreateTopics", keys, move |keys| self.create_topics_once(keys, wanted, validate_only)).await?
        };
        out.extend(refused);
        Ok(out)
    }

    async fn create_topics_once(
        &self,
        keys: Vec<String>,
        wanted: &BTreeMap<String, NewTopic>,
        validate_only: bool,
    ) -> Attempt<String, CreatedTopic> {
        let conn = self.controller().await?;
        let version = conn.version(ApiKey::CreateTopics, 2)?;
        let mut topics = Vec::new();
        for name in &keys {
            let Some(t) = wanted.get(name) else { continue };
            let explicit = !t.replica_assignment.is_empty();
            topics.push(CreatableTopic {
                name: t.name.clone(),
                num_partitions: if explicit { -1 } else { t.num_partitions.unwrap_or(-1) },
                replication_factor: if explicit { -1 } else { t.replication_factor.unwrap_or(-1) },
                assignments: t
                    .replica_assignment
                    .iter()
                    .map(|(p, brokers)| CreatableReplicaAssignment {
                        partition_index: *p,
                        broker_ids: brokers.clone(),
                        ..Default::default()
                    })
                    .collect(),
                configs: t
                    .configs
                    .iter()
                    .map(|(k, v)| CreatableTopicConfig {
                        name: k.clone(),
                        value: Some(v.clone()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            });
        }
        let request =
            CreateTopicsRequest { topics, timeout_ms: self.timeout_ms(), validate_only, ..Default::default() };
        let response = conn.request_at(&request, version).await?;
        let mut out = Vec::new();
        for t in response.topics {
            let name = t.name.clone();
            let r = check(|| topic_resource(&name), t.error_code, t.error_message).map(|()| CreatedTopic {
                topic_id: t.topic_id,
                num_partitions: t.num_partitions,
                replication_factor: t.replication_factor,
                configs: t
                    .configs
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| ConfigEntry {
                        name: c.name,
                        value: c.value,
                        source: ConfigSource::from_wire(c.config_source),
                        is_sensitive: c.is_sensitive,
                        read_only: c.read_only,
                        is_default: c.config_source == ConfigSource::Default.wire(),
                        synonyms: Vec::new(),
                    })
                    .collect(),
            });
            out.push((name, r));
        }
        fill_missing(&keys, &mut out, |k| topic_resource(k));
        Ok(out)
    }

    /// Deletes topics (on the controller); each has its own result
    /// (UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist).
    pub async fn delete_topics<S: AsRef<str>>(
        &self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let keys: Vec<String> =
            names.into_iter().map(|s| s.as_ref().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        self.run("DeleteTopics", keys, |keys| async move {
            let conn = self.controller().await?;
            let version = conn.version(ApiKey::DeleteTopics, 1)?;
            let request = if version >= 6 {
                DeleteTopicsRequest {
                    topics: keys
                        .iter()
                        .map(|n| DeleteTopicState { name: Some(n.clone()), ..Default::default() })
                        .collect(),
                    timeout_ms: self.timeout_ms(),
                    ..Default::default()
                }
            } else {
                DeleteTopicsRequest { topic_names: keys.clone(), timeout_ms: self.timeout_ms(), ..Default::default() }
            };
            let response = conn.request_at(&request, version).await?;
            let mut out = Vec::new();
            for t in response.responses {
                let Some(name) = t.name else { continue };
                let r = check(|| topic_resource(&name), t.error_code, t.error_message);
                out.push((name, r));
            }
            fill_missing(&keys, &mut out, |k| topic_resource(k));
            Ok(out)
        })
        .await
    }

    async fn topic_metadata(
        &self,
        topics: Option<&[String]>,
    ) -> std::result::Result<MetadataResponse, kafka_client::Error> {
        let conn = self.client.any_connection().await?;
        let version = conn.version(ApiKey::Metadata, 1)?;
        let request = MetadataRequest {
            topics: topics.map(|ts| {
                ts.iter().map(|t| MetadataRequestTopic { name: Some(t.clone()), ..Default::default() }).collect()
            }),
            allow_auto_topic_creation: false,
            ..Default::default()
        };
        conn.request_at(&request, version).await
    }

    /// The cluster's topics (internal ones only with `include_internal`), sorted by name.
    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicListing>> {
        let response = self.run_one("Metadata", || async { Ok(self.topic_metadata(None).await?) }).await?;
        let mut out: Vec<TopicListing> = response
            .topics
            .into_iter()
            .filter(|t| include_internal || !t.is_internal)
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some(TopicListing { name: t.name?, topic_id: t.topic_id, is_internal: t.is_internal }))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Describes topics: per partition the leader, leader epoch, replicas and ISR. A topic
    /// that does not exist fails alone with UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn describe_topics<S: AsRef<str>>(
        &self,
        names: impl IntoIterator<Item = S>,
    ) -> Result<BTreeMap<String, Result<TopicDescription>>> {
        let keys: Vec<String> =
            names.into_iter().map(|s| s.as_ref().to_owned()).collect::<BTreeSet<_>>().into_iter().collect();
        self.run("Metadata", keys, |keys| async move {
            let response = self.topic_metadata(Some(&keys)).await?;
            let mut out = Vec::new();
            for t in response.topics {
                let Some(name) = t.name else { continue };
                if !keys.contains(&name) {
                    continue;
                }
                let r = check(|| topic_resource(&name), t.error_code, None).map(|()| {
                    let mut partitions: Vec<PartitionDescription> = t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionDescription {
                            partition: p.partition_index,
                            leader: (p.leader_id >= 0).then_some(p.leader_id),
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes,
                            isr: p.isr_nodes,
                            offline_replicas: p.offline_replicas,
                        })
                        .collect();
                    partitions.sort_by_key(|p| p.partition);
                    TopicDescription {
                        name: name.clone(),
                        topic_id: t.topic_id,
                        is_internal: t.is_internal,
                        partitions,
                    }
                });
                out.push((name, r));
            }
            fill_missing(&keys, &mut out, |k| topic_resource(k));
            Ok(out)
        })
        .await
    }

    /// Adds partitions to topics (on the controller). Partitions can only be added: a count
    /// at or below the current one is refused before anything is sent, as is a topic the
    /// cluster does not have.
    pub async fn create_partitions(
        &self,
        topics: BTreeMap<String, NewPartitions>,
    ) -> Result<BTreeMap<String, Result<()>>> {
        let current = self.describe_topics(topics.keys()).await?;
        let mut out = BTreeMap::new();
        let mut wanted = BTreeMap::new();
        for (name, new) in topics {
            match current.get(&name) {
                Some(Ok(d)) => {
                    let now = d.partitions.len();
                    if usize::try_from(new.total_count).map_or(true, |n| n <= now) {
                        let reason = if usize::try_from(new.total_count).is_ok_and(|n| n == now) {
                            format!("the topic already has {now} partitions")
                        } else {
                            format!(
                                "the topic has {now} partitions; partitions cannot be removed (asked for {})",
                                new.total_count
                            )
                        };
                        out.insert(name.clone(), Err(Error::invalid(topic_resource(&name), reason)));
                    } else {
                        wanted.insert(name, new);
                    }
                }
                Some(Err(e)) => {
                    out.insert(name, Err(e.clone()));
                }
                None => {
                    out.insert(
                        name.clone(),
                        Err(Error::kafka(topic_resource(&name), ErrorCode::UnknownTopicOrPartition, None)),
                    );
                }
            }
        }
        if wanted.is_empty() {
            return Ok(out);
        }
        let keys: Vec<String> = wanted.keys().cloned().collect();
        let wanted = &wanted;
        let results = self
            .run("CreatePartitions", keys, move |keys| async move {
                let conn = self.controller().await?;
                let version = conn.version(ApiKey::CreatePartitions, 0)?;
                let request = CreatePartitionsRequest {
                    topics: keys
                        .iter()
                        .filter_map(|k| wanted.get(k).map(|n| (k, n)))
                        .map(|(k, n)| CreatePartitionsTopic {
                            name: k.clone(),
                            count: n.total_count,
                            assignments: n.assignments.as_ref().map(|a| {
                                a.iter()
                                    .map(|b| CreatePartitionsAssignment { broker_ids: b.clone(), ..Default::default() })
                                    .collect()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                    timeout_ms: self.timeout_ms(),
                    validate_only: false,
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out: Vec<(String, Result<()>)> = response
                    .results
                    .into_iter()
                    .map(|r| {
                        let name = r.name;
                        let result = check(|| topic_resource(&name), r.error_code, r.error_message);
                        (name, result)
                    })
                    .collect();
                fill_missing(&keys, &mut out, |k| topic_resource(k));
                Ok(out)
            })
            .await?;
        out.extend(results);
        Ok(out)
    }

    /// The cluster id, the controller and the brokers (DescribeCluster on Kafka 2.8+,
    /// Metadata before).
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        self.run_one("DescribeCluster", || async {
            let conn = self.client.any_connection().await?;
            if let Ok(version) = conn.version(ApiKey::DescribeCluster, 0) {
                let response = conn.request_at(&DescribeClusterRequest::default(), version).await?;
                check(|| "cluster".to_owned(), response.error_code, response.error_message)?;
                let mut brokers: Vec<BrokerMetadata> = response
                    .brokers
                    .into_iter()
                    .filter_map(|b| {
                        Some(BrokerMetadata {
                            node_id: b.broker_id,
                            host: b.host,
                            port: u16::try_from(b.port).ok()?,
                            rack: b.rack,
                        })
                    })
                    .collect();
                brokers.sort_by_key(|b| b.node_id);
                return Ok(ClusterDescription {
                    cluster_id: Some(response.cluster_id),
                    controller: (response.controller_id >= 0).then_some(response.controller_id),
                    brokers,
                });
            }
            let metadata = self.client.refresh_metadata().await?;
            let mut brokers: Vec<BrokerMetadata> = metadata.brokers.values().cloned().collect();
            brokers.sort_by_key(|b| b.node_id);
            Ok(ClusterDescription {
                cluster_id: metadata.cluster_id.clone(),
                controller: (metadata.controller_id >= 0).then_some(metadata.controller_id),
                brokers,
            })
        })
        .await
    }
}
