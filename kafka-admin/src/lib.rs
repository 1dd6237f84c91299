//! An async Kafka admin client over `kafka-client`'s connection layer.
//!
//! [`AdminClient`] covers topics ([`AdminClient::create_topics`],
//! [`AdminClient::delete_topics`], [`AdminClient::list_topics`],
//! [`AdminClient::describe_topics`], [`AdminClient::create_partitions`]), the cluster
//! ([`AdminClient::describe_cluster`]), configs ([`AdminClient::describe_configs`],
//! [`AdminClient::alter_configs`], [`AdminClient::incremental_alter_configs`]), consumer groups
//! and their offsets, partition offsets and records ([`AdminClient::list_offsets`],
//! [`AdminClient::delete_records`], [`AdminClient::describe_producers`]) and transactions.
//!
//! Every request goes to the broker Kafka wants it at: the controller for topic and
//! partition changes, the partition leader for offsets, records and producers, the group or
//! transaction coordinator for group and transaction calls, the broker itself for broker
//! configs. NOT_CONTROLLER, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and leader moves
//! make the client find the right broker again and retry, within `default.api.timeout.ms`.
//! Versions are negotiated per connection from the broker's ApiVersions answer, never below
//! what Kafka 4 accepts (KIP-896), so the same calls work against Kafka 2.8 to 4.x.
//!
//! Results are per resource: a call returns a map from each resource to its own `Result`,
//! so one bad topic does not fail the others, and each [`Error`] names its resource and the
//! Kafka error. The outer `Result` fails only when the call could not be made at all (no
//! broker reachable within the timeout, an unsupported version).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kafka_admin::{AdminClient, AdminConfig, NewTopic};
//!
//! let cluster = kafka_broker::Cluster::builder().brokers(3).start().await?;
//! let admin = AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers()))?;
//!
//! let created = admin
//!     .create_topics([NewTopic::new("orders", 3, 3), NewTopic::new("bad name!", 1, 1)], false)
//!     .await?;
//! assert!(created["orders"].is_ok());
//! // The invalid name fails on its own, naming the topic and the Kafka error.
//! let error = created["bad name!"].as_ref().unwrap_err();
//! assert_eq!(error.code(), Some(kafka_protocol::ErrorCode::InvalidTopicException));
//!
//! let described = admin.describe_topics(["orders"]).await?;
//! let orders = described["orders"].clone()?;
//! assert_eq!(orders.partitions.len(), 3);
//! admin.close();
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod client;
mod configs;
mod error;
mod groups;
mod partitions;
mod topics;
mod transactions;

pub use client::{AdminClient, AdminConfig};
pub use configs::{AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource, ConfigSynonym, OpType, ResourceType};
pub use error::{Error, Result};
pub use groups::{GroupDescription, GroupListing, MemberDescription};
pub use kafka_client::{OffsetAndMetadata, TopicPartition};
pub use partitions::{ListedOffset, OffsetSpec, ProducerState};
pub use topics::{
    ClusterDescription, CreatedTopic, NewPartitions, NewTopic, PartitionDescription, TopicDescription, TopicListing,
};
pub use transactions::{TransactionDescription, TransactionListing};
