//! Offset lookups by timestamp (ListOffsets), sent to each partition's leader.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::ListOffsetsRequest;
use kafka_protocol::{ApiKey, ErrorCode};

use super::TopicPartition;
use crate::client::Client;
use crate::error::{Error, Result};

/// ListOffsets' special timestamp for the log start.
pub(crate) const EARLIEST: i64 = -2;
/// ListOffsets' special timestamp for the log end (the LSO under read_committed).
pub(crate) const LATEST: i64 = -1;

/// An offset found by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndTimestamp {
    /// The offset.
    pub offset: i64,
    /// The timestamp of the record at `offset` (-1 for the special lookups).
    pub timestamp: i64,
    /// The leader epoch of that record, when the broker says.
    pub leader_epoch: Option<i32>,
}

/// Looks up one offset per partition. A partition whose lookup found nothing (a timestamp
/// after the last record) maps to `Ok(None)`; per-partition errors are returned as such so
/// that callers can retry just those.
pub(crate) async fn list_offsets(
    client: &Client,
    isolation_level: i8,
    wanted: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, Result<Option<OffsetAndTimestamp>>> {
    let metadata = client.metadata();
    let mut by_leader: BTreeMap<i32, Vec<(&TopicPartition, i64)>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (tp, ts) in wanted {
        match metadata.leader(&tp.topic, tp.partition) {
            Some(leader) => by_leader.entry(leader).or_default().push((tp, *ts)),
            None => {
                out.insert(tp.clone(), Err(Error::kafka(ErrorCode::LeaderNotAvailable, None)));
            }
        }
    }
    for (leader, parts) in by_leader {
        let result = async {
            let conn = client.connection(leader).await?;
            let version = conn.version(ApiKey::ListOffsets, 1)?;
            let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
            for (tp, ts) in &parts {
                let epoch = metadata
                    .topic(&tp.topic)
                    .and_then(|t| t.partition(tp.partition))
                    .map(|p| p.leader_epoch)
                    .unwrap_or(-1);
                topics.entry(tp.topic.as_str()).or_default().push(ListOffsetsPartition {
                    partition_index: tp.partition,
                    current_leader_epoch: epoch,
                    timestamp: *ts,
                    max_num_offsets: 1,
                    ..Default::default()
                });
            }
            let request = ListOffsetsRequest {
                replica_id: -1,
                isolation_level,
                topics: topics
                    .into_iter()
                    .map(|(name, partitions)| ListOffsetsTopic {
                        name: name.to_owned(),
                        partitions,
                        ..Default::default()
                    })
                    .collect(),
                timeout_ms: i32::try_from(client.config().request_timeout.as_millis()).unwrap_or(i32::MAX),
                ..Default::default()
            };
            conn.request_at(&request, version).await
        }
        .await;
        match result {
            Ok(response) => {
                let mut seen = BTreeMap::new();
                for t in &response.topics {
                    for p in &t.partitions {
                        let tp = TopicPartition::new(t.name.clone(), p.partition_index);
                        let code = ErrorCode::from_code(p.error_code);
                        let r = if code != ErrorCode::None {
                            if code.is_retriable() {
                                client.request_refresh();
                            }
                            Err(Error::kafka(code, None))
                        } else if p.offset < 0 {
                            Ok(None)
                        } else {
                            Ok(Some(OffsetAndTimestamp {
                                offset: p.offset,
                                timestamp: p.timestamp,
                                leader_epoch: (p.leader_epoch >= 0).then_some(p.leader_epoch),
                            }))
                        };
                        seen.insert(tp, r);
                    }
                }
                for (tp, _) in parts {
                    let r = seen.remove(tp).unwrap_or_else(|| {
                        Err(Error::kafka(
                            ErrorCode::UnknownServerError,
                            Some("partition missing from the answer".into()),
                        ))
                    });
                    out.insert(tp.clone(), r);
                }
            }
            Err(e) => {
                client.request_refresh();
                for (tp, _) in parts {
                    out.insert(tp.clone(), Err(e.clone()));
                }
            }
        }
    }
    out
}
