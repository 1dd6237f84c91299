//! Partition calls sent to each partition's leader: ListOffsets, DeleteRecords and
//! DescribeProducers.

use std::collections::{BTreeMap, BTreeSet};

use kafka_client::conn::Connection;
use kafka_client::TopicPartition;
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{DeleteRecordsRequest, DescribeProducersRequest, ListOffsetsRequest};
use kafka_protocol::{ApiKey, ErrorCode};

use crate::client::{check, fill_missing, AdminClient, Attempt};
use crate::configs::join_all;
use crate::error::{Error, Result};

/// Which offset [`AdminClient::list_offsets`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (the last stable offset with `read_committed`).
    Latest,
    /// The offset of the record with the highest timestamp (ListOffsets v7, Kafka 3.0+).
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this one (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(t) => t.max(0),
        }
    }
}

/// An offset found by [`AdminClient::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset, or -1 when no record matches the timestamp.
    pub offset: i64,
    /// The record's timestamp (-1 for earliest and latest).
    pub timestamp: i64,
    /// The record's leader epoch, when the broker says.
    pub leader_epoch: Option<i32>,
}

/// A producer that wrote to a partition recently (DescribeProducers, Kafka 2.8+).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer id.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i32,
    /// The last sequence number written.
    pub last_sequence: i32,
    /// The timestamp of its last write.
    pub last_timestamp: i64,
    /// The coordinator epoch of its last transaction marker, or -1.
    pub coordinator_epoch: i32,
    /// Where its open transaction starts, if it has one.
    pub current_txn_start_offset: Option<i64>,
}

fn partition_resource(tp: &TopicPartition) -> String {
    format!("partition {}-{}", tp.topic, tp.partition)
}

fn dedup(partitions: impl IntoIterator<Item = TopicPartition>) -> Vec<TopicPartition> {
    partitions.into_iter().collect::<BTreeSet<_>>().into_iter().collect()
}

impl AdminClient {
    /// Groups partitions by their leader (from fresh metadata) and runs `per_leader` on each
    /// share concurrently. A partition without a leader, or of an unknown topic, fails with
    /// the metadata's error (LEADER_NOT_AVAILABLE is retried by the caller's loop).
    async fn by_leader<T, F, Fut>(&self, keys: Vec<TopicPartition>, per_leader: F) -> Attempt<TopicPartition, T>
    where
        F: Fn(Connection, Vec<TopicPartition>) -> Fut,
        Fut: std::future::Future<Output = Attempt<TopicPartition, T>>,
    {
        let topics: BTreeSet<&str> = keys.iter().map(|tp| tp.topic.as_str()).collect();
        let metadata = self.metadata_for(topics.iter().copied()).await?;
        let mut out: Vec<(TopicPartition, Result<T>)> = Vec::new();
        let mut shares: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in &keys {
            let code = match metadata.topic(&tp.topic) {
                None => ErrorCode::LeaderNotAvailable,
                Some(t) if t.error != ErrorCode::None => t.error,
                Some(t) => match t.partition(tp.partition) {
                    None => ErrorCode::UnknownTopicOrPartition,
                    Some(_) => match metadata.leader(&tp.topic, tp.partition) {
                        Some(leader) => {
                            shares.entry(leader).or_default().push(tp.clone());
                            continue;
                        }
                        None => ErrorCode::LeaderNotAvailable,
                    },
                },
            };
            out.push((tp.clone(), Err(Error::kafka(partition_resource(tp), code, None))));
        }
        let per_leader = &per_leader;
        let futures = shares.into_iter().map(|(leader, share)| async move {
            let r = match self.node(leader).await {
                Ok(conn) => per_leader(conn, share.clone()).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(r) => r,
                Err(e) => share.into_iter().map(|tp| (tp, Err(Error::Client(e.clone())))).collect(),
            }
        });
        for part in join_all(futures).await {
            out.extend(part);
        }
        fill_missing(&keys, &mut out, partition_resource);
        Ok(out)
    }

    /// Looks up offsets: earliest, latest, by timestamp, or of the record with the highest
    /// timestamp, per partition, at the partition's leader. `read_committed` makes
    /// [`OffsetSpec::Latest`] the last stable offset.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kafka_admin::{AdminClient, AdminConfig, OffsetSpec, TopicPartition};
    /// let cluster = kafka_broker::Cluster::builder().start().await?;
    /// cluster.create_topic("orders", 2, 1).await?;
    /// let admin = AdminClient::new(AdminConfig::new(&cluster.bootstrap_servers()))?;
    /// let wanted = [(TopicPartition::new("orders", 0), OffsetSpec::Latest)].into();
    /// let offsets = admin.list_offsets(wanted, false).await?;
    /// assert_eq!(offsets[&TopicPartition::new("orders", 0)].clone()?.offset, 0);
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_offsets(
        &self,
        partitions: BTreeMap<TopicPartition, OffsetSpec>,
        read_committed: bool,
    ) -> Result<BTreeMap<TopicPartition, Result<ListedOffset>>> {
        let keys: Vec<TopicPartition> = partitions.keys().cloned().collect();
        let specs = &partitions;
        self.run("ListOffsets", keys, |keys| {
            self.by_leader(keys, move |conn, share| async move {
                let needs_max = share.iter().any(|tp| specs.get(tp) == Some(&OffsetSpec::MaxTimestamp));
                let version = conn.version(ApiKey::ListOffsets, if needs_max { 7 } else { 1 })?;
                let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
                for tp in &share {
                    let spec = specs.get(tp).copied().unwrap_or(OffsetSpec::Latest);
                    topics.entry(&tp.topic).or_default().push(ListOffsetsPartition {
                        partition_index: tp.partition,
                        current_leader_epoch: -1,
                        timestamp: spec.wire(),
                        max_num_offsets: 1,
                        ..Default::default()
                    });
                }
                let request = ListOffsetsRequest {
                    replica_id: -1,
                    isolation_level: i8::from(read_committed),
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| ListOffsetsTopic {
                            name: name.to_owned(),
                            partitions,
                            ..Default::default()
                        })
                        .collect(),
                    timeout_ms: self.timeout_ms(),
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for t in response.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                        let r = check(|| partition_resource(&tp), p.error_code, None).map(|()| ListedOffset {
                            offset: p.offset,
                            timestamp: p.timestamp,
                            leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                        });
                        out.push((tp, r));
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// Deletes the records of each partition before the given offset (-1 = the high
    /// watermark), at the partition's leader. Each partition's result is its new low
    /// watermark (log start offset).
    pub async fn delete_records(
        &self,
        before: BTreeMap<TopicPartition, i64>,
    ) -> Result<BTreeMap<TopicPartition, Result<i64>>> {
        let keys: Vec<TopicPartition> = before.keys().cloned().collect();
        let before = &before;
        self.run("DeleteRecords", keys, |keys| {
            self.by_leader(keys, move |conn, share| async move {
                let version = conn.version(ApiKey::DeleteRecords, 0)?;
                let mut topics: BTreeMap<&str, Vec<DeleteRecordsPartition>> = BTreeMap::new();
                for tp in &share {
                    topics.entry(&tp.topic).or_default().push(DeleteRecordsPartition {
                        partition_index: tp.partition,
                        offset: before.get(tp).copied().unwrap_or(-1),
                        ..Default::default()
                    });
                }
                let request = DeleteRecordsRequest {
                    topics: topics
                        .into_iter()
                        .map(|(name, partitions)| DeleteRecordsTopic {
                            name: name.to_owned(),
                            partitions,
                            ..Default::default()
                        })
                        .collect(),
                    timeout_ms: self.timeout_ms(),
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for t in response.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                        let r = check(|| partition_resource(&tp), p.error_code, None).map(|()| p.low_watermark);
                        out.push((tp, r));
                    }
                }
                Ok(out)
            })
        })
        .await
    }

    /// The producers with state on each partition (DescribeProducers, Kafka 2.8+), asked of
    /// the partition's leader: ids, epochs, last sequences, open transactions.
    pub async fn describe_producers(
        &self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<BTreeMap<TopicPartition, Result<Vec<ProducerState>>>> {
        let keys = dedup(partitions);
        self.run("DescribeProducers", keys, |keys| {
            self.by_leader(keys, |conn, share| async move {
                let version = conn.version(ApiKey::DescribeProducers, 0)?;
                let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in &share {
                    topics.entry(&tp.topic).or_default().push(tp.partition);
                }
                let request = DescribeProducersRequest {
                    topics: topics
                        .into_iter()
                        .map(|(name, partition_indexes)| TopicRequest {
                            name: name.to_owned(),
                            partition_indexes,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                };
                let response = conn.request_at(&request, version).await?;
                let mut out = Vec::new();
                for t in response.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                        let r = check(|| partition_resource(&tp), p.error_code, p.error_message).map(|()| {
                            p.active_producers
                                .into_iter()
                                .map(|s| ProducerState {
                                    producer_id: s.producer_id,
                                    producer_epoch: s.producer_epoch,
                                    last_sequence: s.last_sequence,
                                    last_timestamp: s.last_timestamp,
                                    coordinator_epoch: s.coordinator_epoch,
                                    current_txn_start_offset: (s.current_txn_start_offset >= 0)
                                        .then_some(s.current_txn_start_offset),
                                })
                                .collect()
                        });
                        out.push((tp, r));
                    }
                }
                Ok(out)
            })
        })
        .await
    }
}
