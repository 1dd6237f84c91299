//! The client's view of the cluster: brokers, topics, partitions, leaders and leader epochs.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::primitives::Uuid;
use kafka_protocol::ErrorCode;

/// A broker as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// The rack, if configured.
    pub rack: Option<String>,
}

/// One partition: its leader, leader epoch and replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The partition index.
    pub partition: i32,
    /// The partition's error (for example LEADER_NOT_AVAILABLE).
    pub error: ErrorCode,
    /// The leader's node id, or -1 when there is none.
    pub leader: i32,
    /// The leader epoch, or -1 when the broker did not say.
    pub leader_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// Offline replica node ids.
    pub offline_replicas: Vec<i32>,
}

/// One topic and its partitions (sorted by index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// The topic name.
    pub name: String,
    /// The topic id (zero when the broker does not send ids).
    pub topic_id: Uuid,
    /// The topic's error (UNKNOWN_TOPIC_OR_PARTITION when it does not exist).
    pub error: ErrorCode,
    /// Whether the topic is internal (`__consumer_offsets`, ...).
    pub is_internal: bool,
    /// The partitions, indexed by partition number.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    /// The partition with index `p`.
    pub fn partition(&self, p: i32) -> Option<&PartitionMetadata> {
        usize::try_from(p).ok().and_then(|i| self.partitions.get(i)).filter(|m| m.partition == p)
    }
}

/// A snapshot of cluster metadata. Snapshots are immutable; a refresh builds a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The cluster id.
    pub cluster_id: Option<String>,
    /// The controller's node id, or -1.
    pub controller_id: i32,
    /// Brokers by node id.
    pub brokers: HashMap<i32, BrokerMetadata>,
    /// Topics by name.
    pub topics: HashMap<String, Arc<TopicMetadata>>,
}

impl Metadata {
    /// The topic's metadata, if known.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    /// The leader of a partition, if it has one that is also a known broker.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let p = self.topic(topic)?.partition(partition)?;
        (p.leader >= 0 && self.brokers.contains_key(&p.leader)).then_some(p.leader)
    }

    /// A new snapshot: brokers and cluster facts from `response`, topics from `response`
    /// merged over this snapshot's. A partition whose leader epoch in the response is older
    /// than the one already known keeps the known entry (a lagging broker's stale view must not
    /// undo a newer one).
    pub fn merge(&self, response: &MetadataResponse) -> Metadata {
        let brokers = response
            .brokers
            .iter()
            .filter_map(|b| {
                let port = u16::try_from(b.port).ok()?;
                Some((
                    b.node_id,
                    BrokerMetadata { node_id: b.node_id, host: b.host.clone(), port, rack: b.rack.clone() },
                ))
            })
            .collect();
        let mut topics = self.topics.clone();
        for t in &response.topics {
            let Some(name) = t.name.clone() else { continue };
            let error = ErrorCode::from_code(t.error_code);
            let old = self.topics.get(&name);
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| {
                    let fresh = PartitionMetadata {
                        partition: p.partition_index,
                        error: ErrorCode::from_code(p.error_code),
                        leader: p.leader_id,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.clone(),
                        isr: p.isr_nodes.clone(),
                        offline_replicas: p.offline_replicas.clone(),
                    };
                    match old.and_then(|o| o.partition(p.partition_index)) {
                        Some(known) if fresh.leader_epoch >= 0 && known.leader_epoch > fresh.leader_epoch => {
                            known.clone()
                        }
                        _ => fresh,
                    }
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            // Indexing by partition number requires a dense 0..n list; a broker that sends a
            // sparse one gets its topic treated as erroneous rather than mis-indexed.
            let dense = partitions.iter().enumerate().all(|(i, p)| p.partition as usize == i);
            let error = if dense || error.err().is_some() { error } else { ErrorCode::UnknownServerError };
            topics.insert(
                name.clone(),
                Arc::new(TopicMetadata { name, topic_id: t.topic_id, error, is_internal: t.is_internal, partitions }),
            );
        }
        Metadata { cluster_id: response.cluster_id.clone(), controller_id: response.controller_id, brokers, topics }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };

    fn response(epoch: i32, leader: i32) -> MetadataResponse {
        MetadataResponse {
            brokers: vec![MetadataResponseBroker { node_id: 1, host: "h".into(), port: 9092, ..Default::default() }],
            controller_id: 1,
            topics: vec![MetadataResponseTopic {
                name: Some("t".into()),
                partitions: vec![
                    MetadataResponsePartition {
                        partition_index: 1,
                        leader_id: leader,
                        leader_epoch: epoch,
                        ..Default::default()
                    },
                    MetadataResponsePartition {
                        partition_index: 0,
                        leader_id: 1,
                        leader_epoch: 0,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn merge_sorts_and_keeps_newer_epochs() {
        let m = Metadata::default().merge(&response(5, 1));
        let t = m.topic("t").unwrap();
        assert_eq!(t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(m.leader("t", 1), Some(1));
        // An older epoch from a lagging broker does not replace the newer view.
        let m2 = m.merge(&response(3, 2));
        assert_eq!(m2.topic("t").unwrap().partition(1).unwrap().leader_epoch, 5);
        // A newer one does; leader 2 is not a known broker, so there is no usable leader.
        let m3 = m.merge(&response(6, 2));
        assert_eq!(m3.topic("t").unwrap().partition(1).unwrap().leader, 2);
        assert_eq!(m3.leader("t", 1), None);
    }

    #[test]
    fn sparse_partition_lists_are_refused() {
        let mut r = response(1, 1);
        r.topics[0].partitions.remove(1); // only partition 1 is left
        let m = Metadata::default().merge(&r);
        assert_eq!(m.topic("t").unwrap().error, ErrorCode::UnknownServerError);
    }
}
