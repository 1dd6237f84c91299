//! An async (tokio) Kafka client: the connection layer, metadata, an idempotent producer and a
//! consumer with group membership.
//!
//! - [`Producer`]: batching per partition in wire form, `linger.ms`, compression, `acks`,
//!   retries bounded by `delivery.timeout.ms`, idempotence (producer id, epoch and sequence
//!   numbers; on by default), Java-compatible key partitioning (murmur2) and uniform sticky
//!   partitioning for records without a key.
//! - [`Client`]: bootstrap, one connection per broker with API version negotiation, request
//!   timeouts, reconnect backoff, and a metadata cache; shared by the producer, the consumer
//!   and `kafka-admin`.
//! - [`Consumer`]: subscriptions (topics or a pattern) with the classic group protocol and the
//!   range, roundrobin, sticky and cooperative-sticky assignors, or manual assignment; fetch
//!   sessions with bounded prefetch; commits that never run ahead of what the application
//!   received; seeks, pauses and offset lookups (see the [`consumer`] module).
//!
//! Settings use the Java client's names and defaults ([`ProducerConfig`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kafka_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! // The bundled broker: a real Kafka wire-protocol server, in process.
//! let cluster = kafka_broker::Cluster::builder().brokers(3).default_partitions(6).start().await?;
//!
//! let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap_servers()).set("linger.ms", "1")?)?;
//! let metadata = producer.send(ProducerRecord::new("greetings").key("k").value("hello")).await?.await?;
//! println!("written to {}[{}] at offset {}", metadata.topic, metadata.partition, metadata.offset);
//! producer.close(std::time::Duration::from_secs(5)).await?;
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod error;
pub mod metadata;
pub mod producer;
pub mod security;

pub use client::Client;
pub use config::{Acks, ClientConfig, ProducerConfig};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerGroupMetadata, ConsumerRecord, OffsetAndMetadata, RebalanceListener,
    TopicPartition,
};
pub use error::{DeliveryError, Error, Persistence, Result};
pub use kafka_protocol::compression::Compression;
pub use producer::{DeliveryFuture, Header, Partitioner, Producer, ProducerRecord, RecordMetadata};
