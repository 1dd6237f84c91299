//! # kafka-broker
//!
//! A Kafka cluster in memory, speaking the real wire protocol over TCP, for tests: Rust users
//! start it inside `cargo test` (no JVM, no Docker), and any Kafka client can connect to it.
//!
//! **Status:** the first slice of the bundled broker. Implemented today: several brokers in one
//! process, each with its own listener and node id; ApiVersions (advertising exactly what is
//! implemented), Metadata (all versions, topic ids, auto-creation) and CreateTopics (Kafka's
//! validation, explicit assignments, `validate_only`). Produce, Fetch, the other APIs and the
//! fault-injection API are being added (see the project README).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kafka_broker::BrokerError> {
//! use kafka_broker::Cluster;
//!
//! let cluster = Cluster::builder().brokers(3).default_partitions(3).auto_create_topics(true).start().await?;
//! cluster.create_topic("orders", 6, 3).await?;
//! let bootstrap = cluster.bootstrap_servers(); // "127.0.0.1:port,127.0.0.1:port,127.0.0.1:port"
//! assert_eq!(bootstrap.split(',').count(), 3);
//! cluster.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cluster;
mod configs;
mod error;
mod faults;
mod handlers;
mod log;
mod quotas;
mod server;

pub use cluster::{Cluster, ClusterBuilder, PartitionStats};
pub use error::BrokerError;
pub use faults::{
    hold, Action, Chaos, ChaosEvent, ErrorScope, Fault, Hold, InterceptFn, InterceptId, InterceptedRequest, Loss,
    Release, RequestRecord, Times,
};
