//! An async (tokio) Kafka client: the connection layer, metadata, and an idempotent producer.
//!
//! - [`Producer`]: batching per partition in wire form, `linger.ms`, compression, `acks`,
//!   retries bounded by `delivery.timeout.ms`, idempotence (producer id, epoch and sequence
//!   numbers; on by default), Java-compatible key partitioning (murmur2) and uniform sticky
//!   partitioning for records without a key.
//! - [`Client`]: bootstrap, one connection per broker with API version negotiation, request
//!   timeouts, reconnect backoff, and a metadata cache; shared by the producer, the consumer
//!   (coming) and `kafka-admin`.
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

pub use client::Client;
pub use config::{Acks, ClientConfig, ProducerConfig};
pub use consumer::TopicPartition;
pub use error::{DeliveryError, Error, Persistence, Result};
pub use kafka_protocol::compression::Compression;
pub use producer::{DeliveryFuture, Header, Partitioner, Producer, ProducerRecord, RecordMetadata};
