//! Partition assignors of the classic consumer group protocol, run by the group leader, with
//! the wire names of Kafka's own so that our members, Java members and librdkafka members can
//! share a group:
//!
//! - `range` ([`RangeAssignor`]): per topic, the subscribed members in order (see below) get
//!   contiguous ranges; the first `partitions % members` get one partition more.
//! - `roundrobin` ([`RoundRobinAssignor`]): every partition of every subscribed topic, sorted
//!   by topic and partition, dealt to the members in order, skipping members not subscribed to
//!   the partition's topic.
//! - `sticky` ([`StickyAssignor`], eager) and `cooperative-sticky`
//!   ([`CooperativeStickyAssignor`], KIP-429): Java's `AbstractStickyAssignor`. When every
//!   member subscribes to the same topics, its "constrained" algorithm: each member keeps up to
//!   its quota of the partitions it owned (lowest partition numbers first), the rest are dealt
//!   round-robin to members under quota; the result is balanced (sizes differ by at most one).
//!   Otherwise its "general" algorithm: keep what is still valid, give each unassigned
//!   partition to the least loaded subscriber, then move partitions from heavier to lighter
//!   subscribers until no move improves the balance (and keep the result only if it is more
//!   balanced than before). A partition claimed by several members goes to the claimant with
//!   the highest generation; claims from the same generation are all dropped.
//!   `cooperative-sticky` then withholds every partition that would move from one current
//!   owner to another: the owner revokes it, and the rebalance that follows hands it over.
//!
//! Member order for `range` and `roundrobin` is Java's `MemberInfo` order: members with a
//! `group.instance.id` first, by instance id, then the others by member id. Strings compare as
//! Java's `String.compareTo` does (UTF-16 code units), so the order is Java's for any id.
//!
//! User data is written as Java writes it: `sticky` sends `StickyAssignorUserData` v1 (the
//! previous assignment grouped by topic, then the generation), `cooperative-sticky` an `i32`
//! generation; both are read back in every form Java reads (v1, v0, and garbage, which counts
//! as "no previous assignment"). librdkafka's `cooperative-sticky` sends the `sticky` format;
//! like Java, members of subscription v2+ are judged by the subscription's generation and
//! owned partitions, so that works too.
//!
//! Not done, and how it differs from Java:
//!
//! - Rack awareness (KIP-881): the leader here knows partition counts, not replica racks, so
//!   every assignor behaves as Java's does when the metadata carries no racks.
//! - Java's sticky algorithms walk members in `HashMap` order, so which member keeps an extra
//!   partition (or which receives one) can differ from Java's choice; ours walks members by
//!   member id and is deterministic. The guarantees (validity, balance, stickiness,
//!   cooperative safety) are the same.
//! - When two members claim the same partition, Java compares the claimant's generation with
//!   the *subscription-level* generation of the earlier claimant (absent, so -1, before
//!   subscription v2); we compare the two claimants' generations as each assignor reads them
//!   (the same numbers for every v2+ member).
//! - Defensive differences, in inputs Java mishandles: a member listing the same owned
//!   partition twice counts it once (Java would treat it as a conflict with itself); owned
//!   partitions beyond the topic's partition count are ignored; a partition is never moved back
//!   to its previous (lower generation) owner if that member no longer subscribes to its topic
//!   (Java would assign it there, or fail); members with an empty subscription never make the
//!   "all subscriptions equal" test pass by accident (Java's depends on map order).
//! - A `sticky` member without user data is taken to have owned its `owned_partitions` (Java's
//!   StickyAssignor reads only the user data; Java's eager members send no owned partitions,
//!   so this matters only to callers that fill them in).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::consumer_protocol;
use kafka_protocol::messages::{
    consumer_protocol_assignment, consumer_protocol_subscription, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
};
use kafka_protocol::ProtocolError;

use crate::consumer::TopicPartition;
use crate::error::{Error, Result};

/// The version of `ConsumerProtocolSubscription` this client writes (Java 3.x+ writes 3).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The version of `ConsumerProtocolAssignment` this client writes (Java 3.x+ writes 3).
pub const ASSIGNMENT_VERSION: i16 = 3;

/// The setting that names the assignors.
const STRATEGY_KEY: &str = "partition.assignment.strategy";

/// Eager: every member revokes everything before rejoining. Cooperative (KIP-429): members keep
/// what they own; only moving partitions are revoked, followed by another rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Revoke everything before every rebalance.
    Eager,
    /// Revoke only the partitions that move, then rebalance again to hand them over.
    Cooperative,
}

/// What the group leader knows of one member, decoded from its JoinGroup metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// The member id the coordinator gave the member.
    pub member_id: String,
    /// The member's `group.instance.id` (static membership), if any.
    pub group_instance_id: Option<String>,
    /// The topics the member subscribes to.
    pub topics: Vec<String>,
    /// The assignor-specific user data.
    pub user_data: Option<Bytes>,
    /// The partitions the member owns (cooperative), or owned before the rebalance (taken from
    /// sticky user data when the subscription carries none).
    pub owned_partitions: Vec<TopicPartition>,
    /// generation_id of ConsumerProtocolSubscription v2+, -1 when absent.
    pub generation_id: i32,
    /// The member's `client.rack`, if any.
    pub rack_id: Option<String>,
}

/// What a member itself puts in its subscription.
pub struct SubscriptionInput<'a> {
    /// The topics it subscribes to.
    pub topics: &'a [String],
    /// For a cooperative assignor, the partitions it owns now. For an eager one, its assignment
    /// from before the revocation that precedes every join: only `sticky` uses it (in its user
    /// data); the subscription's owned partitions are written empty, as Java's eager members
    /// (which own nothing when they join) write them.
    pub owned: &'a [TopicPartition],
    /// The generation of its last assignment, -1 if none.
    pub generation: i32,
    /// Its `client.rack`, if set.
    pub rack_id: Option<&'a str>,
}

/// A partition assignor of the classic consumer group protocol.
pub trait Assignor: Send + Sync + std::fmt::Debug {
    /// The wire name ("range", ...).
    fn name(&self) -> &'static str;
    /// Eager or cooperative. (A cooperative assignor also supports eager, as in Java, but we
    /// only need its primary protocol.)
    fn protocol(&self) -> RebalanceProtocol;
    /// The user_data this member sends in its subscription for this assignor (sticky: its
    /// previous assignment + generation as Java's StickyAssignor encodes it;
    /// cooperative-sticky: the generation as Java encodes it; others: None).
    fn user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes>;
    /// Leader side: computes every member's assignment. `partitions_per_topic` holds the
    /// partition count of every topic any member subscribes to (topics unknown to the metadata
    /// are absent and get no assignment). Returns an entry for EVERY member (possibly empty),
    /// keyed by member id, each list sorted. Deterministic for the same input.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, Vec<TopicPartition>>>;
}

/// Java's `RangeAssignor` (`range`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeAssignor;

/// Java's `RoundRobinAssignor` (`roundrobin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundRobinAssignor;

/// Java's `StickyAssignor` (`sticky`, eager).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StickyAssignor;

/// Java's `CooperativeStickyAssignor` (`cooperative-sticky`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CooperativeStickyAssignor;

impl Assignor for RangeAssignor {
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
        assign_range(partitions_per_topic, members)
    }
}

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
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
        assign_round_robin(partitions_per_topic, members)
    }
}

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    /// `StickyAssignorUserData` v1; none before the member's first assignment (no generation
    /// and nothing owned), as Java sends none then.
    fn user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes> {
        if generation < 0 && owned.is_empty() {
            return None;
        }
        Some(encode_sticky_user_data(owned, generation))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
        assign_sticky(StickyKind::Eager, partitions_per_topic, members)
    }
}

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    /// The generation as a big-endian `i32` (Java's `CooperativeStickyAssignor` user data v0),
    /// sent even when it is -1, as Java does.
    fn user_data(&self, _owned: &[TopicPartition], generation: i32) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
        assign_sticky(StickyKind::Cooperative, partitions_per_topic, members)
    }
}

/// The assignor for a `partition.assignment.strategy` entry: accepts the wire names and Java's
/// class names (org.apache.kafka.clients.consumer.RangeAssignor etc.). Unknown names are
/// Error::Config { key: "partition.assignment.strategy", .. }.
pub fn assignor_by_name(name: &str) -> Result<Box<dyn Assignor>> {
    let assignor: Box<dyn Assignor> = match name.trim() {
        "range" | "org.apache.kafka.clients.consumer.RangeAssignor" => Box::new(RangeAssignor),
        "roundrobin" | "org.apache.kafka.clients.consumer.RoundRobinAssignor" => Box::new(RoundRobinAssignor),
        "sticky" | "org.apache.kafka.clients.consumer.StickyAssignor" => Box::new(StickyAssignor),
        "cooperative-sticky" | "org.apache.kafka.clients.consumer.CooperativeStickyAssignor" => {
            Box::new(CooperativeStickyAssignor)
        }
        _ => {
            return Err(Error::Config {
                key: STRATEGY_KEY.to_owned(),
                reason: format!(
                    "unknown partition assignor `{name}` (known: range, roundrobin, sticky, cooperative-sticky, or \
                     Java's class names for them)"
                ),
            })
        }
    };
    Ok(assignor)
}

/// Encodes this member's JoinGroup protocol metadata for `assignor`: ConsumerProtocolSubscription
/// v3 with its version prefix, as Java 3.x+ writes it (topics sorted, owned partitions sorted and
/// grouped by topic, generation -1 when there is none, an empty rack written as null).
pub fn encode_subscription(assignor: &dyn Assignor, input: &SubscriptionInput<'_>) -> Result<Bytes> {
    let mut topics = input.topics.to_vec();
    topics.sort_by(|a, b| java_cmp(a, b));
    topics.dedup();
    let owned_partitions = match assignor.protocol() {
        RebalanceProtocol::Cooperative => group_sorted(input.owned)
            .into_iter()
            .map(|(topic, partitions)| consumer_protocol_subscription::TopicPartition {
                topic: topic.to_owned(),
                partitions,
                ..Default::default()
            })
            .collect(),
        RebalanceProtocol::Eager => Vec::new(),
    };
    let subscription = ConsumerProtocolSubscription {
        topics,
        user_data: assignor.user_data(input.owned, input.generation),
        owned_partitions,
        generation_id: input.generation.max(-1),
        rack_id: input.rack_id.filter(|r| !r.is_empty()).map(str::to_owned),
        ..Default::default()
    };
    consumer_protocol::encode_subscription(&subscription, SUBSCRIPTION_VERSION)
        .map_err(codec_error("this member's JoinGroup metadata (encoding)"))
}

/// Decodes a member's JoinGroup metadata (any version; forward compatible) into a
/// MemberSubscription (member_id and group_instance_id are filled by the caller). For sticky
/// members whose subscription has no owned_partitions (old versions, and eager members, which
/// own nothing when they join), owned partitions and generation come from the sticky user data
/// as Java's StickyAssignor reads them (only user data that is exactly a
/// `StickyAssignorUserData` with at least one partition is taken as one).
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<&str>,
    metadata: Bytes,
) -> Result<MemberSubscription> {
    let (_version, subscription) = consumer_protocol::decode_subscription(metadata)
        .map_err(codec_error(&format!("the JoinGroup metadata of member {member_id}")))?;
    let mut owned_partitions: Vec<TopicPartition> = subscription
        .owned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| TopicPartition::new(t.topic.as_str(), p)))
        .collect();
    let mut generation_id = subscription.generation_id.max(-1);
    if owned_partitions.is_empty() {
        if let Some((partitions, generation)) =
            subscription.user_data.as_deref().and_then(|d| parse_sticky_user_data(d, true))
        {
            if !partitions.is_empty() {
                owned_partitions = partitions;
                if generation_id < 0 {
                    generation_id = generation.unwrap_or(-1).max(-1);
                }
            }
        }
    }
    Ok(MemberSubscription {
        member_id: member_id.to_owned(),
        group_instance_id: group_instance_id.map(str::to_owned),
        topics: subscription.topics,
        user_data: subscription.user_data,
        owned_partitions,
        generation_id,
        rack_id: subscription.rack_id.filter(|r| !r.is_empty()),
    })
}

/// Encodes one member's assignment for SyncGroup: ConsumerProtocolAssignment v3 (as Java 3.x+
/// writes it) with its version prefix, partitions grouped by topic in order of first appearance.
pub fn encode_assignment(partitions: &[TopicPartition], user_data: Option<Bytes>) -> Result<Bytes> {
    let mut assigned: Vec<consumer_protocol_assignment::TopicPartition> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for tp in partitions {
        let index = *slot.entry(tp.topic.as_str()).or_insert_with(|| {
            assigned
                .push(consumer_protocol_assignment::TopicPartition { topic: tp.topic.clone(), ..Default::default() });
            assigned.len() - 1
        });
        if let Some(entry) = assigned.get_mut(index) {
            entry.partitions.push(tp.partition);
        }
    }
    let assignment = ConsumerProtocolAssignment { assigned_partitions: assigned, user_data, ..Default::default() };
    consumer_protocol::encode_assignment(&assignment, ASSIGNMENT_VERSION)
        .map_err(codec_error("a SyncGroup assignment (encoding)"))
}

/// Decodes one member's SyncGroup assignment (any version; empty bytes are an empty
/// assignment) into its partitions, in the order they were written.
pub fn decode_assignment(data: Bytes) -> Result<Vec<TopicPartition>> {
    let (_version, assignment) =
        consumer_protocol::decode_assignment(data).map_err(codec_error("the SyncGroup assignment"))?;
    Ok(assignment
        .assigned_partitions
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| TopicPartition::new(t.topic.as_str(), p)))
        .collect())
}

fn codec_error(what: &str) -> impl FnOnce(ProtocolError) -> Error {
    let what = what.to_owned();
    move |source| Error::Protocol { broker: what, source }
}

// ---------------------------------------------------------------------------------------------
// Ordering and small helpers

/// Java's `String.compareTo`: lexicographic over UTF-16 code units.
fn java_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Java's `AbstractPartitionAssignor.MemberInfo` order (members with a group instance id first,
/// by instance id; then by member id), with the member id as the final tie-break.
fn member_info_cmp(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    let by_instance = match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => java_cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_instance.then_with(|| java_cmp(&a.member_id, &b.member_id))
}

/// An empty assignment for every member; fails on a member id given twice.
fn empty_assignment(members: &[MemberSubscription]) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
    let mut out = BTreeMap::new();
    for m in members {
        if out.insert(m.member_id.clone(), Vec::new()).is_some() {
            return Err(Error::InvalidArgument(format!("member id `{}` appears twice in the group", m.member_id)));
        }
    }
    Ok(out)
}

/// The partition count of `topic`, if it exists with at least one partition.
fn partition_count(partitions_per_topic: &BTreeMap<String, i32>, topic: &str) -> Option<i32> {
    partitions_per_topic.get(topic).copied().filter(|&n| n > 0)
}

/// Partitions grouped by topic, topics and partitions sorted, duplicates dropped.
fn group_sorted(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(tp.topic.as_str()).or_default().push(tp.partition);
    }
    for list in by_topic.values_mut() {
        list.sort_unstable();
        list.dedup();
    }
    by_topic
}

// ---------------------------------------------------------------------------------------------
// range and roundrobin

fn assign_range(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
    let mut out = empty_assignment(members)?;
    let mut per_topic: BTreeMap<&str, Vec<&MemberSubscription>> = BTreeMap::new();
    for m in members {
        let topics: BTreeSet<&str> = m.topics.iter().map(String::as_str).collect();
        for topic in topics {
            per_topic.entry(topic).or_default().push(m);
        }
    }
    for (topic, mut consumers) in per_topic {
        let Some(count) = partition_count(partitions_per_topic, topic) else { continue };
        consumers.sort_by(|a, b| member_info_cmp(a, b));
        let n = i64::from(count);
        let k = i64::try_from(consumers.len()).unwrap_or(i64::MAX);
        let (per_member, with_extra) = (n / k, n % k);
        let mut next = 0i64;
        for (i, m) in consumers.iter().enumerate() {
            let extra = i64::from(i64::try_from(i).unwrap_or(i64::MAX) < with_extra);
            let end = next + per_member + extra;
            if let Some(list) = out.get_mut(&m.member_id) {
                list.extend((next..end).filter_map(|p| i32::try_from(p).ok()).map(|p| TopicPartition::new(topic, p)));
            }
            next = end;
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    Ok(out)
}

fn assign_round_robin(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
    let mut out = empty_assignment(members)?;
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_info_cmp(a, b));
    let subscribed: Vec<HashSet<&str>> = sorted.iter().map(|m| m.topics.iter().map(String::as_str).collect()).collect();
    let mut topics: Vec<&str> = members.iter().flat_map(|m| m.topics.iter().map(String::as_str)).collect();
    topics.sort_by(|a, b| java_cmp(a, b));
    topics.dedup();

    let n = sorted.len();
    let mut next = 0usize;
    for topic in topics {
        let Some(count) = partition_count(partitions_per_topic, topic) else { continue };
        for partition in 0..count {
            // The next member (circularly) subscribed to the topic; one exists, since the topic
            // comes from some member's subscription.
            let Some(chosen) =
                (0..n).map(|step| (next + step) % n).find(|&i| subscribed.get(i).is_some_and(|s| s.contains(topic)))
            else {
                break;
            };
            if let Some(list) = sorted.get(chosen).and_then(|m| out.get_mut(&m.member_id)) {
                list.push(TopicPartition::new(topic, partition));
            }
            next = (chosen + 1) % n;
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Sticky user data

/// `StickyAssignorUserData` v1: `[topic:string [partition:int32]] generation:int32`, topics
/// sorted (a topic name too long for a Kafka string cannot be a topic and is left out).
fn encode_sticky_user_data(partitions: &[TopicPartition], generation: i32) -> Bytes {
    let by_topic: Vec<(&str, Vec<i32>)> =
        group_sorted(partitions).into_iter().filter(|(t, _)| i16::try_from(t.len()).is_ok()).collect();
    let mut out = BytesMut::new();
    out.put_i32(i32::try_from(by_topic.len()).unwrap_or(i32::MAX));
    for (topic, list) in &by_topic {
        out.put_i16(i16::try_from(topic.len()).unwrap_or(i16::MAX));
        out.put_slice(topic.as_bytes());
        out.put_i32(i32::try_from(list.len()).unwrap_or(i32::MAX));
        for &p in list {
            out.put_i32(p);
        }
    }
    out.put_i32(generation);
    out.freeze()
}

/// A cursor over user data bytes that never reads past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2)?.try_into().ok().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4)?.try_into().ok().map(i32::from_be_bytes)
    }

    /// An array count as Java's `ArrayOf` reads it: not negative, not above the bytes left.
    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n <= self.0.len()).then_some(n)
    }
}

/// The `previous_assignment` array of `StickyAssignorUserData`.
fn read_sticky_partitions(r: &mut Reader<'_>) -> Option<Vec<TopicPartition>> {
    let mut out = Vec::new();
    for _ in 0..r.count()? {
        let len = usize::try_from(r.i16()?).ok()?;
        let topic = String::from_utf8_lossy(r.take(len)?).into_owned();
        for _ in 0..r.count()? {
            out.push(TopicPartition::new(topic.as_str(), r.i32()?));
        }
    }
    Some(out)
}

/// Reads `StickyAssignorUserData` as Java's StickyAssignor does: v1 (with generation), else v0
/// (without). Java ignores trailing bytes; `exact` refuses them (used where the format is only
/// presumed).
fn parse_sticky_user_data(data: &[u8], exact: bool) -> Option<(Vec<TopicPartition>, Option<i32>)> {
    let mut r = Reader(data);
    if let Some(partitions) = read_sticky_partitions(&mut r) {
        if let Some(generation) = r.i32() {
            if !exact || r.0.is_empty() {
                return Some((partitions, Some(generation)));
            }
        }
    }
    let mut r = Reader(data);
    let partitions = read_sticky_partitions(&mut r)?;
    (!exact || r.0.is_empty()).then_some((partitions, None))
}

// ---------------------------------------------------------------------------------------------
// Sticky assignors (Java's AbstractStickyAssignor)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StickyKind {
    Eager,
    Cooperative,
}

/// A member's previous partitions and their generation, as the sticky assignors read them
/// (Java's `MemberData`).
struct MemberData {
    partitions: Vec<TopicPartition>,
    generation: Option<i32>,
}

fn member_data(kind: StickyKind, m: &MemberSubscription) -> MemberData {
    let subscription_generation = (m.generation_id >= 0).then_some(m.generation_id);
    match kind {
        // Java's StickyAssignor reads only its user data (eager members own nothing when they
        // join). Without user data, we fall back on owned partitions a caller may have filled.
        StickyKind::Eager => match m.user_data.as_deref() {
            Some(data) if !data.is_empty() => match parse_sticky_user_data(data, false) {
                Some((partitions, generation)) => MemberData { partitions, generation },
                None => MemberData { partitions: Vec::new(), generation: Some(-1) },
            },
            _ if !m.owned_partitions.is_empty() => {
                MemberData { partitions: m.owned_partitions.clone(), generation: subscription_generation }
            }
            _ => MemberData { partitions: Vec::new(), generation: None },
        },
        // Java's CooperativeStickyAssignor: the subscription's generation (v2+), else the one
        // in the user data (-1 if unreadable); the owned partitions always.
        StickyKind::Cooperative => {
            let generation = subscription_generation.or_else(|| {
                m.user_data
                    .as_deref()
                    .map(|d| d.get(..4).and_then(|b| b.try_into().ok()).map(i32::from_be_bytes).unwrap_or(-1))
            });
            MemberData { partitions: m.owned_partitions.clone(), generation }
        }
    }
}

/// The partitions in play: every partition of every topic that some member subscribes to and
/// that exists, numbered densely (topics in Java string order, then partitions ascending).
struct Universe<'a> {
    topics: Vec<&'a str>,
    counts: Vec<usize>,
    offsets: Vec<usize>,
    index: HashMap<&'a str, usize>,
    part_topic: Vec<usize>,
}

impl<'a> Universe<'a> {
    fn new(partitions_per_topic: &'a BTreeMap<String, i32>, members: &[&MemberSubscription]) -> Self {
        let mut topics: Vec<&'a str> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for m in members {
            for t in &m.topics {
                if let Some((name, &n)) = partitions_per_topic.get_key_value(t.as_str()) {
                    if n > 0 && seen.insert(name.as_str()) {
                        topics.push(name.as_str());
                    }
                }
            }
        }
        topics.sort_by(|a, b| java_cmp(a, b));
        let counts: Vec<usize> = topics
            .iter()
            .map(|t| partitions_per_topic.get(*t).and_then(|&n| usize::try_from(n).ok()).unwrap_or(0))
            .collect();
        let mut offsets = Vec::new();
        let mut part_topic = Vec::new();
        for (t, &n) in counts.iter().enumerate() {
            offsets.push(part_topic.len());
            part_topic.extend(std::iter::repeat(t).take(n));
        }
        let index = topics.iter().enumerate().map(|(i, t)| (*t, i)).collect();
        Universe { topics, counts, offsets, index, part_topic }
    }

    fn total(&self) -> usize {
        self.part_topic.len()
    }

    fn topic_count(&self) -> usize {
        self.topics.len()
    }

    fn count(&self, topic: usize) -> usize {
        self.counts.get(topic).copied().unwrap_or(0)
    }

    fn offset(&self, topic: usize) -> usize {
        self.offsets.get(topic).copied().unwrap_or(0)
    }

    /// The number of a partition, if it is in play.
    fn pid(&self, topic: &str, partition: i32) -> Option<usize> {
        let &t = self.index.get(topic)?;
        let p = usize::try_from(partition).ok()?;
        (p < self.count(t)).then(|| self.offset(t) + p)
    }

    fn topic_of(&self, pid: usize) -> usize {
        self.part_topic.get(pid).copied().unwrap_or(0)
    }

    fn partition_of(&self, pid: usize) -> usize {
        pid.saturating_sub(self.offset(self.topic_of(pid)))
    }

    fn partition(&self, pid: usize) -> Option<TopicPartition> {
        let topic = self.topics.get(self.topic_of(pid))?;
        Some(TopicPartition::new(*topic, i32::try_from(self.partition_of(pid)).ok()?))
    }
}

fn assign_sticky(
    kind: StickyKind,
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Result<BTreeMap<String, Vec<TopicPartition>>> {
    let mut out = empty_assignment(members)?;
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| java_cmp(&a.member_id, &b.member_id));
    let Some(first) = sorted.first() else { return Ok(out) };
    let universe = Universe::new(partitions_per_topic, &sorted);

    // Java compares the raw topic lists (as sets), unknown topics included.
    let first_topics: BTreeSet<&str> = first.topics.iter().map(String::as_str).collect();
    let all_equal =
        sorted.iter().all(|m| m.topics.iter().map(String::as_str).collect::<BTreeSet<&str>>() == first_topics);
    let subs: Vec<Vec<usize>> = sorted
        .iter()
        .map(|m| {
            let mut ts: Vec<usize> = m.topics.iter().filter_map(|t| universe.index.get(t.as_str()).copied()).collect();
            ts.sort_unstable();
            ts.dedup();
            ts
        })
        .collect();

    let data: Vec<MemberData> = sorted.iter().map(|m| member_data(kind, m)).collect();
    let generations: Vec<i32> = data.iter().map(|d| d.generation.unwrap_or(-1)).collect();
    let max_generation = generations.iter().copied().fold(-1, i32::max);
    let generation_of = |m: usize| generations.get(m).copied().unwrap_or(-1);

    // Previously owned partitions still in play, one owner each (Java's allSubscriptionsEqual):
    // a later claim with a higher generation takes a partition over, one with the same
    // generation invalidates it for everyone.
    let mut owner_of: HashMap<usize, Option<usize>> = HashMap::new();
    let mut last_claimer: HashMap<usize, usize> = HashMap::new();
    let mut claimed: Vec<Vec<usize>> = Vec::new();
    let mut multiple_owners: HashSet<usize> = HashSet::new();
    for (m, d) in data.iter().enumerate() {
        let mut mine = Vec::new();
        let mut seen = HashSet::new();
        for tp in &d.partitions {
            let Some(pid) = universe.pid(&tp.topic, tp.partition) else { continue };
            if !seen.insert(pid) {
                continue;
            }
            match last_claimer.get(&pid).copied() {
                None => {
                    owner_of.insert(pid, Some(m));
                    mine.push(pid);
                }
                Some(other) => match generation_of(m).cmp(&generation_of(other)) {
                    Ordering::Equal => {
                        multiple_owners.insert(pid);
                        owner_of.insert(pid, None);
                    }
                    Ordering::Greater => {
                        owner_of.insert(pid, Some(m));
                        mine.push(pid);
                    }
                    Ordering::Less => continue,
                },
            }
            last_claimer.insert(pid, m);
        }
        claimed.push(mine);
    }
    let owned: Vec<Vec<usize>> = claimed
        .into_iter()
        .enumerate()
        .map(|(m, pids)| pids.into_iter().filter(|pid| owner_of.get(pid) == Some(&Some(m))).collect())
        .collect();

    let (mut owner, transferring) = if all_equal {
        let (owner, transferring) = constrained_assign(&universe, &owned, &multiple_owners);
        (owner, Some(transferring))
    } else {
        let prev = previous_assignment(&universe, &data, max_generation);
        (General::new(&universe, subs).build(&owned, &prev), None)
    };

    if kind == StickyKind::Cooperative {
        let transferring = transferring.unwrap_or_else(|| transferring_from_owned(&universe, &sorted, &owner));
        for pid in transferring.keys() {
            if let Some(slot) = owner.get_mut(*pid) {
                *slot = None;
            }
        }
    }

    for (pid, slot) in owner.iter().enumerate() {
        let Some(m) = *slot else { continue };
        if let (Some(member), Some(tp)) = (sorted.get(m), universe.partition(pid)) {
            if let Some(list) = out.get_mut(&member.member_id) {
                list.push(tp);
            }
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    Ok(out)
}

/// Java's `prepopulateCurrentAssignments`: for every partition, the member that owned it in
/// the highest generation below the group's newest one.
fn previous_assignment(universe: &Universe<'_>, data: &[MemberData], max_generation: i32) -> HashMap<usize, usize> {
    let mut prev: HashMap<usize, (usize, i32)> = HashMap::new();
    for (m, d) in data.iter().enumerate() {
        let generation = match d.generation {
            Some(g) if g < max_generation => g,
            None if max_generation > -1 => -1,
            _ => continue,
        };
        for tp in &d.partitions {
            let Some(pid) = universe.pid(&tp.topic, tp.partition) else { continue };
            match prev.get(&pid) {
                Some(&(_, g)) if g >= generation => {}
                _ => {
                    prev.insert(pid, (m, generation));
                }
            }
        }
    }
    prev.into_iter().map(|(pid, (m, _))| (pid, m)).collect()
}

/// Java's `computePartitionsTransferringOwnership`: partitions a member gets that it does not
/// own, and that a member owning them loses.
fn transferring_from_owned(
    universe: &Universe<'_>,
    members: &[&MemberSubscription],
    owner: &[Option<usize>],
) -> HashMap<usize, usize> {
    let mut owned: HashSet<(usize, usize)> = HashSet::new();
    let mut revoked: HashSet<usize> = HashSet::new();
    for (m, member) in members.iter().enumerate() {
        for tp in &member.owned_partitions {
            let Some(pid) = universe.pid(&tp.topic, tp.partition) else { continue };
            owned.insert((m, pid));
            if owner.get(pid).copied().flatten() != Some(m) {
                revoked.insert(pid);
            }
        }
    }
    owner
        .iter()
        .enumerate()
        .filter_map(|(pid, slot)| slot.map(|m| (pid, m)))
        .filter(|&(pid, m)| !owned.contains(&(m, pid)) && revoked.contains(&pid))
        .collect()
}

/// Java's `ConstrainedAssignmentBuilder`, for groups whose members all subscribe to the same
/// topics. Returns the owner of every partition and the partitions changing owner (with their
/// new owner), which the cooperative assignor withholds.
fn constrained_assign(
    universe: &Universe<'_>,
    owned: &[Vec<usize>],
    multiple_owners: &HashSet<usize>,
) -> (Vec<Option<usize>>, HashMap<usize, usize>) {
    let members = owned.len();
    let total = universe.total();
    let mut owner: Vec<Option<usize>> = vec![None; total];
    let mut transferring = HashMap::new();
    if members == 0 {
        return (owner, transferring);
    }
    let min_quota = total / members;
    let expected_over_min = total % members;
    let max_quota = min_quota + usize::from(expected_over_min > 0);
    let mut over_min = 0usize;
    let mut sizes = vec![0usize; members];
    let mut maybe_revoked: HashMap<usize, usize> = HashMap::new();
    let mut under_min: Vec<usize> = Vec::new();
    let mut at_min: VecDeque<usize> = VecDeque::new();

    // 1. Each member keeps up to its quota of what it owned, lowest partition numbers first.
    for (m, pids) in owned.iter().enumerate() {
        let mut mine: Vec<usize> = pids.iter().copied().filter(|p| !multiple_owners.contains(p)).collect();
        mine.sort_by_key(|&p| (universe.partition_of(p), universe.topic_of(p)));
        let keep = if mine.len() < min_quota {
            under_min.push(m);
            mine.len()
        } else if mine.len() >= max_quota && over_min < expected_over_min {
            over_min += 1;
            if over_min == expected_over_min {
                at_min.clear();
            }
            max_quota
        } else {
            if over_min < expected_over_min {
                at_min.push_back(m);
            }
            min_quota
        };
        let (kept, rest) = mine.split_at(keep.min(mine.len()));
        for &p in kept {
            if let Some(slot) = owner.get_mut(p) {
                *slot = Some(m);
            }
        }
        if let Some(size) = sizes.get_mut(m) {
            *size = kept.len();
        }
        for &p in rest {
            maybe_revoked.insert(p, m);
        }
    }

    // 2. The rest, round-robin: first to members under the minimum quota, then one each to
    //    members at the minimum until enough members have the maximum.
    under_min.sort_unstable();
    at_min.make_contiguous().sort_unstable();
    let unassigned: Vec<usize> = (0..total).filter(|&p| owner.get(p).is_some_and(Option::is_none)).collect();
    let mut cursor = 0usize;
    for pid in unassigned {
        let (consumer, from_under) = if let Some(&m) = under_min.get(cursor) {
            cursor += 1;
            (m, true)
        } else if let Some(&m) = under_min.first() {
            cursor = 1;
            (m, true)
        } else if let Some(m) = at_min.pop_front() {
            (m, false)
        } else {
            // Unreachable with exact quotas; keep the assignment valid regardless.
            let least = sizes.iter().enumerate().min_by_key(|&(m, &s)| (s, m)).map_or(0, |(m, _)| m);
            (least, false)
        };
        if let Some(slot) = owner.get_mut(pid) {
            *slot = Some(consumer);
        }
        if maybe_revoked.get(&pid).is_some_and(|&prev| prev != consumer) || multiple_owners.contains(&pid) {
            transferring.insert(pid, consumer);
        }
        let size = sizes.get_mut(consumer).map_or(0, |s| {
            *s += 1;
            *s
        });
        if size == min_quota && from_under {
            cursor -= 1;
            if cursor < under_min.len() {
                under_min.remove(cursor);
            }
            at_min.push_back(consumer);
        }
    }
    (owner, transferring)
}

/// Java's `PartitionMovements`: where each moved partition came from, so that a later move can
/// prefer undoing an earlier one over moving yet another partition between the same members.
#[derive(Default)]
struct Movements {
    by_partition: HashMap<usize, (usize, usize)>,
    by_topic: HashMap<usize, BTreeMap<(usize, usize), BTreeSet<usize>>>,
}

impl Movements {
    fn remove_record(&mut self, pid: usize, topic: usize) -> Option<(usize, usize)> {
        let pair = self.by_partition.remove(&pid)?;
        if let Some(pairs) = self.by_topic.get_mut(&topic) {
            if let Some(set) = pairs.get_mut(&pair) {
                set.remove(&pid);
                if set.is_empty() {
                    pairs.remove(&pair);
                }
            }
            if pairs.is_empty() {
                self.by_topic.remove(&topic);
            }
        }
        Some(pair)
    }

    fn add_record(&mut self, pid: usize, topic: usize, pair: (usize, usize)) {
        self.by_partition.insert(pid, pair);
        self.by_topic.entry(topic).or_default().entry(pair).or_default().insert(pid);
    }

    fn move_partition(&mut self, pid: usize, topic: usize, old: usize, new: usize) {
        match self.remove_record(pid, topic) {
            // Moved before: record it from its original owner, unless it goes back there.
            Some((src, _)) if src != new => self.add_record(pid, topic, (src, new)),
            Some(_) => {}
            None => self.add_record(pid, topic, (old, new)),
        }
    }

    /// The partition to move from `old` to `new` instead of `pid`: one of the same topic that
    /// earlier moved the opposite way, if any.
    fn partition_to_move(&self, pid: usize, topic: usize, old: usize, new: usize) -> usize {
        let Some(pairs) = self.by_topic.get(&topic) else { return pid };
        let old = self.by_partition.get(&pid).map_or(old, |&(src, _)| src);
        pairs.get(&(new, old)).and_then(|set| set.first().copied()).unwrap_or(pid)
    }
}

/// Java's `GeneralAssignmentBuilder`, for groups whose members subscribe to different topics.
struct General<'u> {
    universe: &'u Universe<'u>,
    /// Member → the topics (in play) it subscribes to, sorted.
    subs: Vec<Vec<usize>>,
    /// Topic → its subscribers.
    potential: Vec<Vec<usize>>,
    owner: Vec<Option<usize>>,
    sizes: Vec<usize>,
    /// Topic → member → how many of the topic's partitions the member has.
    topic_owners: Vec<BTreeMap<usize, usize>>,
    /// (size, member) of the members that take part in balancing (Java's
    /// sortedCurrentSubscriptions).
    sorted: BTreeSet<(usize, usize)>,
    active: Vec<bool>,
    movements: Movements,
    balanced: Option<bool>,
    moves: usize,
    max_moves: usize,
}

impl<'u> General<'u> {
    fn new(universe: &'u Universe<'u>, subs: Vec<Vec<usize>>) -> Self {
        let members = subs.len();
        let mut potential = vec![Vec::new(); universe.topic_count()];
        for (m, topics) in subs.iter().enumerate() {
            for &t in topics {
                if let Some(list) = potential.get_mut(t) {
                    list.push(m);
                }
            }
        }
        let total = universe.total();
        General {
            universe,
            subs,
            potential,
            owner: vec![None; total],
            sizes: vec![0; members],
            topic_owners: vec![BTreeMap::new(); universe.topic_count()],
            sorted: BTreeSet::new(),
            active: vec![false; members],
            movements: Movements::default(),
            balanced: None,
            moves: 0,
            // Each move strictly improves the balance in all but rare cases; this bound only
            // guards against a pathological input looping.
            max_moves: total.saturating_add(1).saturating_mul(members.saturating_add(1)).saturating_mul(4),
        }
    }

    fn size(&self, m: usize) -> usize {
        self.sizes.get(m).copied().unwrap_or(0)
    }

    fn is_active(&self, m: usize) -> bool {
        self.active.get(m).copied().unwrap_or(false)
    }

    fn subscribed(&self, m: usize, topic: usize) -> bool {
        self.subs.get(m).is_some_and(|ts| ts.binary_search(&topic).is_ok())
    }

    fn subscribers(&self, topic: usize) -> &[usize] {
        self.potential.get(topic).map_or(&[], Vec::as_slice)
    }

    fn set_size(&mut self, m: usize, size: usize) {
        let old = self.size(m);
        if self.is_active(m) {
            self.sorted.remove(&(old, m));
            self.sorted.insert((size, m));
        }
        if let Some(s) = self.sizes.get_mut(m) {
            *s = size;
        }
        self.balanced = None;
    }

    fn give(&mut self, pid: usize, m: usize) {
        let topic = self.universe.topic_of(pid);
        if let Some(slot) = self.owner.get_mut(pid) {
            *slot = Some(m);
        }
        if let Some(owners) = self.topic_owners.get_mut(topic) {
            *owners.entry(m).or_insert(0) += 1;
        }
        self.set_size(m, self.size(m) + 1);
    }

    fn take(&mut self, pid: usize) -> Option<usize> {
        let m = self.owner.get_mut(pid)?.take()?;
        let topic = self.universe.topic_of(pid);
        if let Some(owners) = self.topic_owners.get_mut(topic) {
            if let Some(n) = owners.get_mut(&m) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    owners.remove(&m);
                }
            }
        }
        self.set_size(m, self.size(m).saturating_sub(1));
        Some(m)
    }

    /// The least loaded balancing member subscribed to `topic` (ties: lowest member id).
    fn least_loaded_subscriber(&self, topic: usize) -> Option<usize> {
        self.sorted.iter().map(|&(_, m)| m).find(|&m| self.subscribed(m, topic))
    }

    fn build(mut self, owned: &[Vec<usize>], prev: &HashMap<usize, usize>) -> Vec<Option<usize>> {
        // Keep what members owned and still subscribe to.
        let mut revocation_required = false;
        for (m, pids) in owned.iter().enumerate() {
            for &pid in pids {
                if self.subscribed(m, self.universe.topic_of(pid)) {
                    self.give(pid, m);
                } else {
                    revocation_required = true;
                }
            }
        }
        for m in 0..self.sizes.len() {
            if let Some(a) = self.active.get_mut(m) {
                *a = true;
            }
            self.sorted.insert((self.size(m), m));
        }
        self.balanced = None;

        // Partitions in order of how few members may have them, then topic, then partition.
        let mut topic_order: Vec<usize> = (0..self.universe.topic_count()).collect();
        topic_order.sort_by_key(|&t| (self.subscribers(t).len(), t));
        let all: Vec<usize> = topic_order
            .iter()
            .flat_map(|&t| {
                let start = self.universe.offset(t);
                start..start + self.universe.count(t)
            })
            .collect();
        let unassigned: Vec<usize> =
            all.iter().copied().filter(|&p| self.owner.get(p).is_some_and(Option::is_none)).collect();
        let initializing = self.sorted.last().map_or(true, |&(size, _)| size == 0);

        // Each unassigned partition to the least loaded member that may have it.
        for &pid in &unassigned {
            if let Some(m) = self.least_loaded_subscriber(self.universe.topic_of(pid)) {
                self.give(pid, m);
            }
        }

        // Only topics with two or more subscribers, and members that could change, take part.
        let movable = |g: &Self, pid: &usize| g.subscribers(g.universe.topic_of(*pid)).len() >= 2;
        let all: Vec<usize> = all.into_iter().filter(|p| movable(&self, p)).collect();
        let unassigned: Vec<usize> = unassigned.into_iter().filter(|p| movable(&self, p)).collect();
        for m in 0..self.sizes.len() {
            if !self.can_change(m) {
                self.sorted.remove(&(self.size(m), m));
                if let Some(a) = self.active.get_mut(m) {
                    *a = false;
                }
            }
        }
        self.balanced = None;

        let before_owner = self.owner.clone();
        let before_score = self.score();
        if !revocation_required {
            self.reassign_until_balanced(&unassigned, prev);
        }
        let reassigned = self.reassign_until_balanced(&all, prev);
        if !initializing && reassigned && self.score() >= before_score {
            return before_owner;
        }
        self.owner
    }

    /// Java's `canConsumerParticipateInReassignment`.
    fn can_change(&self, m: usize) -> bool {
        let topics = self.subs.get(m).map_or(&[][..], Vec::as_slice);
        let max_size: usize = topics.iter().map(|&t| self.universe.count(t)).sum();
        self.size(m) < max_size
            || topics.iter().any(|&t| {
                self.subscribers(t).len() >= 2 && self.topic_owners.get(t).is_some_and(|o| o.contains_key(&m))
            })
    }

    /// Java's `getBalanceScore` over the balancing members: the sum of the size differences of
    /// every pair.
    fn score(&self) -> i128 {
        let mut sizes: Vec<i128> = self.sorted.iter().map(|&(s, _)| i128::try_from(s).unwrap_or(i128::MAX)).collect();
        sizes.sort_unstable();
        let n = i128::try_from(sizes.len()).unwrap_or(0);
        sizes.iter().zip(0i128..).map(|(&s, i)| (2 * i - n + 1) * s).sum()
    }

    /// Java's `isBalanced`: sizes differ by at most one, or no partition can move to a
    /// subscriber of its topic with at least two partitions fewer than its owner.
    fn is_balanced(&mut self) -> bool {
        if let Some(b) = self.balanced {
            return b;
        }
        let b = self.compute_balanced();
        self.balanced = Some(b);
        b
    }

    fn compute_balanced(&self) -> bool {
        let (Some(&(min, _)), Some(&(max, _))) = (self.sorted.first(), self.sorted.last()) else { return true };
        if min + 1 >= max {
            return true;
        }
        (0..self.universe.topic_count()).all(|t| {
            let subscribers = self.subscribers(t);
            if subscribers.len() < 2 {
                return true;
            }
            let least = subscribers.iter().map(|&m| self.size(m)).min().unwrap_or(0);
            let most = self.topic_owners.get(t).and_then(|o| o.keys().map(|&m| self.size(m)).max()).unwrap_or(0);
            most <= least + 1
        })
    }

    /// Java's `performReassignments`. Returns whether anything moved.
    fn reassign_until_balanced(&mut self, partitions: &[usize], prev: &HashMap<usize, usize>) -> bool {
        let mut reassigned = false;
        loop {
            let mut modified = false;
            for &pid in partitions {
                if self.is_balanced() || self.moves >= self.max_moves {
                    break;
                }
                let Some(current) = self.owner.get(pid).copied().flatten() else { continue };
                let topic = self.universe.topic_of(pid);
                let size = self.size(current);
                // Back to its previous owner if that one has at least two fewer.
                if let Some(&previous) = prev.get(&pid) {
                    if previous != current
                        && self.is_active(previous)
                        && self.subscribed(previous, topic)
                        && size > self.size(previous) + 1
                    {
                        self.reassign(pid, previous);
                        reassigned = true;
                        modified = true;
                        continue;
                    }
                }
                // Else to the least loaded subscriber, if some subscriber has two fewer.
                if self.subscribers(topic).iter().any(|&other| size > self.size(other) + 1) {
                    if let Some(target) = self.least_loaded_subscriber(topic) {
                        self.reassign(pid, target);
                        reassigned = true;
                        modified = true;
                    }
                }
            }
            if !modified || self.moves >= self.max_moves {
                return reassigned;
            }
        }
    }

    fn reassign(&mut self, pid: usize, target: usize) {
        let Some(current) = self.owner.get(pid).copied().flatten() else { return };
        let topic = self.universe.topic_of(pid);
        let moving = self.movements.partition_to_move(pid, topic, current, target);
        let Some(from) = self.owner.get(moving).copied().flatten() else { return };
        if from == target {
            return;
        }
        self.movements.move_partition(moving, topic, from, target);
        self.take(moving);
        self.give(moving, target);
        self.moves += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use std::time::{Duration, Instant};

    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::*;

    type Assignment = BTreeMap<String, Vec<TopicPartition>>;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn topics_of(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription { member_id: id.into(), topics: topics_of(topics), generation_id: -1, ..Default::default() }
    }

    fn static_member(id: &str, instance: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription { group_instance_id: Some(instance.into()), ..member(id, topics) }
    }

    /// A sticky member as Java writes it: previous assignment and generation in the user data,
    /// nothing owned (it revoked everything before joining).
    fn sticky_member(id: &str, topics: &[&str], previous: &[TopicPartition], generation: i32) -> MemberSubscription {
        MemberSubscription {
            user_data: StickyAssignor.user_data(previous, generation),
            generation_id: generation,
            ..member(id, topics)
        }
    }

    /// A cooperative-sticky member as Java writes it (subscription v3).
    fn coop_member(id: &str, topics: &[&str], owned: &[TopicPartition], generation: i32) -> MemberSubscription {
        MemberSubscription {
            user_data: CooperativeStickyAssignor.user_data(owned, generation),
            owned_partitions: owned.to_vec(),
            generation_id: generation,
            ..member(id, topics)
        }
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn expected(list: &[(&str, &[(&str, i32)])]) -> Assignment {
        list.iter().map(|(m, tps)| (m.to_string(), tps.iter().map(|(t, p)| tp(t, *p)).collect())).collect()
    }

    fn all_partitions(ppt: &BTreeMap<String, i32>, topic: &str) -> Vec<TopicPartition> {
        (0..ppt.get(topic).copied().unwrap_or(0)).map(|p| tp(topic, p)).collect()
    }

    /// Every member has an entry; no partition twice; partitions exist and are of topics the
    /// member subscribes to; if `complete`, every partition of a subscribed topic is assigned.
    fn check_valid(ppt: &BTreeMap<String, i32>, members: &[MemberSubscription], result: &Assignment, complete: bool) {
        assert_eq!(result.len(), members.len(), "{result:?}");
        let mut seen = HashSet::new();
        for m in members {
            let list = &result[&m.member_id];
            let mut sorted = list.clone();
            sorted.sort();
            assert_eq!(&sorted, list, "lists are sorted");
            for p in list {
                assert!(seen.insert(p.clone()), "{p} assigned twice: {result:?}");
                assert!(m.topics.contains(&p.topic), "{p} given to {} which does not subscribe", m.member_id);
                assert!(
                    p.partition >= 0 && p.partition < ppt.get(&p.topic).copied().unwrap_or(0),
                    "{p} does not exist"
                );
            }
        }
        if complete {
            let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| &m.topics).collect();
            for t in subscribed {
                for p in all_partitions(ppt, t) {
                    assert!(seen.contains(&p), "{p} unassigned: {result:?}");
                }
            }
        }
    }

    /// No partition can move to a member subscribed to its topic with two partitions fewer than
    /// its owner (the sticky assignors' balance goal); sizes differ by at most one when all
    /// subscriptions are equal.
    fn check_balanced(members: &[MemberSubscription], result: &Assignment) {
        for a in members {
            for b in members {
                let (la, lb) = (result[&a.member_id].len(), result[&b.member_id].len());
                if la > lb + 1 {
                    for p in &result[&a.member_id] {
                        assert!(
                            !b.topics.contains(&p.topic),
                            "{p} could move from {} ({la}) to {} ({lb}): {result:?}",
                            a.member_id,
                            b.member_id
                        );
                    }
                }
            }
        }
        let first: BTreeSet<&String> = members[0].topics.iter().collect();
        if members.iter().all(|m| m.topics.iter().collect::<BTreeSet<_>>() == first) {
            let sizes: Vec<usize> = result.values().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "unbalanced: {result:?}");
        }
    }

    /// Under the cooperative protocol, no member gets a partition another member owns.
    fn check_no_direct_transfer(members: &[MemberSubscription], result: &Assignment) {
        for m in members {
            for p in &result[&m.member_id] {
                for other in members.iter().filter(|o| o.member_id != m.member_id) {
                    assert!(
                        !other.owned_partitions.contains(p),
                        "{p} goes from {} straight to {}: {result:?}",
                        other.member_id,
                        m.member_id
                    );
                }
            }
        }
    }

    /// Runs cooperative rebalances (members keep what they are assigned, generation + 1) until
    /// the assignment stops changing; checks every round. Returns the final assignment and the
    /// number of rounds.
    fn run_cooperative(ppt: &BTreeMap<String, i32>, mut members: Vec<MemberSubscription>) -> (Assignment, usize) {
        for round in 1..=6 {
            let result = CooperativeStickyAssignor.assign(ppt, &members).unwrap();
            check_valid(ppt, &members, &result, false);
            check_no_direct_transfer(&members, &result);
            let stable = members.iter().all(|m| {
                let mut owned = m.owned_partitions.clone();
                owned.sort();
                owned == result[&m.member_id]
            });
            if stable {
                check_valid(ppt, &members, &result, true);
                return (result, round);
            }
            for m in &mut members {
                let generation = m.generation_id + 1;
                *m = coop_member(
                    &m.member_id,
                    &m.topics.iter().map(String::as_str).collect::<Vec<_>>(),
                    &result[&m.member_id],
                    generation,
                );
            }
        }
        panic!("cooperative rebalances did not converge: {members:?}");
    }

    // --- range -----------------------------------------------------------------------------

    #[test]
    fn range_two_members_two_topics() {
        // Java RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let ppt = counts(&[("t1", 3), ("t2", 3)]);
        let members = [member("c1", &["t1", "t2"]), member("c0", &["t1", "t2"])];
        let result = RangeAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[("c0", &[("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]), ("c1", &[("t1", 2), ("t2", 2)]),])
        );
    }

    #[test]
    fn range_mixed_subscriptions() {
        // Java RangeAssignorTest.testMultipleConsumersMixedTopics.
        let ppt = counts(&[("t1", 3), ("t2", 2)]);
        let members = [member("consumer1", &["t1"]), member("consumer2", &["t1", "t2"]), member("consumer3", &["t1"])];
        let result = RangeAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[
                ("consumer1", &[("t1", 0)]),
                ("consumer2", &[("t1", 1), ("t2", 0), ("t2", 1)]),
                ("consumer3", &[("t1", 2)]),
            ])
        );
    }

    #[test]
    fn range_orders_static_members_by_instance_id_first() {
        // 5 partitions over 3 members: 2, 2, 1. Order: instance "y" (member b), instance "z"
        // (member a), then the dynamic member c.
        let ppt = counts(&[("t", 5)]);
        let members = [static_member("a", "z", &["t"]), member("c", &["t"]), static_member("b", "y", &["t"])];
        let result = RangeAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result, expected(&[("a", &[("t", 2), ("t", 3)]), ("b", &[("t", 0), ("t", 1)]), ("c", &[("t", 4)])]));
    }

    #[test]
    fn range_more_members_than_partitions_and_unknown_topics() {
        let ppt = counts(&[("t", 2), ("empty", 0)]);
        let members = [
            member("m3", &["t", "unknown"]),
            member("m1", &["t"]),
            member("m2", &["t", "empty"]),
            member("idle", &["unknown"]),
        ];
        let result = RangeAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result, expected(&[("idle", &[]), ("m1", &[("t", 0)]), ("m2", &[("t", 1)]), ("m3", &[])]));
    }

    // --- roundrobin ------------------------------------------------------------------------

    #[test]
    fn roundrobin_two_members_two_topics() {
        // Java RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let ppt = counts(&[("t1", 3), ("t2", 3)]);
        let members = [member("c1", &["t1", "t2"]), member("c0", &["t1", "t2"])];
        let result = RoundRobinAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[("c0", &[("t1", 0), ("t1", 2), ("t2", 1)]), ("c1", &[("t1", 1), ("t2", 0), ("t2", 2)])])
        );
    }

    #[test]
    fn roundrobin_skips_members_not_subscribed() {
        // Java RoundRobinAssignorTest.testMultipleConsumersMixedTopics.
        let ppt = counts(&[("t1", 3), ("t2", 2)]);
        let members = [member("consumer1", &["t1"]), member("consumer2", &["t1", "t2"]), member("consumer3", &["t1"])];
        let result = RoundRobinAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[
                ("consumer1", &[("t1", 0)]),
                ("consumer2", &[("t1", 1), ("t2", 0), ("t2", 1)]),
                ("consumer3", &[("t1", 2)]),
            ])
        );
    }

    #[test]
    fn roundrobin_static_members_and_three_topics() {
        // Order: b (instance "i1"), a (instance "i2"), c. Partitions in order
        // a-0 a-1 b-0 b-1 b-2 c-0, c subscribed only to "b" and "c".
        let ppt = counts(&[("a", 2), ("b", 3), ("c", 1)]);
        let members = [
            static_member("a", "i2", &["a", "b"]),
            static_member("b", "i1", &["a", "b", "c"]),
            member("c", &["b", "c"]),
        ];
        let result = RoundRobinAssignor.assign(&ppt, &members).unwrap();
        // a-0 → b, a-1 → a, b-0 → c, b-1 → b, b-2 → a, c-0 → c (next after a, and subscribed).
        assert_eq!(
            result,
            expected(&[("a", &[("a", 1), ("b", 2)]), ("b", &[("a", 0), ("b", 1)]), ("c", &[("b", 0), ("c", 0)]),])
        );
    }

    #[test]
    fn member_order_is_javas_utf16_order() {
        // U+FF5E (one UTF-16 unit 0xFF5E) sorts after U+1F600 (surrogates 0xD83D..) in Java,
        // before it in UTF-8 byte order.
        assert_eq!(java_cmp("\u{FF5E}", "\u{1F600}"), Ordering::Greater);
        assert_eq!("\u{FF5E}".cmp("\u{1F600}"), Ordering::Less);
        let ppt = counts(&[("t", 3)]);
        let members = [member("\u{FF5E}", &["t"]), member("\u{1F600}", &["t"])];
        let result = RangeAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result["\u{1F600}"], vec![tp("t", 0), tp("t", 1)]);
    }

    #[test]
    fn duplicate_member_ids_are_rejected() {
        let ppt = counts(&[("t", 3)]);
        let members = [member("m", &["t"]), member("m", &["t"])];
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            let err = assignor_by_name(name).unwrap().assign(&ppt, &members).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        }
    }

    #[test]
    fn every_assignor_gives_every_member_an_entry() {
        let ppt = counts(&[("t", 1)]);
        for name in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            let assignor = assignor_by_name(name).unwrap();
            assert!(assignor.assign(&ppt, &[]).unwrap().is_empty());
            let members = [member("a", &["t"]), member("b", &["t"]), member("c", &[]), member("d", &["nope"])];
            let result = assignor.assign(&ppt, &members).unwrap();
            check_valid(&ppt, &members, &result, true);
            assert_eq!(result.values().map(Vec::len).sum::<usize>(), 1, "{name}");
        }
    }

    // --- names -----------------------------------------------------------------------------

    #[test]
    fn assignors_by_wire_and_class_name() {
        for (names, wire, protocol) in [
            (["range", "org.apache.kafka.clients.consumer.RangeAssignor"], "range", RebalanceProtocol::Eager),
            (
                ["roundrobin", "org.apache.kafka.clients.consumer.RoundRobinAssignor"],
                "roundrobin",
                RebalanceProtocol::Eager,
            ),
            (["sticky", "org.apache.kafka.clients.consumer.StickyAssignor"], "sticky", RebalanceProtocol::Eager),
            (
                [" cooperative-sticky", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"],
                "cooperative-sticky",
                RebalanceProtocol::Cooperative,
            ),
        ] {
            for name in names {
                let a = assignor_by_name(name).unwrap();
                assert_eq!((a.name(), a.protocol()), (wire, protocol));
            }
        }
        for bad in ["", "Range", "org.apache.kafka.clients.consumer.Nope", "uniform"] {
            match assignor_by_name(bad).unwrap_err() {
                Error::Config { key, .. } => assert_eq!(key, "partition.assignment.strategy"),
                e => panic!("{e}"),
            }
        }
    }

    // --- encodings -------------------------------------------------------------------------

    #[test]
    fn sticky_user_data_is_javas_v1_struct() {
        let data = StickyAssignor.user_data(&[tp("ab", 1), tp("ab", 0)], 7).unwrap();
        let expected: &[u8] = &[
            0, 0, 0, 1, // one topic
            0, 2, b'a', b'b', // "ab"
            0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, // [0, 1]
            0, 0, 0, 7, // generation
        ];
        assert_eq!(&data[..], expected);
        assert_eq!(parse_sticky_user_data(&data, true), Some((vec![tp("ab", 0), tp("ab", 1)], Some(7))));
        // v0 (no generation) still reads; Java sends nothing before the first assignment.
        assert_eq!(parse_sticky_user_data(&expected[..20], false), Some((vec![tp("ab", 0), tp("ab", 1)], None)));
        assert_eq!(StickyAssignor.user_data(&[], -1), None);
        assert!(StickyAssignor.user_data(&[], 3).is_some());
        // Garbage reads as nothing, as in Java.
        assert_eq!(parse_sticky_user_data(&[0, 0, 0, 9, 1], false), None);
        assert_eq!(parse_sticky_user_data(&[0xff, 0xff, 0xff, 0xff], false), None);
    }

    #[test]
    fn cooperative_user_data_is_the_generation() {
        assert_eq!(&CooperativeStickyAssignor.user_data(&[tp("t", 0)], 7).unwrap()[..], &[0, 0, 0, 7]);
        assert_eq!(&CooperativeStickyAssignor.user_data(&[], -1).unwrap()[..], &[0xff; 4]);
        assert_eq!(RangeAssignor.user_data(&[tp("t", 0)], 7), None);
        assert_eq!(RoundRobinAssignor.user_data(&[tp("t", 0)], 7), None);
    }

    #[test]
    fn subscription_round_trip() {
        let topics = topics_of(&["zeta", "alpha", "alpha"]);
        let owned = [tp("zeta", 1), tp("alpha", 2), tp("zeta", 0)];
        let input = SubscriptionInput { topics: &topics, owned: &owned, generation: 4, rack_id: Some("r1") };

        // Cooperative: owned partitions are sent, sorted and grouped.
        let bytes = encode_subscription(&CooperativeStickyAssignor, &input).unwrap();
        assert_eq!(&bytes[..2], &[0, 3], "written at version 3");
        let (version, raw) = consumer_protocol::decode_subscription(bytes.clone()).unwrap();
        assert_eq!(version, 3);
        assert_eq!(raw.topics, topics_of(&["alpha", "zeta"]));
        let grouped: Vec<(String, Vec<i32>)> =
            raw.owned_partitions.iter().map(|t| (t.topic.clone(), t.partitions.clone())).collect();
        assert_eq!(grouped, vec![("alpha".into(), vec![2]), ("zeta".into(), vec![0, 1])]);
        let decoded = decode_subscription("m-1", Some("i-1"), bytes).unwrap();
        assert_eq!(
            decoded,
            MemberSubscription {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                topics: topics_of(&["alpha", "zeta"]),
                user_data: Some(Bytes::from_static(&[0, 0, 0, 4])),
                owned_partitions: vec![tp("alpha", 2), tp("zeta", 0), tp("zeta", 1)],
                generation_id: 4,
                rack_id: Some("r1".into()),
            }
        );

        // Eager sticky: nothing owned on the wire, the previous assignment in the user data;
        // decoding takes it back from there.
        let bytes = encode_subscription(&StickyAssignor, &input).unwrap();
        let (_, raw) = consumer_protocol::decode_subscription(bytes.clone()).unwrap();
        assert!(raw.owned_partitions.is_empty());
        assert_eq!(raw.generation_id, 4);
        let decoded = decode_subscription("m-2", None, bytes).unwrap();
        assert_eq!(decoded.owned_partitions, vec![tp("alpha", 2), tp("zeta", 0), tp("zeta", 1)]);
        assert_eq!(decoded.generation_id, 4);
        assert_eq!(decoded.group_instance_id, None);

        // Range: no user data, nothing owned, no generation, empty rack sent as null.
        let fresh = SubscriptionInput { topics: &topics, owned: &[], generation: -7, rack_id: Some("") };
        let decoded = decode_subscription("m-3", None, encode_subscription(&RangeAssignor, &fresh).unwrap()).unwrap();
        assert_eq!(decoded, MemberSubscription { member_id: "m-3".into(), ..member("m-3", &["alpha", "zeta"]) });
    }

    fn old_subscription(version: i16, user_data: Option<Bytes>, owned: &[TopicPartition]) -> Bytes {
        let msg = ConsumerProtocolSubscription {
            topics: topics_of(&["t"]),
            user_data,
            owned_partitions: group_sorted(owned)
                .into_iter()
                .map(|(topic, partitions)| consumer_protocol_subscription::TopicPartition {
                    topic: topic.into(),
                    partitions,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        consumer_protocol::encode_subscription(&msg, version).unwrap()
    }

    #[test]
    fn decodes_v0_and_v1_subscriptions_with_sticky_user_data() {
        let previous = [tp("t", 0), tp("t", 3)];
        let v1_user_data = encode_sticky_user_data(&previous, 9);
        // v0: the fields did not exist; owned partitions and generation come from user data.
        let v0 = decode_subscription("m", None, old_subscription(0, Some(v1_user_data.clone()), &[])).unwrap();
        assert_eq!((v0.owned_partitions.clone(), v0.generation_id), (previous.to_vec(), 9));
        assert_eq!(v0.topics, topics_of(&["t"]));
        // Hand-written v0 bytes, as a 2.x Java member sends them.
        let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
        bytes.extend_from_slice(&i32::try_from(v1_user_data.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(&v1_user_data);
        assert_eq!(decode_subscription("m", None, Bytes::from(bytes)).unwrap(), v0);
        // v0 with user data v0 (no generation).
        let v0_user_data = v1_user_data.slice(..v1_user_data.len() - 4);
        let decoded = decode_subscription("m", None, old_subscription(0, Some(v0_user_data), &[])).unwrap();
        assert_eq!((decoded.owned_partitions, decoded.generation_id), (previous.to_vec(), -1));
        // v1 with empty owned partitions (an eager member) reads the user data as well.
        let v1 = decode_subscription("m", None, old_subscription(1, Some(v1_user_data.clone()), &[])).unwrap();
        assert_eq!((v1.owned_partitions, v1.generation_id), (previous.to_vec(), 9));
        // v1 with owned partitions keeps them.
        let v1 = decode_subscription("m", None, old_subscription(1, Some(v1_user_data), &[tp("t", 5)])).unwrap();
        assert_eq!((v1.owned_partitions, v1.generation_id), (vec![tp("t", 5)], -1));
        // Cooperative user data (an int32) is not mistaken for sticky user data.
        let coop =
            decode_subscription("m", None, old_subscription(1, Some(Bytes::from_static(&[0, 0, 0, 0])), &[])).unwrap();
        assert_eq!((coop.owned_partitions, coop.generation_id), (vec![], -1));

        // And the sticky assignor uses such a member's previous assignment.
        let ppt = counts(&[("t", 4)]);
        let members = [
            decode_subscription("a", None, old_subscription(0, Some(encode_sticky_user_data(&previous, 9)), &[]))
                .unwrap(),
            member("b", &["t"]),
        ];
        let result = StickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result["a"], previous.to_vec());
    }

    #[test]
    fn assignment_round_trip() {
        let partitions = [tp("t1", 0), tp("t0", 2), tp("t1", 1)];
        let bytes = encode_assignment(&partitions, None).unwrap();
        let expected: &[u8] = &[
            0, 3, // version
            0, 0, 0, 2, // two topics, in order of first appearance
            0, 2, b't', b'1', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, //
            0, 2, b't', b'0', 0, 0, 0, 1, 0, 0, 0, 2, //
            0xff, 0xff, 0xff, 0xff, // null user data
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(decode_assignment(bytes).unwrap(), vec![tp("t1", 0), tp("t1", 1), tp("t0", 2)]);
        let with_data = encode_assignment(&[], Some(Bytes::from_static(b"x"))).unwrap();
        assert_eq!(decode_assignment(with_data).unwrap(), vec![]);
        assert_eq!(decode_assignment(Bytes::new()).unwrap(), vec![]);
        // Version 0 from an old leader.
        let mut v0 = expected.to_vec();
        v0[1] = 0;
        assert_eq!(decode_assignment(Bytes::from(v0)).unwrap(), vec![tp("t1", 0), tp("t1", 1), tp("t0", 2)]);
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        let good = encode_subscription(
            &CooperativeStickyAssignor,
            &SubscriptionInput { topics: &topics_of(&["t"]), owned: &[tp("t", 0)], generation: 1, rack_id: None },
        )
        .unwrap();
        for bad in [
            Bytes::new(),
            Bytes::from_static(&[0]),
            Bytes::from_static(&[0xff, 0xff]),
            Bytes::from_static(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            good.slice(..good.len() - 3),
        ] {
            match decode_subscription("m", None, bad.clone()) {
                Err(Error::Protocol { broker, .. }) => assert!(broker.contains("member m"), "{broker}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(matches!(decode_assignment(Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0])), Err(Error::Protocol { .. })));
        assert!(matches!(decode_assignment(Bytes::from_static(&[0x80, 0])), Err(Error::Protocol { .. })));

        // Random bytes, and random corruptions of good ones: never a panic.
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let mut bytes = if rng.gen_bool(0.5) { good.to_vec() } else { vec![0u8; rng.gen_range(0..40)] };
            for b in bytes.iter_mut() {
                if rng.gen_bool(0.2) {
                    *b = rng.gen();
                }
            }
            bytes.truncate(rng.gen_range(0..=bytes.len()));
            let _ = decode_subscription("m", None, Bytes::from(bytes.clone()));
            let _ = decode_assignment(Bytes::from(bytes.clone()));
            // Garbage user data reaches the sticky assignors: treated as no previous assignment.
            let ppt = counts(&[("t", 3)]);
            let members = [
                MemberSubscription { user_data: Some(Bytes::from(bytes.clone())), ..member("a", &["t"]) },
                MemberSubscription { user_data: Some(Bytes::from(bytes)), ..member("b", &["t"]) },
            ];
            for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
                let result = assignor.assign(&ppt, &members).unwrap();
                check_valid(&ppt, &members, &result, true);
            }
        }
    }

    // --- sticky ----------------------------------------------------------------------------

    #[test]
    fn sticky_fresh_group_is_balanced() {
        let ppt = counts(&[("t1", 7), ("t2", 4)]);
        let members: Vec<_> = (0..3).map(|i| member(&format!("m{i}"), &["t1", "t2"])).collect();
        for assignor in [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor] {
            let result = assignor.assign(&ppt, &members).unwrap();
            check_valid(&ppt, &members, &result, true);
            check_balanced(&members, &result);
        }
    }

    #[test]
    fn sticky_member_joins_and_leaves() {
        let ppt = counts(&[("t", 12)]);
        let mut members: Vec<_> = (0..3).map(|i| member(&format!("m{i}"), &["t"])).collect();
        let first = StickyAssignor.assign(&ppt, &members).unwrap();
        check_balanced(&members, &first);

        // A fourth member joins: each keeps 3 of its 4, 9 of 12 stay put.
        members = first.iter().map(|(id, owned)| sticky_member(id, &["t"], owned, 1)).collect();
        members.push(member("m3", &["t"]));
        let second = StickyAssignor.assign(&ppt, &members).unwrap();
        check_valid(&ppt, &members, &second, true);
        check_balanced(&members, &second);
        let stayed = |a: &Assignment, b: &Assignment| {
            a.iter()
                .map(|(id, list)| list.iter().filter(|p| b.get(id).is_some_and(|l| l.contains(p))).count())
                .sum::<usize>()
        };
        assert_eq!(stayed(&first, &second), 9);

        // m1 leaves: the others keep everything and share its 3.
        members = second
            .iter()
            .filter(|(id, _)| id.as_str() != "m1")
            .map(|(id, owned)| sticky_member(id, &["t"], owned, 2))
            .collect();
        let third = StickyAssignor.assign(&ppt, &members).unwrap();
        check_valid(&ppt, &members, &third, true);
        check_balanced(&members, &third);
        assert_eq!(stayed(&second, &third), 9);
    }

    #[test]
    fn sticky_general_case_keeps_partitions_and_balances() {
        // Java AbstractStickyAssignorTest.testPoorRoundRobinAssignmentScenario, then a member
        // leaves.
        let ppt: BTreeMap<String, i32> = (1..=5).map(|i| (format!("topic{i}"), (i % 2) + 1)).collect();
        let all = ["topic1", "topic2", "topic3", "topic4", "topic5"];
        let members = vec![
            member("consumer1", &all),
            member("consumer2", &["topic1", "topic3", "topic5"]),
            member("consumer3", &["topic1", "topic3", "topic5"]),
            member("consumer4", &all),
        ];
        let first = StickyAssignor.assign(&ppt, &members).unwrap();
        check_valid(&ppt, &members, &first, true);
        check_balanced(&members, &first);

        let next: Vec<_> = members
            .iter()
            .filter(|m| m.member_id != "consumer3")
            .map(|m| {
                let topics: Vec<&str> = m.topics.iter().map(String::as_str).collect();
                sticky_member(&m.member_id, &topics, &first[&m.member_id], 1)
            })
            .collect();
        let second = StickyAssignor.assign(&ppt, &next).unwrap();
        check_valid(&ppt, &next, &second, true);
        check_balanced(&next, &second);
        for m in &next {
            for p in &first[&m.member_id] {
                assert!(second[&m.member_id].contains(p), "{p} left {}: {first:?} -> {second:?}", m.member_id);
            }
        }
    }

    #[test]
    fn sticky_highest_generation_wins_a_disputed_partition() {
        let ppt = counts(&[("t", 6)]);
        let members = [
            sticky_member("a", &["t"], &[tp("t", 0), tp("t", 1)], 5),
            sticky_member("b", &["t"], &[tp("t", 0), tp("t", 4)], 4),
            sticky_member("c", &["t"], &[tp("t", 2), tp("t", 3)], 5),
        ];
        let result = StickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[("a", &[("t", 0), ("t", 1)]), ("b", &[("t", 4), ("t", 5)]), ("c", &[("t", 2), ("t", 3)])])
        );
        // The same with cooperative members (generation in the subscription).
        let members = [
            coop_member("a", &["t"], &[tp("t", 0), tp("t", 1)], 5),
            coop_member("b", &["t"], &[tp("t", 0), tp("t", 4)], 4),
            coop_member("c", &["t"], &[tp("t", 2), tp("t", 3)], 5),
        ];
        let result = CooperativeStickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[("a", &[("t", 0), ("t", 1)]), ("b", &[("t", 4), ("t", 5)]), ("c", &[("t", 2), ("t", 3)])])
        );
    }

    #[test]
    fn sticky_same_generation_claims_are_dropped() {
        let ppt = counts(&[("t", 6)]);
        let members = [
            sticky_member("a", &["t"], &[tp("t", 0), tp("t", 1)], 5),
            sticky_member("b", &["t"], &[tp("t", 1), tp("t", 2)], 5),
            sticky_member("c", &["t"], &[tp("t", 3)], 5),
        ];
        let result = StickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(
            result,
            expected(&[("a", &[("t", 0), ("t", 1)]), ("b", &[("t", 2), ("t", 4)]), ("c", &[("t", 3), ("t", 5)])])
        );
        // Cooperative: t-1 is withheld this round (both claimants may still hold it).
        let members = [
            coop_member("a", &["t"], &[tp("t", 0), tp("t", 1)], 5),
            coop_member("b", &["t"], &[tp("t", 1), tp("t", 2)], 5),
            coop_member("c", &["t"], &[tp("t", 3)], 5),
        ];
        let result = CooperativeStickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result, expected(&[("a", &[("t", 0)]), ("b", &[("t", 2), ("t", 4)]), ("c", &[("t", 3), ("t", 5)])]));
    }

    #[test]
    fn sticky_drops_deleted_topics_and_unsubscribed_partitions() {
        let ppt = counts(&[("a", 2), ("b", 2)]);
        let members = [
            // Owned "gone" (deleted), "b" (no longer subscribed) and a partition out of range.
            sticky_member("m1", &["a", "gone"], &[tp("gone", 0), tp("b", 0), tp("a", 0), tp("a", 7)], 3),
            sticky_member("m2", &["a", "b"], &[tp("a", 1), tp("b", 1)], 3),
        ];
        // m1 keeps a-0 and loses b-0 (unsubscribed), which goes to m2, the only subscriber of
        // b; that leaves m1 with 1 and m2 with 3, so a-1 moves to m1.
        let result = StickyAssignor.assign(&ppt, &members).unwrap();
        check_valid(&ppt, &members, &result, true);
        assert_eq!(result, expected(&[("m1", &[("a", 0), ("a", 1)]), ("m2", &[("b", 0), ("b", 1)])]));
        // Cooperative: a-1 and b-0 change owner, so both wait for the next round.
        let members = [
            coop_member("m1", &["a", "gone"], &[tp("gone", 0), tp("b", 0), tp("a", 0), tp("a", 7)], 3),
            coop_member("m2", &["a", "b"], &[tp("a", 1), tp("b", 1)], 3),
        ];
        let result = CooperativeStickyAssignor.assign(&ppt, &members).unwrap();
        assert_eq!(result, expected(&[("m1", &[("a", 0)]), ("m2", &[("b", 1)])]));
        let (last, _) = run_cooperative(&ppt, members.to_vec());
        assert_eq!(last, expected(&[("m1", &[("a", 0), ("a", 1)]), ("m2", &[("b", 0), ("b", 1)])]));
    }

    #[test]
    fn sticky_general_case_prefers_the_previous_owner() {
        // z (generation 1) held x-0 before a (generation 2) took everything. When a must give
        // partitions up, x-0 goes back to z, although b is first among the least loaded.
        let ppt = counts(&[("x", 6), ("y", 1)]);
        let members = [
            sticky_member("a", &["x", "y"], &all_partitions(&ppt, "x"), 2),
            sticky_member("b", &["x"], &[], 2),
            sticky_member("z", &["x"], &[tp("x", 0)], 1),
        ];
        let result = StickyAssignor.assign(&ppt, &members).unwrap();
        check_valid(&ppt, &members, &result, true);
        assert_eq!(
            result,
            expected(&[
                ("a", &[("x", 4), ("x", 5), ("y", 0)]),
                ("b", &[("x", 1), ("x", 2)]),
                ("z", &[("x", 0), ("x", 3)]),
            ])
        );
    }

    // --- cooperative -----------------------------------------------------------------------

    #[test]
    fn cooperative_join_revokes_first_then_hands_over() {
        let ppt = counts(&[("t", 12)]);
        let ids: Vec<TopicPartition> = all_partitions(&ppt, "t");
        let members = vec![
            coop_member("m0", &["t"], &ids[..6], 3),
            coop_member("m1", &["t"], &ids[6..], 3),
            coop_member("m2", &["t"], &[], -1),
        ];
        let first = CooperativeStickyAssignor.assign(&ppt, &members).unwrap();
        check_no_direct_transfer(&members, &first);
        // Each old member keeps 4 and revokes 2; the newcomer waits.
        assert_eq!(first["m0"].len(), 4);
        assert_eq!(first["m1"].len(), 4);
        assert!(first["m2"].is_empty());
        assert!(first["m0"].iter().all(|p| ids[..6].contains(p)));
        let (last, rounds) = run_cooperative(&ppt, members);
        assert_eq!(rounds, 3, "revoke, hand over, stable");
        assert!(last.values().all(|l| l.len() == 4));
    }

    #[test]
    fn cooperative_general_case_withholds_moving_partitions() {
        // m0 owns everything; m1 joins subscribing to one of the two topics.
        let ppt = counts(&[("a", 4), ("b", 4)]);
        let everything: Vec<_> = all_partitions(&ppt, "a").into_iter().chain(all_partitions(&ppt, "b")).collect();
        let members = vec![coop_member("m0", &["a", "b"], &everything, 2), coop_member("m1", &["b"], &[], -1)];
        let first = CooperativeStickyAssignor.assign(&ppt, &members).unwrap();
        check_no_direct_transfer(&members, &first);
        assert!(first["m1"].is_empty());
        assert_eq!(first["m0"].len(), 4, "{first:?}");
        let (last, _) = run_cooperative(&ppt, members.clone());
        check_balanced(&members, &last);
        assert_eq!(last["m1"].len(), 4);
        // The eager sticky assignor moves them at once.
        let eager: Vec<_> = vec![sticky_member("m0", &["a", "b"], &everything, 2), member("m1", &["b"])];
        let result = StickyAssignor.assign(&ppt, &eager).unwrap();
        assert_eq!((result["m0"].len(), result["m1"].len()), (4, 4));
    }

    // --- properties ------------------------------------------------------------------------

    struct Case {
        ppt: BTreeMap<String, i32>,
        topics: Vec<Vec<String>>,
        owned: Vec<Vec<TopicPartition>>,
        generations: Vec<i32>,
        ids: Vec<String>,
    }

    fn random_case(rng: &mut StdRng) -> Case {
        let topic_names: Vec<String> = (0..rng.gen_range(1..=4)).map(|i| format!("t{i}")).collect();
        let mut ppt: BTreeMap<String, i32> = topic_names.iter().map(|t| (t.clone(), rng.gen_range(0..=12))).collect();
        if rng.gen_bool(0.2) {
            ppt.remove(&topic_names[0]);
        }
        let n = rng.gen_range(1..=8);
        let ids: Vec<String> = (0..n).map(|i| format!("{}-{i}", ["x", "consumer", "a"][rng.gen_range(0..3)])).collect();
        let equal = rng.gen_bool(0.5);
        let shared: Vec<String> = topic_names.iter().filter(|_| rng.gen_bool(0.7)).cloned().collect::<Vec<_>>();
        let topics: Vec<Vec<String>> = (0..n)
            .map(|_| {
                if equal {
                    shared.clone()
                } else {
                    topic_names.iter().filter(|_| rng.gen_bool(0.5)).cloned().collect()
                }
            })
            .collect();
        // A consistent previous assignment (one owner per partition), including partitions of
        // deleted topics, out of range, or of topics the owner no longer subscribes to.
        let mut owned = vec![Vec::new(); n];
        for t in &topic_names {
            for p in 0..14 {
                if rng.gen_bool(0.6) {
                    owned[rng.gen_range(0..n)].push(tp(t, p));
                }
            }
        }
        let generation = rng.gen_range(1..50);
        let generations = (0..n).map(|_| if rng.gen_bool(0.2) { generation - 1 } else { generation }).collect();
        Case { ppt, topics, owned, generations, ids }
    }

    fn sticky_members(case: &Case) -> Vec<MemberSubscription> {
        (0..case.ids.len())
            .map(|i| {
                let topics: Vec<&str> = case.topics[i].iter().map(String::as_str).collect();
                sticky_member(&case.ids[i], &topics, &case.owned[i], case.generations[i])
            })
            .collect()
    }

    fn coop_members(case: &Case) -> Vec<MemberSubscription> {
        (0..case.ids.len())
            .map(|i| {
                let topics: Vec<&str> = case.topics[i].iter().map(String::as_str).collect();
                coop_member(&case.ids[i], &topics, &case.owned[i], case.generations[i])
            })
            .collect()
    }

    /// In a group with equal subscriptions, each member keeps at least as many of its valid
    /// previous partitions as the minimum quota allows.
    fn check_sticky_quota(
        ppt: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
        owned: &[Vec<TopicPartition>],
        result: &Assignment,
    ) {
        let first: BTreeSet<&String> = members[0].topics.iter().collect();
        if !members.iter().all(|m| m.topics.iter().collect::<BTreeSet<_>>() == first) {
            return;
        }
        let total: usize =
            first.iter().map(|t| usize::try_from(ppt.get(*t).copied().unwrap_or(0).max(0)).unwrap()).sum();
        let min_quota = total / members.len();
        for (m, previous) in members.iter().zip(owned) {
            let valid: BTreeSet<&TopicPartition> = previous
                .iter()
                .filter(|p| first.contains(&p.topic) && p.partition < ppt.get(&p.topic).copied().unwrap_or(0))
                .collect();
            let kept = result[&m.member_id].iter().filter(|p| valid.contains(p)).count();
            assert!(kept >= valid.len().min(min_quota), "{} kept {kept} of {valid:?}: {result:?}", m.member_id);
        }
    }

    #[test]
    fn randomized_sticky_invariants() {
        let mut rng = StdRng::seed_from_u64(0x5717_c4c4);
        for case_no in 0..400 {
            let case = random_case(&mut rng);

            let members = sticky_members(&case);
            let result = StickyAssignor.assign(&case.ppt, &members).unwrap();
            check_valid(&case.ppt, &members, &result, true);
            check_balanced(&members, &result);
            check_sticky_quota(&case.ppt, &members, &case.owned, &result);
            let mut shuffled = members.clone();
            shuffled.shuffle(&mut rng);
            assert_eq!(StickyAssignor.assign(&case.ppt, &shuffled).unwrap(), result, "case {case_no}: order matters");
            // Assigning again from the result changes nothing when subscriptions are equal.
            let again: Vec<_> = members
                .iter()
                .map(|m| {
                    let topics: Vec<&str> = m.topics.iter().map(String::as_str).collect();
                    sticky_member(&m.member_id, &topics, &result[&m.member_id], 60)
                })
                .collect();
            let second = StickyAssignor.assign(&case.ppt, &again).unwrap();
            check_valid(&case.ppt, &again, &second, true);
            check_balanced(&again, &second);
            let first_topics: BTreeSet<&String> = members[0].topics.iter().collect();
            if members.iter().all(|m| m.topics.iter().collect::<BTreeSet<_>>() == first_topics) {
                assert_eq!(second, result, "case {case_no}: not stable");
            }

            let members = coop_members(&case);
            let first = CooperativeStickyAssignor.assign(&case.ppt, &members).unwrap();
            check_sticky_quota(&case.ppt, &members, &case.owned, &first);
            let (last, rounds) = run_cooperative(&case.ppt, members.clone());
            assert!(rounds <= 4, "case {case_no}: {rounds} rounds");
            check_balanced(&members, &last);
        }
    }

    #[test]
    fn large_groups_are_fast() {
        let ppt: BTreeMap<String, i32> = (0..10).map(|i| (format!("topic-{i}"), 100)).collect();
        let all: Vec<&str> = ppt.keys().map(String::as_str).collect();
        let mut rng = StdRng::seed_from_u64(1);
        let equal: Vec<_> = (0..100).map(|i| member(&format!("member-{i:03}"), &all)).collect();
        let mixed: Vec<_> = (0..100)
            .map(|i| {
                let mut topics = all.clone();
                topics.shuffle(&mut rng);
                member(&format!("member-{i:03}"), &topics[..5])
            })
            .collect();
        let mut worst = Duration::ZERO;
        for (what, members) in [("equal", equal), ("mixed", mixed)] {
            for assignor in
                [&StickyAssignor as &dyn Assignor, &CooperativeStickyAssignor, &RangeAssignor, &RoundRobinAssignor]
            {
                let start = Instant::now();
                let first = assignor.assign(&ppt, &members).unwrap();
                let fresh = start.elapsed();
                check_valid(&ppt, &members, &first, true);
                // A member leaves; the rest come back with what they had.
                let next: Vec<_> = members[1..]
                    .iter()
                    .map(|m| {
                        let topics: Vec<&str> = m.topics.iter().map(String::as_str).collect();
                        if assignor.protocol() == RebalanceProtocol::Cooperative {
                            coop_member(&m.member_id, &topics, &first[&m.member_id], 1)
                        } else {
                            sticky_member(&m.member_id, &topics, &first[&m.member_id], 1)
                        }
                    })
                    .collect();
                let start = Instant::now();
                let second = assignor.assign(&ppt, &next).unwrap();
                let rejoin = start.elapsed();
                check_valid(&ppt, &next, &second, assignor.protocol() == RebalanceProtocol::Eager);
                if assignor.name().contains("sticky") {
                    check_balanced(&members, &first);
                }
                println!("{what} {}: fresh {fresh:?}, after a member left {rejoin:?}", assignor.name());
                worst = worst.max(fresh).max(rejoin);
            }
        }
        // Well under 100 ms in a debug build on an idle machine; the bound leaves room for a
        // loaded one.
        assert!(worst < Duration::from_millis(500), "{worst:?}");
    }
}
