//! Partition assignors of the classic consumer group protocol.
//!
//! Interim version: only `range`, enough to build the consumer against; the full set
//! (`roundrobin`, `sticky`, `cooperative-sticky`) replaces this file.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::consumer_protocol as cp;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as WireAssigned;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};

use crate::config::config_error;
use crate::consumer::TopicPartition;
use crate::error::{Error, Result};

/// Eager or cooperative rebalancing (KIP-429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before rejoining.
    Eager,
    /// Members keep what they own; only moving partitions are revoked.
    Cooperative,
}

/// What the leader knows of one member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// The member id.
    pub member_id: String,
    /// The static instance id.
    pub group_instance_id: Option<String>,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignor user data.
    pub user_data: Option<Bytes>,
    /// Partitions the member owns.
    pub owned_partitions: Vec<TopicPartition>,
    /// The member's generation, -1 when unknown.
    pub generation_id: i32,
    /// The member's rack.
    pub rack_id: Option<String>,
}

/// What a member puts in its subscription.
#[derive(Debug)]
pub struct SubscriptionInput<'a> {
    /// Subscribed topics.
    pub topics: &'a [String],
    /// Partitions owned now.
    pub owned: &'a [TopicPartition],
    /// The current generation.
    pub generation: i32,
    /// The member's rack.
    pub rack_id: Option<&'a str>,
}

/// A leader-side partition assignor.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The wire name.
    fn name(&self) -> &'static str;
    /// Eager or cooperative.
    fn protocol(&self) -> RebalanceProtocol;
    /// The user data of this member's subscription.
    fn user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes>;
    /// Every member's assignment.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, Vec<TopicPartition>>>;
}

#[derive(Debug)]
struct Range;

impl Assignor for Range {
    fn name(&self) -> &'static str {
        "range"
    }
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }
    fn user_data(&self, _owned: &[TopicPartition], _generation: i32) -> Option<Bytes> {
        None
    }
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
        let mut out: BTreeMap<String, Vec<TopicPartition>> =
            members.iter().map(|m| (m.member_id.clone(), Vec::new())).collect();
        for (topic, &count) in partitions_per_topic {
            let mut subs: Vec<&str> =
                members.iter().filter(|m| m.topics.contains(topic)).map(|m| m.member_id.as_str()).collect();
            subs.sort_unstable();
            let n = subs.len() as i32;
            if n == 0 {
                continue;
            }
            let (per, extra) = (count / n, count % n);
            let mut next = 0;
            for (i, m) in subs.iter().enumerate() {
                let take = per + i32::from((i as i32) < extra);
                if let Some(list) = out.get_mut(*m) {
                    list.extend((next..next + take).map(|p| TopicPartition::new(topic.clone(), p)));
                }
                next += take;
            }
        }
        Ok(out)
    }
}

/// The assignor for a `partition.assignment.strategy` entry.
pub fn assignor_by_name(name: &str) -> Result<Box<dyn Assignor>> {
    match name {
        "range" | "org.apache.kafka.clients.consumer.RangeAssignor" => Ok(Box::new(Range)),
        "cooperative-sticky" | "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" => Ok(Box::new(Range)),
        _ => Err(config_error("partition.assignment.strategy", &format!("unknown assignor {name}"))),
    }
}

fn proto(e: kafka_protocol::ProtocolError) -> Error {
    Error::InvalidArgument(format!("bad consumer protocol data: {e}"))
}

/// Encodes this member's JoinGroup metadata for `assignor`.
pub fn encode_subscription(assignor: &dyn Assignor, input: &SubscriptionInput<'_>) -> Result<Bytes> {
    let sub = ConsumerProtocolSubscription {
        topics: input.topics.to_vec(),
        user_data: assignor.user_data(input.owned, input.generation),
        generation_id: input.generation,
        rack_id: input.rack_id.map(str::to_owned),
        ..Default::default()
    };
    cp::encode_subscription(&sub, 3).map_err(proto)
}

/// Decodes a member's JoinGroup metadata.
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<&str>,
    metadata: Bytes,
) -> Result<MemberSubscription> {
    let (_, s) = cp::decode_subscription(metadata).map_err(proto)?;
    Ok(MemberSubscription {
        member_id: member_id.to_owned(),
        group_instance_id: group_instance_id.map(str::to_owned),
        topics: s.topics,
        user_data: s.user_data,
        owned_partitions: s
            .owned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.topic.clone(), *p)))
            .collect(),
        generation_id: s.generation_id,
        rack_id: s.rack_id,
    })
}

/// Encodes one member's assignment for SyncGroup.
pub fn encode_assignment(partitions: &[TopicPartition], user_data: Option<Bytes>) -> Result<Bytes> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let a = ConsumerProtocolAssignment {
        assigned_partitions: by_topic
            .into_iter()
            .map(|(t, ps)| WireAssigned { topic: t.to_owned(), partitions: ps, ..Default::default() })
            .collect(),
        user_data,
        ..Default::default()
    };
    cp::encode_assignment(&a, 0).map_err(proto)
}

/// Decodes one member's assignment.
pub fn decode_assignment(data: Bytes) -> Result<Vec<TopicPartition>> {
    let (_, a) = cp::decode_assignment(data).map_err(proto)?;
    Ok(a.assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| TopicPartition::new(t.topic.clone(), *p)))
        .collect())
}
