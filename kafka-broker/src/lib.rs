//! # kafka-broker
//!
//! A Kafka cluster in memory, speaking the real wire protocol over TCP, for tests: Rust users
//! start it inside `cargo test` (no JVM, no Docker), and any Kafka client can connect to it.
//!
//! **Status:** several brokers in one process with leaders, replicas and an ISR; the APIs a
//! producer, a consumer and an admin client need (ApiVersions, Metadata, Produce, Fetch with
//! sessions and long polling, ListOffsets, OffsetForLeaderEpoch, InitProducerId,
//! DescribeProducers, DeleteRecords, CreateTopics, DeleteTopics, CreatePartitions,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster); the classic group
//! coordinator (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, OffsetDelete, ListGroups, DescribeGroups, DeleteGroups, with static
//! membership); the transaction coordinator (InitProducerId with transactional ids,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions,
//! ListTransactions: fencing, timeouts, markers, the last stable offset and read_committed
//! fetches); logs with idempotence, transactions, retention and compaction; client quotas; and
//! the fault-injection API ([`Cluster::intercept`], [`Cluster::push_errors`],
//! [`Cluster::stop_broker`], [`Cluster::move_coordinator`],
//! [`Cluster::move_transaction_coordinator`], [`Cluster::set_chaos`], ...); TLS and SASL
//! listeners ([`security`]: PLAIN, SCRAM-SHA-256/512, an OAUTHBEARER validator for tests,
//! a test CA generated at start, KIP-368 session expiry); and the next-generation group
//! protocol (KIP-848: ConsumerGroupHeartbeat with server-side `uniform` and `range`
//! assignment, ConsumerGroupDescribe).
//!
//! Group settings follow Kafka's names and defaults, except `group.initial.rebalance.delay.ms`,
//! which is 0 here (Kafka: 3000) so that tests do not wait for every new group; set it with
//! [`ClusterBuilder::broker_config`]. So do the transaction coordinator's
//! (`transaction.max.timeout.ms`, `transactional.id.expiration.ms`,
//! `transaction.state.log.num.partitions`); transaction timeouts fire on the cluster clock, so
//! [`Cluster::advance_clock`] aborts a transaction without waiting.
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
mod groups;
mod handlers;
mod log;
mod pool;
mod quotas;
pub mod security;
mod server;
mod txn;

pub use cluster::{Cluster, ClusterBuilder, PartitionStats};
pub use error::BrokerError;
pub use faults::{
    hold, Action, Chaos, ChaosEvent, ErrorScope, Fault, Hold, InterceptFn, InterceptId, InterceptedRequest, Loss,
    Release, RequestRecord, Times,
};
