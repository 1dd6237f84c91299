//! Consumer groups of the next-generation protocol (KIP-848) over real TCP with raw requests:
//! ConsumerGroupHeartbeat (join, assignment, revoke before reassign, leave, static leave),
//! each of its error answers, ConsumerGroupDescribe, the group in ListGroups /
//! DescribeGroups / OffsetCommit / OffsetFetch / DeleteGroups, classic and consumer groups
//! refusing each other, and the fault API (`advance_clock` expiring sessions and
//! revocations, `move_coordinator`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::*;
use kafka_broker::Cluster;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::primitives::Uuid;
use kafka_protocol::{ApiKey, ErrorCode, Request};
use tokio::net::TcpStream;

const TOPIC: &str = "kip848";

struct Client {
    s: TcpStream,
    corr: i32,
}

impl Client {
    async fn to(cluster: &Cluster, node: i32) -> Client {
        Client { s: connect_to(cluster, node).await, corr: 0 }
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        self.corr += 1;
        call(&mut self.s, self.corr, req, version).await
    }
}

async fn coordinator(cluster: &Cluster, group: &str) -> Client {
    let node = cluster.group_coordinator(group).await.unwrap();
    Client::to(cluster, node).await
}

/// A cluster of two brokers with a 4-partition topic; its id.
async fn setup() -> (Cluster, Uuid) {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic(TOPIC, 4, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let md = c
        .call(
            &MetadataRequest {
                topics: Some(vec![metadata_request::MetadataRequestTopic {
                    name: Some(TOPIC.into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            12,
        )
        .await;
    (cluster, md.topics[0].topic_id)
}

fn join(group: &str, member: &str) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 5000,
        subscribed_topic_names: Some(vec![TOPIC.into()]),
        topic_partitions: Some(vec![]),
        ..Default::default()
    }
}

fn beat(group: &str, member: &str, epoch: i32, topic: Uuid, owned: &[i32]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        topic_partitions: Some(vec![TopicPartitions {
            topic_id: topic,
            partitions: owned.to_vec(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn parts(r: &ConsumerGroupHeartbeatResponse) -> Option<Vec<i32>> {
    r.assignment.as_ref().map(|a| {
        let mut v: Vec<i32> = a.topic_partitions.iter().flat_map(|tp| tp.partitions.iter().copied()).collect();
        v.sort_unstable();
        v
    })
}

fn code(r: &ConsumerGroupHeartbeatResponse) -> ErrorCode {
    ErrorCode::from(r.error_code)
}

#[tokio::test]
async fn api_versions_advertise_the_kip848_apis() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let r = c.call(&ApiVersionsRequest::default(), 3).await;
    for (api, max) in [(ApiKey::ConsumerGroupHeartbeat, 1), (ApiKey::ConsumerGroupDescribe, 0)] {
        let v = r.api_keys.iter().find(|k| k.api_key == api.key()).expect("advertised");
        assert_eq!((v.min_version, v.max_version), (0, max));
    }
}

#[tokio::test]
async fn members_join_revoke_before_reassign_and_leave() {
    let (cluster, topic) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    // v0: the coordinator names the member.
    let a = c.call(&join("g", ""), 0).await;
    assert_eq!(code(&a), ErrorCode::None);
    let a_id = a.member_id.clone().unwrap();
    assert!(!a_id.is_empty());
    assert_eq!((a.member_epoch, a.heartbeat_interval_ms, parts(&a)), (1, 5000, Some(vec![0, 1, 2, 3])));
    // v1: the client names itself. b waits for partitions a still owns.
    let b = c.call(&join("g", "member-b"), 1).await;
    assert_eq!((b.member_id.as_deref(), b.member_epoch, parts(&b)), (Some("member-b"), 2, Some(vec![])));
    let a2 = c.call(&beat("g", &a_id, 1, topic, &[0, 1, 2, 3]), 1).await;
    assert_eq!(a2.member_epoch, 1, "a stays at its epoch until it revokes");
    let kept = parts(&a2).unwrap();
    assert_eq!(kept.len(), 2);
    let b2 = c.call(&beat("g", "member-b", 2, topic, &[]), 1).await;
    assert_eq!(b2.assignment, None, "nothing released yet, nothing changed");
    let described =
        c.call(&ConsumerGroupDescribeRequest { group_ids: vec!["g".into()], ..Default::default() }, 0).await;
    let g = &described.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str(), g.group_epoch, g.assignment_epoch), (0, "Reconciling", 2, 2));
    assert_eq!(g.assignor_name, "uniform");
    let bd = g.members.iter().find(|m| m.member_id == "member-b").unwrap();
    assert_eq!(bd.target_assignment.topic_partitions[0].topic_name, TOPIC);
    assert!(bd.assignment.topic_partitions.is_empty());
    // a acknowledges; b gets the rest.
    let a3 = c.call(&beat("g", &a_id, 1, topic, &kept), 1).await;
    assert_eq!(a3.member_epoch, 2);
    let b3 = c.call(&beat("g", "member-b", 2, topic, &[]), 1).await;
    let mut all = kept.clone();
    all.extend(parts(&b3).unwrap());
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3]);
    let described =
        c.call(&ConsumerGroupDescribeRequest { group_ids: vec!["g".into()], ..Default::default() }, 0).await;
    assert_eq!(described.groups[0].group_state, "Stable");
    // b leaves: a gets everything at the next epoch.
    let left =
        c.call(&ConsumerGroupHeartbeatRequest { member_epoch: -1, ..beat("g", "member-b", -1, topic, &[]) }, 1).await;
    assert_eq!((code(&left), left.member_epoch), (ErrorCode::None, -1));
    let a4 = c.call(&beat("g", &a_id, 2, topic, &kept), 1).await;
    assert_eq!((a4.member_epoch, parts(&a4)), (3, Some(vec![0, 1, 2, 3])));
    cluster.shutdown().await;
}

#[tokio::test]
async fn every_error_answer() {
    let (cluster, topic) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    let invalid = [
        ConsumerGroupHeartbeatRequest { member_id: String::new(), ..join("g", "") },
        ConsumerGroupHeartbeatRequest { group_id: String::new(), ..join("g", "m") },
        ConsumerGroupHeartbeatRequest { rebalance_timeout_ms: -1, ..join("g", "m") },
        ConsumerGroupHeartbeatRequest { topic_partitions: None, ..join("g", "m") },
        ConsumerGroupHeartbeatRequest { subscribed_topic_names: None, ..join("g", "m") },
        ConsumerGroupHeartbeatRequest { instance_id: Some(String::new()), ..join("g", "m") },
        ConsumerGroupHeartbeatRequest { member_epoch: -3, ..join("g", "m") },
    ];
    for req in invalid {
        let r = c.call(&req, 1).await;
        assert_eq!(code(&r), ErrorCode::InvalidRequest, "{req:?}");
        assert!(r.error_message.is_some());
    }
    let r =
        c.call(&ConsumerGroupHeartbeatRequest { server_assignor: Some("sticky".into()), ..join("g", "m") }, 1).await;
    assert_eq!(code(&r), ErrorCode::UnsupportedAssignor);
    let r =
        c.call(&ConsumerGroupHeartbeatRequest { subscribed_topic_regex: Some("(".into()), ..join("g", "m") }, 1).await;
    assert_eq!(code(&r), ErrorCode::InvalidRegularExpression);
    // Heartbeats into a group that does not exist.
    let mut n = coordinator(&cluster, "nope").await;
    assert_eq!(code(&n.call(&beat("nope", "m", 1, topic, &[]), 1).await), ErrorCode::GroupIdNotFound);
    // A member, then the epoch checks.
    assert_eq!(code(&c.call(&join("g", "m"), 1).await), ErrorCode::None);
    assert_eq!(code(&c.call(&beat("g", "m", 7, topic, &[]), 1).await), ErrorCode::FencedMemberEpoch);
    assert_eq!(code(&c.call(&beat("g", "other", 1, topic, &[]), 1).await), ErrorCode::UnknownMemberId);
    // Static members.
    let s = ConsumerGroupHeartbeatRequest { instance_id: Some("i".into()), ..join("g", "s1") };
    assert_eq!(code(&c.call(&s, 1).await), ErrorCode::None);
    let s2 = ConsumerGroupHeartbeatRequest { instance_id: Some("i".into()), ..join("g", "s2") };
    assert_eq!(code(&c.call(&s2, 1).await), ErrorCode::UnreleasedInstanceId);
    let wrong = ConsumerGroupHeartbeatRequest { instance_id: Some("i".into()), ..beat("g", "s2", 2, topic, &[]) };
    assert_eq!(code(&c.call(&wrong, 1).await), ErrorCode::FencedInstanceId);
    let leave = ConsumerGroupHeartbeatRequest {
        member_epoch: -2,
        instance_id: Some("i".into()),
        ..beat("g", "s1", -2, topic, &[])
    };
    let r = c.call(&leave, 1).await;
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::None, -2));
    assert_eq!(code(&c.call(&s2, 1).await), ErrorCode::None, "the instance id was released");
    // Another broker is not the coordinator.
    let node = cluster.group_coordinator("g").await.unwrap();
    let mut other = Client::to(&cluster, if node == 1 { 2 } else { 1 }).await;
    assert_eq!(code(&other.call(&beat("g", "m", 1, topic, &[]), 1).await), ErrorCode::NotCoordinator);
    let d = other.call(&ConsumerGroupDescribeRequest { group_ids: vec!["g".into()], ..Default::default() }, 0).await;
    assert_eq!(d.groups[0].error_code, ErrorCode::NotCoordinator.code());
    // A group with a maximum size.
    let small = Cluster::builder().broker_config("group.consumer.max.size", "1").start().await.unwrap();
    small.create_topic(TOPIC, 1, 1).await.unwrap();
    let mut s = Client::to(&small, 1).await;
    assert_eq!(code(&s.call(&join("g", "a"), 1).await), ErrorCode::None);
    assert_eq!(code(&s.call(&join("g", "b"), 1).await), ErrorCode::GroupMaxSizeReached);
    small.shutdown().await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn classic_and_consumer_groups_refuse_each_other() {
    let (cluster, _) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    assert_eq!(code(&c.call(&join("g", "m"), 1).await), ErrorCode::None);
    let classic = JoinGroupRequest {
        group_id: "g".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 10_000,
        member_id: String::new(),
        protocol_type: "consumer".into(),
        protocols: vec![JoinGroupRequestProtocol { name: "range".into(), ..Default::default() }],
        ..Default::default()
    };
    let r = c.call(&classic, 9).await;
    assert_eq!(ErrorCode::from(r.error_code), ErrorCode::InconsistentGroupProtocol);
    // A classic group with members is not a consumer group.
    let mut k = coordinator(&cluster, "classic").await;
    let first = k.call(&JoinGroupRequest { group_id: "classic".into(), ..classic.clone() }, 3).await;
    assert_eq!(first.error_code, 0);
    let r = k.call(&join("classic", "m"), 1).await;
    assert_eq!(code(&r), ErrorCode::GroupIdNotFound);
    // The consumer group, described by the classic APIs.
    let listed = c.call(&ListGroupsRequest { types_filter: vec!["consumer".into()], ..Default::default() }, 5).await;
    let g: Vec<_> = listed.groups.iter().filter(|g| g.group_id == "g").collect();
    assert_eq!(g.len(), 1);
    assert_eq!(
        (g[0].group_type.as_str(), g[0].protocol_type.as_str(), g[0].group_state.as_str()),
        ("consumer", "consumer", "Stable")
    );
    let classic_only =
        c.call(&ListGroupsRequest { types_filter: vec!["classic".into()], ..Default::default() }, 5).await;
    assert!(classic_only.groups.iter().all(|g| g.group_id != "g"));
    let d = c.call(&DescribeGroupsRequest { groups: vec!["g".into()], ..Default::default() }, 5).await;
    assert_eq!(
        (d.groups[0].error_code, d.groups[0].group_state.as_str()),
        (0, "Dead"),
        "Kafka before DescribeGroups v6"
    );
    let d = k.call(&ConsumerGroupDescribeRequest { group_ids: vec!["classic".into()], ..Default::default() }, 0).await;
    assert_eq!(d.groups[0].error_code, ErrorCode::GroupIdNotFound.code());
    // Delete refuses a group with members.
    let r = c.call(&DeleteGroupsRequest { groups_names: vec!["g".into()], ..Default::default() }, 2).await;
    assert_eq!(r.results[0].error_code, ErrorCode::NonEmptyGroup.code());
    cluster.shutdown().await;
}

fn commit(group: &str, member: &str, epoch: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: epoch,
        member_id: member.into(),
        topics: vec![OffsetCommitRequestTopic {
            name: TOPIC.into(),
            partitions: vec![OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: offset,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn fetch(group: &str, member: Option<&str>, epoch: i32) -> OffsetFetchRequest {
    OffsetFetchRequest {
        groups: vec![OffsetFetchRequestGroup {
            group_id: group.into(),
            member_id: member.map(str::to_string),
            member_epoch: epoch,
            topics: None,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test]
async fn offsets_are_committed_and_fetched_at_the_member_epoch() {
    let (cluster, topic) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    let a = c.call(&join("g", "a"), 1).await;
    assert_eq!(a.member_epoch, 1);
    let err = |r: &OffsetCommitResponse| ErrorCode::from(r.topics[0].partitions[0].error_code);
    assert_eq!(err(&c.call(&commit("g", "a", 1, 10), 9).await), ErrorCode::None);
    assert_eq!(err(&c.call(&commit("g", "a", 0, 11), 9).await), ErrorCode::StaleMemberEpoch);
    assert_eq!(err(&c.call(&commit("g", "x", 1, 11), 9).await), ErrorCode::UnknownMemberId);
    assert_eq!(err(&c.call(&commit("g", "", -1, 11), 9).await), ErrorCode::UnknownMemberId, "the group has members");
    assert_eq!(err(&c.call(&commit("g", "a", 1, 11), 8).await), ErrorCode::UnsupportedVersion);
    let f = c.call(&fetch("g", Some("a"), 1), 9).await;
    assert_eq!(f.groups[0].error_code, 0);
    assert_eq!(f.groups[0].topics[0].partitions[0].committed_offset, 10);
    assert_eq!(c.call(&fetch("g", Some("a"), 0), 9).await.groups[0].error_code, ErrorCode::StaleMemberEpoch.code());
    assert_eq!(c.call(&fetch("g", Some("x"), 1), 9).await.groups[0].error_code, ErrorCode::UnknownMemberId.code());
    assert_eq!(c.call(&fetch("g", None, -1), 9).await.groups[0].error_code, 0, "the admin client's fetch");
    // Once empty, anyone commits and the group can be deleted with its offsets.
    c.call(&ConsumerGroupHeartbeatRequest { member_epoch: -1, ..beat("g", "a", -1, topic, &[]) }, 1).await;
    assert_eq!(err(&c.call(&commit("g", "", -1, 12), 9).await), ErrorCode::None);
    let r = c.call(&DeleteGroupsRequest { groups_names: vec!["g".into()], ..Default::default() }, 2).await;
    assert_eq!(r.results[0].error_code, 0);
    let d = c.call(&ConsumerGroupDescribeRequest { group_ids: vec!["g".into()], ..Default::default() }, 0).await;
    assert_eq!(d.groups[0].error_code, ErrorCode::GroupIdNotFound.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn sessions_and_revocations_expire_on_the_cluster_clock() {
    // Deadlines count from the cluster clock, which also moves with real time: the margins
    // (10 s) keep a slow machine from passing a deadline before the test does.
    let cluster =
        Cluster::builder().broker_config("group.consumer.session.timeout.ms", "120000").start().await.unwrap();
    cluster.create_topic(TOPIC, 4, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let a = c.call(&ConsumerGroupHeartbeatRequest { rebalance_timeout_ms: 60_000, ..join("g", "a") }, 1).await;
    assert_eq!(parts(&a), Some(vec![0, 1, 2, 3]));
    let topic = a.assignment.unwrap().topic_partitions[0].topic_id;
    c.call(&join("g", "b"), 1).await;
    let a2 = c.call(&beat("g", "a", 1, topic, &[0, 1, 2, 3]), 1).await;
    assert_eq!(parts(&a2).unwrap().len(), 2, "asked to revoke two");
    let members = |d: &ConsumerGroupDescribeResponse| d.groups[0].members.len();
    let describe = ConsumerGroupDescribeRequest { group_ids: vec!["g".into()], ..Default::default() };
    // a never acknowledges: after its rebalance timeout (60 s) it is fenced and b gets all.
    cluster.advance_clock(50_000).await.unwrap();
    assert_eq!(members(&c.call(&describe, 0).await), 2, "not yet");
    let b = c.call(&beat("g", "b", 2, topic, &[]), 1).await;
    assert_eq!(b.assignment, None, "a still owns everything");
    cluster.advance_clock(10_000).await.unwrap();
    assert_eq!(members(&c.call(&describe, 0).await), 1, "a was fenced");
    let b = c.call(&beat("g", "b", 2, topic, &[]), 1).await;
    assert_eq!((b.member_epoch, parts(&b)), (3, Some(vec![0, 1, 2, 3])));
    assert_eq!(code(&c.call(&beat("g", "a", 1, topic, &[]), 1).await), ErrorCode::UnknownMemberId);
    // b stops heartbeating: gone after group.consumer.session.timeout.ms.
    cluster.advance_clock(110_000).await.unwrap();
    assert_eq!(members(&c.call(&describe, 0).await), 1, "not yet");
    cluster.advance_clock(10_000).await.unwrap();
    let d = c.call(&describe, 0).await;
    assert_eq!((d.groups[0].group_state.as_str(), members(&d)), ("Empty", 0));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_moved_coordinator_answers_not_coordinator_until_rediscovered() {
    let (cluster, topic) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    let a = c.call(&join("g", "a"), 1).await;
    assert_eq!(a.member_epoch, 1);
    let to = cluster.move_coordinator("g").await.unwrap();
    assert_eq!(code(&c.call(&beat("g", "a", 1, topic, &[0, 1, 2, 3]), 1).await), ErrorCode::NotCoordinator);
    let mut moved = Client::to(&cluster, to).await;
    let find = moved.call(&FindCoordinatorRequest { key: "g".into(), key_type: 0, ..Default::default() }, 3).await;
    assert_eq!(find.node_id, to);
    let r = moved.call(&beat("g", "a", 1, topic, &[0, 1, 2, 3]), 1).await;
    assert_eq!((code(&r), r.member_epoch), (ErrorCode::None, 1), "the group moved with its members");
    cluster.shutdown().await;
}

#[tokio::test]
async fn new_partitions_and_matching_topics_are_assigned() {
    let (cluster, topic) = setup().await;
    let mut c = coordinator(&cluster, "g").await;
    let re = ConsumerGroupHeartbeatRequest {
        subscribed_topic_names: None,
        subscribed_topic_regex: Some("kip8.*".into()),
        ..join("g", "a")
    };
    let a = c.call(&re, 1).await;
    assert_eq!((a.member_epoch, parts(&a)), (1, Some(vec![0, 1, 2, 3])));
    cluster.create_topic("kip848-more", 2, 1).await.unwrap();
    cluster.create_topic("unrelated", 2, 1).await.unwrap();
    let a = c.call(&beat("g", "a", 1, topic, &[0, 1, 2, 3]), 1).await;
    assert_eq!(a.member_epoch, 2);
    let topics = a.assignment.unwrap().topic_partitions;
    assert_eq!(topics.len(), 2, "the new matching topic, not the unrelated one");
    cluster.shutdown().await;
}
