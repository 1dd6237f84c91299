//! Configs of topics and brokers: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.
//!
//! Broker resources go to that broker (only it knows its static and per-broker configs);
//! topic resources and cluster-wide broker defaults (an empty broker name) go to any broker,
//! as the Java client sends them (a KRaft broker forwards changes to the controller).

use std::collections::BTreeMap;
use std::fmt;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};
use kafka_protocol::ApiKey;

use crate::client::{check, fill_missing, AdminClient, Attempt};
use crate::error::{Error, Result};

/// The kind of a config resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    /// A topic (wire value 2).
    Topic,
    /// A broker (4); the name is its node id, or empty for the cluster-wide default.
    Broker,
    /// A broker's loggers (8).
    BrokerLogger,
}

impl ResourceType {
    fn wire(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Broker => 4,
            ResourceType::BrokerLogger => 8,
        }
    }
}

/// A topic or broker whose configs are described or changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigResource {
    /// The kind.
    pub resource_type: ResourceType,
    /// The topic name or broker id.
    pub name: String,
}

impl ConfigResource {
    /// A topic.
    pub fn topic(name: impl Into<String>) -> Self {
        ConfigResource { resource_type: ResourceType::Topic, name: name.into() }
    }

    /// A broker by node id.
    pub fn broker(id: i32) -> Self {
        ConfigResource { resource_type: ResourceType::Broker, name: id.to_string() }
    }

    /// The broker this resource must be sent to, if any.
    fn node(&self) -> Option<i32> {
        match self.resource_type {
            ResourceType::Broker | ResourceType::BrokerLogger => self.name.parse().ok(),
            ResourceType::Topic => None,
        }
    }
}

impl fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.resource_type {
            ResourceType::Topic => write!(f, "topic {}", self.name),
            ResourceType::Broker if self.name.is_empty() => write!(f, "broker default"),
            ResourceType::Broker => write!(f, "broker {}", self.name),
            ResourceType::BrokerLogger => write!(f, "broker logger {}", self.name),
        }
    }
}

/// Where a config's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// Not known (0).
    Unknown,
    /// Set on the topic (1).
    DynamicTopic,
    /// Set dynamically on this broker (2).
    DynamicBroker,
    /// Set dynamically as the cluster-wide default (3).
    DynamicDefaultBroker,
    /// From the broker's properties file (4).
    StaticBroker,
    /// Kafka's default (5).
    Default,
    /// A broker logger level (6).
    DynamicBrokerLogger,
    /// Anything newer.
    Other(i8),
}

impl ConfigSource {
    pub(crate) fn from_wire(v: i8) -> Self {
        match v {
            0 => ConfigSource::Unknown,
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            v => ConfigSource::Other(v),
        }
    }

    pub(crate) fn wire(self) -> i8 {
        match self {
            ConfigSource::Unknown => 0,
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::DynamicDefaultBroker => 3,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::DynamicBrokerLogger => 6,
            ConfigSource::Other(v) => v,
        }
    }

    /// Kafka's name for the source (`DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Unknown | ConfigSource::Other(_) => "UNKNOWN",
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
        }
    }
}

/// Another source that also sets a config, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The config's name at that source (brokers use `log.retention.ms` for `retention.ms`).
    pub name: String,
    /// Its value there (`None` when sensitive).
    pub value: Option<String>,
    /// The source.
    pub source: ConfigSource,
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The name.
    pub name: String,
    /// The value; `None` for sensitive configs (passwords), which brokers never send.
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether the value is sensitive.
    pub is_sensitive: bool,
    /// Whether it cannot be changed dynamically.
    pub read_only: bool,
    /// Whether the value is Kafka's default.
    pub is_default: bool,
    /// The other sources that set it, when asked for.
    pub synonyms: Vec<ConfigSynonym>,
}

/// The operation of an incremental config change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpType {
    /// Set the value (0).
    Set,
    /// Remove the override, back to the default (1).
    Delete,
    /// Add to a list value (2).
    Append,
    /// Remove from a list value (3).
    Subtract,
}

/// One incremental config change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterConfigOp {
    /// The config's name.
    pub name: String,
    /// The operation.
    pub op: OpType,
    /// The value (ignored by [`OpType::Delete`]).
    pub value: Option<String>,
}

impl AlterConfigOp {
    /// Sets `name` to `value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        AlterConfigOp { name: name.into(), op: OpType::Set, value: Some(value.into()) }
    }

    /// Removes the override of `name`.
    pub fn delete(name: impl Into<String>) -> Self {
        AlterConfigOp { name: name.into(), op: OpType::Delete, value: None }
    }
}

/// Groups resources by the broker they go to (`None` = any broker).
fn by_node(keys: &[ConfigResource]) -> BTreeMap<Option<i32>, Vec<ConfigResource>> {
    let mut out: BTreeMap<Option<i32>, Vec<ConfigResource>> = BTreeMap::new();
    for k in keys {
        out.entry(k.node()).or_default().push(k.clone());
    }
    out
}

/// One resource type and name from an answer, back to the key it answers.
fn key_of(keys: &[ConfigResource], resource_type: i8, name: &str) -> Option<ConfigResource> {
    keys.iter().find(|k| k.resource_type.wire() == resource_type && k.name == name).cloned()
}

impl AdminClient {
    async fn on_node(
        &self,
        node: Option<i32>,
    ) -> std::result::Result<kafka_client::conn::Connection, kafka_client::Error> {
        match node {
            Some(id) => self.node(id).await,
            None => self.client.any_connection().await,
        }
    }

    /// Runs `per_node` for each broker's share of `keys` concurrently; a broker that cannot
    /// be reached fails its share (retried by the caller's loop).
    async fn spread<T, F, Fut>(&self, keys: Vec<ConfigResource>, per_node: F) -> Attempt<ConfigResource, T>
    where
        F: Fn(Option<i32>, Vec<ConfigResource>) -> Fut,
        Fut: std::future::Future<Output = Attempt<ConfigResource, T>>,
    {
        let groups = by_node(&keys);
        let futures = groups.into_iter().map(|(node, share)| {
            let fut = per_node(node, share.clone());
            async move {
                match fut.await {
                    Ok(r) => r,
                    Err(e) => share.into_iter().map(|k| (k, Err(Error::Client(e.clone())))).collect(),
                }
            }
        });
        let mut out: Vec<(ConfigResource, Result<T>)> = Vec::new();
        for part in join_all(futures).await {
            out.extend(part);
        }
        fill_missing(&keys, &mut out, |k| k.to_string());
        Ok(out)
    }

    /// The configs of topics and brokers, each with its source, sensitivity and (with
    /// `include_synonyms`) the other sources that set it.
    pub async fn describe_configs(
        &self,
        resources: impl IntoIterator<Item = ConfigResource>,
        include_synonyms: bool,
    ) -> Result<BTreeMap<ConfigResource, Result<Vec<ConfigEntry>>>> {
        let keys: Vec<ConfigResource> = resources.into_iter().collect();
        self.run("DescribeConfigs", keys, |keys| {
            self.spread(keys, move |node, share| async move {
                let conn = self.on_node(node).await?;
                let version = conn.version(ApiKey::DescribeConfigs, 1)?;
                let request = DescribeConfigsRequest {
                    resources: share
                        .iter()
                        .map(|k| DescribeConfigsResource {
                            resource_type: k.resource_type.wire(),
                            resource_name: k.name.clone(),
                            configuration_keys: None,
                            ..Default::default()
                        })
                        .collect(),
                    include_synonyms,
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for r in response.results {
                    let Some(key) = key_of(&share, r.resource_type, &r.resource_name) else { continue };
                    let result = check(|| key.to_string(), r.error_code, r.error_message).map(|()| {
                        r.configs
                            .into_iter()
                            .map(|c| ConfigEntry {
                                name: c.name,
                                value: c.value,
                                source: ConfigSource::from_wire(c.config_source),
                                is_sensitive: c.is_sensitive,
                                read_only: c.read_only,
                                is_default: c.config_source == ConfigSource::Default.wire(),
                                synonyms: c
                                    .synonyms
                                    .into_iter()
                                    .map(|s| ConfigSynonym {
                                        name: s.name,
                                        value: s.value,
                                        source: ConfigSource::from_wire(s.source),
                                    })
                                    .collect(),
                            })
                            .collect()
                    });
                    out.push((key, result));
                }
                Ok(out)
            })
        })
        .await
    }

    /// Replaces the dynamic configs of each resource with `configs` (AlterConfigs: configs
    /// not listed go back to their defaults). Prefer [`Self::incremental_alter_configs`].
    pub async fn alter_configs(
        &self,
        configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
        validate_only: bool,
    ) -> Result<BTreeMap<ConfigResource, Result<()>>> {
        let keys: Vec<ConfigResource> = configs.keys().cloned().collect();
        let configs = &configs;
        self.run("AlterConfigs", keys, |keys| {
            self.spread(keys, move |node, share| async move {
                let conn = self.on_node(node).await?;
                let version = conn.version(ApiKey::AlterConfigs, 0)?;
                let request = AlterConfigsRequest {
                    resources: share
                        .iter()
                        .map(|k| alter_configs_request::AlterConfigsResource {
                            resource_type: k.resource_type.wire(),
                            resource_name: k.name.clone(),
                            configs: configs
                                .get(k)
                                .into_iter()
                                .flatten()
                                .map(|(n, v)| alter_configs_request::AlterableConfig {
                                    name: n.clone(),
                                    value: Some(v.clone()),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    validate_only,
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for r in response.responses {
                    let Some(key) = key_of(&share, r.resource_type, &r.resource_name) else { continue };
                    out.push((key.clone(), check(|| key.to_string(), r.error_code, r.error_message)));
                }
                Ok(out)
            })
        })
        .await
    }

    /// Changes configs one by one (IncrementalAlterConfigs, Kafka 2.3+): set, delete, append
    /// to or subtract from list values, leaving the others alone.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kafka_admin::{AdminClient, AdminConfig, AlterConfigOp, ConfigResource, ConfigSource};
    /// let cluster = kafka_broker::Cluster::builder().start().await?;
    /// cluster.create_topic("orders", 1, 1).await?;
    /// let admin = AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers()))?;
    /// let topic = ConfigResource::topic("orders");
    /// let changes = [(topic.clone(), vec![AlterConfigOp::set("retention.ms", "60000")])].into();
    /// admin.incremental_alter_configs(changes, false).await?[&topic].clone()?;
    /// let configs = admin.describe_configs([topic.clone()], false).await?[&topic].clone()?;
    /// let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
    /// assert_eq!(retention.value.as_deref(), Some("60000"));
    /// assert_eq!(retention.source, ConfigSource::DynamicTopic);
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn incremental_alter_configs(
        &self,
        changes: BTreeMap<ConfigResource, Vec<AlterConfigOp>>,
        validate_only: bool,
    ) -> Result<BTreeMap<ConfigResource, Result<()>>> {
        let keys: Vec<ConfigResource> = changes.keys().cloned().collect();
        let changes = &changes;
        self.run("IncrementalAlterConfigs", keys, |keys| {
            self.spread(keys, move |node, share| async move {
                let conn = self.on_node(node).await?;
                let version = conn.version(ApiKey::IncrementalAlterConfigs, 0)?;
                let request = IncrementalAlterConfigsRequest {
                    resources: share
                        .iter()
                        .map(|k| incremental_alter_configs_request::AlterConfigsResource {
                            resource_type: k.resource_type.wire(),
                            resource_name: k.name.clone(),
                            configs: changes
                                .get(k)
                                .into_iter()
                                .flatten()
                                .map(|op| incremental_alter_configs_request::AlterableConfig {
                                    name: op.name.clone(),
                                    config_operation: match op.op {
                                        OpType::Set => 0,
                                        OpType::Delete => 1,
                                        OpType::Append => 2,
                                        OpType::Subtract => 3,
                                    },
                                    value: op.value.clone(),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    validate_only,
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for r in response.responses {
                    let Some(key) = key_of(&share, r.resource_type, &r.resource_name) else { continue };
                    out.push((key.clone(), check(|| key.to_string(), r.error_code, r.error_message)));
                }
                Ok(out)
            })
        })
        .await
    }
}

/// Runs futures concurrently on the current task and returns their outputs in order (a
/// small `join_all`, so that the crate needs no `futures` dependency).
pub(crate) async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (f, out) in set.iter_mut().zip(outputs.iter_mut()) {
            if out.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *out = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
