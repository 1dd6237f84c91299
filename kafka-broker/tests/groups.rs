//! The group coordinator over real TCP with raw requests: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete, ListGroups,
//! DescribeGroups, DeleteGroups, static membership, timeouts (driven by `advance_clock`) and
//! coordinator moves.
//!
//! A JoinGroup or SyncGroup that must wait occupies its connection, so each member has its
//! own. Waiting is never checked by sleeping: an answer's content (its generation, its
//! members, the leader's assignment) shows what it waited for.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use bytes::Bytes;
use common::*;
use kafka_broker::{Cluster, ErrorScope};
use kafka_protocol::consumer_protocol::encode_subscription;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::{ApiKey, ErrorCode, Request};
use tokio::net::TcpStream;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 5_000;

/// One connection with its own correlation ids.
struct Client {
    s: TcpStream,
    corr: i32,
}

impl Client {
    async fn to(cluster: &Cluster, node: i32) -> Client {
        Client { s: connect_to(cluster, node).await, corr: 0 }
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> R::Response {
        let c = self.send(req, version).await;
        self.recv::<R>(c, version).await
    }

    async fn send<R: Request>(&mut self, req: &R, version: i16) -> i32 {
        self.corr += 1;
        send(&mut self.s, self.corr, req, version).await;
        self.corr
    }

    async fn recv<R: Request>(&mut self, corr: i32, version: i16) -> R::Response {
        recv::<R>(&mut self.s, corr, version).await
    }
}

/// The coordinator of `group`, asked of broker 1 with FindCoordinator v3.
async fn coordinator(cluster: &Cluster, group: &str) -> i32 {
    let mut c = Client::to(cluster, 1).await;
    let r = c.call(&FindCoordinatorRequest { key: group.into(), key_type: 0, ..Default::default() }, 3).await;
    assert_eq!(r.error_code, 0);
    r.node_id
}

/// A connection to `group`'s coordinator.
async fn member_conn(cluster: &Cluster, group: &str) -> Client {
    let node = coordinator(cluster, group).await;
    Client::to(cluster, node).await
}

fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription { topics: topics.iter().map(|t| t.to_string()).collect(), ..Default::default() };
    encode_subscription(&sub, 1).unwrap()
}

fn join_req(group: &str, member: &str, instance: Option<&str>, protocols: &[(&str, Bytes)]) -> JoinGroupRequest {
    JoinGroupRequest {
        group_id: group.into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        member_id: member.into(),
        group_instance_id: instance.map(str::to_string),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|(n, m)| JoinGroupRequestProtocol { name: (*n).into(), metadata: m.clone(), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

fn range(topics: &[&str]) -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(topics))]
}

fn sync_req(group: &str, generation: i32, member: &str, assignments: &[(&str, &[u8])]) -> SyncGroupRequest {
    SyncGroupRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        assignments: assignments
            .iter()
            .map(|(m, a)| SyncGroupRequestAssignment {
                member_id: (*m).into(),
                assignment: Bytes::copy_from_slice(a),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn hb(group: &str, generation: i32, member: &str) -> HeartbeatRequest {
    HeartbeatRequest {
        group_id: group.into(),
        generation_id: generation,
        member_id: member.into(),
        ..Default::default()
    }
}

fn leave(group: &str, members: &[(&str, Option<&str>)]) -> LeaveGroupRequest {
    LeaveGroupRequest {
        group_id: group.into(),
        members: members
            .iter()
            .map(|(m, i)| MemberIdentity {
                member_id: (*m).into(),
                group_instance_id: i.map(str::to_string),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn commit_req(group: &str, generation: i32, member: &str, offsets: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o) in offsets {
        let part = OffsetCommitRequestPartition {
            partition_index: *p,
            committed_offset: *o,
            committed_leader_epoch: 3,
            committed_metadata: Some(format!("meta-{p}")),
            ..Default::default()
        };
        match topics.iter_mut().find(|x| x.name == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(OffsetCommitRequestTopic {
                name: (*t).into(),
                partitions: vec![part],
                ..Default::default()
            }),
        }
    }
    OffsetCommitRequest {
        group_id: group.into(),
        generation_id_or_member_epoch: generation,
        member_id: member.into(),
        group_instance_id: None,
        topics,
        ..Default::default()
    }
}

/// The error codes of an OffsetCommit answer, in order.
fn commit_errors(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
}

fn fetch_req_v7(group: &str, topics: Option<&[(&str, &[i32])]>) -> OffsetFetchRequest {
    OffsetFetchRequest {
        group_id: group.into(),
        topics: topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| OffsetFetchRequestTopic {
                    name: (*t).into(),
                    partition_indexes: ps.to_vec(),
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// Joins a new member (v5: MEMBER_ID_REQUIRED, then again with the id) into a group with no
/// other members, and syncs it as the leader with `assignment`. Returns its member id.
async fn solo_member(c: &mut Client, group: &str, topics: &[&str], assignment: &[u8]) -> String {
    let r = c.call(&join_req(group, "", None, &range(topics)), 5).await;
    assert_eq!(r.error_code, ErrorCode::MemberIdRequired.code());
    let id = r.member_id;
    let r = c.call(&join_req(group, &id, None, &range(topics)), 5).await;
    assert_eq!((r.error_code, r.leader.as_str()), (0, id.as_str()));
    let s = c.call(&sync_req(group, r.generation_id, &id, &[(&id, assignment)]), 3).await;
    assert_eq!((s.error_code, &s.assignment[..]), (0, assignment));
    id
}

async fn describe(c: &mut Client, group: &str) -> describe_groups_response::DescribedGroup {
    let r = c.call(&DescribeGroupsRequest { groups: vec![group.into()], ..Default::default() }, 5).await;
    r.groups.into_iter().next().unwrap()
}

#[tokio::test]
async fn find_coordinator_single_and_batched_keys_name_the_same_live_broker() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let groups: Vec<String> = (0..12).map(|i| format!("group-{i}")).collect();
    let mut c = Client::to(&cluster, 2).await;
    let batched = c
        .call(&FindCoordinatorRequest { key_type: 0, coordinator_keys: groups.clone(), ..Default::default() }, 4)
        .await;
    let mut nodes = std::collections::BTreeSet::new();
    for (g, coord) in groups.iter().zip(&batched.coordinators) {
        assert_eq!((&coord.key, coord.error_code), (g, 0));
        for v in 0..=3 {
            let single = c.call(&FindCoordinatorRequest { key: g.clone(), ..Default::default() }, v).await;
            assert_eq!((single.error_code, single.node_id, single.port), (0, coord.node_id, coord.port), "v{v}");
        }
        let txn = c
            .call(&FindCoordinatorRequest { key_type: 1, coordinator_keys: vec![g.clone()], ..Default::default() }, 6)
            .await;
        assert_eq!(txn.coordinators[0].node_id, coord.node_id, "transactional ids are placed the same way");
        assert_eq!(cluster.group_coordinator(g).await.unwrap(), coord.node_id);
        let addr = cluster.broker_addrs().into_iter().find(|(id, _)| *id == coord.node_id).unwrap().1;
        assert_eq!(coord.port, i32::from(addr.port()));
        nodes.insert(coord.node_id);
    }
    assert_eq!(nodes.len(), 3, "groups spread over the brokers");
    cluster.shutdown().await;
}

#[tokio::test]
async fn group_requests_to_another_broker_are_answered_not_coordinator() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let g = "elsewhere";
    let coord = coordinator(&cluster, g).await;
    let other = (1..=3).find(|n| *n != coord).unwrap();
    let mut c = Client::to(&cluster, other).await;
    let nc = ErrorCode::NotCoordinator.code();
    let r = c.call(&join_req(g, "", None, &range(&["t"])), 5).await;
    assert_eq!((r.error_code, r.member_id.as_str()), (nc, ""));
    assert_eq!(c.call(&sync_req(g, 1, "m", &[]), 3).await.error_code, nc);
    assert_eq!(c.call(&hb(g, 1, "m"), 4).await.error_code, nc);
    assert_eq!(c.call(&leave(g, &[("m", None)]), 3).await.error_code, nc);
    assert_eq!(commit_errors(&c.call(&commit_req(g, -1, "", &[("t", 0, 1)]), 8).await), [nc]);
    assert_eq!(c.call(&fetch_req_v7(g, None), 7).await.error_code, nc);
    assert_eq!(describe(&mut c, g).await.error_code, nc);
    let d = c.call(&DeleteGroupsRequest { groups_names: vec![g.into()], ..Default::default() }, 2).await;
    assert_eq!(d.results[0].error_code, nc);
    let od = c.call(&OffsetDeleteRequest { group_id: g.into(), ..Default::default() }, 0).await;
    assert_eq!(od.error_code, nc);
    cluster.shutdown().await;
}

#[tokio::test]
async fn join_group_checks_the_group_id_and_session_timeout() {
    let cluster = Cluster::builder().broker_config("group.min.session.timeout.ms", "1000").start().await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let r = c.call(&join_req("", "m", None, &range(&["t"])), 5).await;
    assert_eq!((r.error_code, r.member_id.as_str()), (ErrorCode::InvalidGroupId.code(), "m"));
    let mut short = join_req("g", "", None, &range(&["t"]));
    short.session_timeout_ms = 999;
    assert_eq!(c.call(&short, 5).await.error_code, ErrorCode::InvalidSessionTimeout.code());
    short.session_timeout_ms = 1_800_001;
    assert_eq!(c.call(&short, 5).await.error_code, ErrorCode::InvalidSessionTimeout.code());
    let mut empty_type = join_req("g", "", None, &range(&["t"]));
    empty_type.protocol_type = String::new();
    assert_eq!(c.call(&empty_type, 5).await.error_code, ErrorCode::InconsistentGroupProtocol.code());
    // A member id for a group that does not exist.
    assert_eq!(
        c.call(&join_req("nope", "ghost", None, &range(&["t"])), 5).await.error_code,
        ErrorCode::UnknownMemberId.code()
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn join_group_v4_plus_hands_out_the_member_id_first() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    for v in [4i16, 5, 7, 9] {
        let g = format!("g-v{v}");
        let r = c.call(&join_req(&g, "", None, &range(&["t"])), v).await;
        assert_eq!(r.error_code, ErrorCode::MemberIdRequired.code(), "v{v}");
        assert!(r.member_id.starts_with("tcp-test-"), "Kafka's ids: client id and a UUID: {}", r.member_id);
        assert_eq!(r.generation_id, -1);
        let id = r.member_id;
        let r = c.call(&join_req(&g, &id, None, &range(&["t"])), v).await;
        assert_eq!(
            (r.error_code, r.generation_id, r.member_id.as_str(), r.leader.as_str()),
            (0, 1, id.as_str(), id.as_str())
        );
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.protocol_type.as_deref(), if v >= 7 { Some("consumer") } else { None });
        assert_eq!(r.members.len(), 1);
        assert_eq!(r.members[0].metadata, subscription(&["t"]));
    }
    // Before v4 the first JoinGroup joins at once.
    for v in [0i16, 1, 3] {
        let g = format!("g-v{v}");
        let r = c.call(&join_req(&g, "", None, &range(&["t"])), v).await;
        assert_eq!((r.error_code, r.generation_id), (0, 1), "v{v}");
        assert_eq!(r.leader, r.member_id);
    }
    cluster.shutdown().await;
}

/// The whole life of a two-member group: join, sync, heartbeats, a third member arriving and
/// leaving, the leader leaving, and the group emptying.
#[tokio::test]
async fn two_members_join_sync_heartbeat_rebalance_and_leave() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic("orders", 4, 2).await.unwrap();
    let g = "flow";
    let (mut a, mut b) = (member_conn(&cluster, g).await, member_conn(&cluster, g).await);
    let mut admin = member_conn(&cluster, g).await;

    let ida = solo_member(&mut a, g, &["orders"], b"a:0123").await;
    assert_eq!(a.call(&hb(g, 1, &ida), 4).await.error_code, 0);
    let d = describe(&mut admin, g).await;
    assert_eq!((d.group_state.as_str(), d.protocol_data.as_str(), d.members.len()), ("Stable", "range", 1));

    // b joins: the group rebalances; a hears of it through its heartbeat.
    let r = b.call(&join_req(g, "", None, &range(&["orders"])), 5).await;
    let idb = r.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["orders"])), 5).await;
    let mut state = describe(&mut admin, g).await.group_state;
    while state == "Stable" {
        // b's rejoin is on its way to the coordinator.
        tokio::task::yield_now().await;
        state = describe(&mut admin, g).await.group_state;
    }
    assert_eq!(state, "PreparingRebalance");
    assert_eq!(a.call(&hb(g, 1, &ida), 4).await.error_code, ErrorCode::RebalanceInProgress.code());
    assert_eq!(a.call(&sync_req(g, 1, &ida, &[]), 3).await.error_code, ErrorCode::RebalanceInProgress.code());
    let ra = a.call(&join_req(g, &ida, None, &range(&["orders"])), 5).await;
    let rb = b.recv::<JoinGroupRequest>(jb, 5).await;
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2), "b's JoinGroup waited for a to rejoin");
    assert_eq!((ra.leader.as_str(), rb.leader.as_str()), (ida.as_str(), ida.as_str()), "the leader stays");
    let mut seen: Vec<&str> = ra.members.iter().map(|m| m.member_id.as_str()).collect();
    seen.sort_unstable();
    let mut want = vec![ida.as_str(), idb.as_str()];
    want.sort_unstable();
    assert_eq!(seen, want, "the leader sees every member");
    assert!(rb.members.is_empty(), "followers do not");
    assert_eq!(describe(&mut admin, g).await.group_state, "CompletingRebalance");

    // b's SyncGroup waits for the leader's assignment.
    let sb = b.send(&sync_req(g, 2, &idb, &[]), 3).await;
    let sa = a.call(&sync_req(g, 2, &ida, &[(&ida, b"a:01"), (&idb, b"b:23")]), 3).await;
    assert_eq!((sa.error_code, &sa.assignment[..]), (0, &b"a:01"[..]));
    let sb = b.recv::<SyncGroupRequest>(sb, 3).await;
    assert_eq!((sb.error_code, &sb.assignment[..]), (0, &b"b:23"[..]), "the leader's assignment reached b");
    let d = describe(&mut admin, g).await;
    assert_eq!(d.group_state, "Stable");
    let assigned: Vec<(&str, &[u8])> =
        d.members.iter().map(|m| (m.member_id.as_str(), &m.member_assignment[..])).collect();
    assert!(assigned.contains(&(idb.as_str(), &b"b:23"[..])));
    // A SyncGroup in a Stable group returns the member's assignment again.
    assert_eq!(&b.call(&sync_req(g, 2, &idb, &[]), 3).await.assignment[..], b"b:23");
    assert_eq!(b.call(&hb(g, 2, &idb), 4).await.error_code, 0);
    assert_eq!(b.call(&hb(g, 1, &idb), 4).await.error_code, ErrorCode::IllegalGeneration.code());
    assert_eq!(b.call(&hb(g, 2, "stranger"), 4).await.error_code, ErrorCode::UnknownMemberId.code());

    // The leader leaves: b rejoins alone and leads generation 3.
    let l = a.call(&leave(g, &[(&ida, None)]), 3).await;
    assert_eq!((l.error_code, l.members[0].error_code), (0, 0));
    assert_eq!(b.call(&hb(g, 2, &idb), 4).await.error_code, ErrorCode::RebalanceInProgress.code());
    let rb = b.call(&join_req(g, &idb, None, &range(&["orders"])), 5).await;
    assert_eq!((rb.generation_id, rb.leader.as_str()), (3, idb.as_str()));
    b.call(&sync_req(g, 3, &idb, &[(&idb, b"b:0123")]), 3).await;
    // v0 LeaveGroup names one member and answers at the top level.
    let l = b.call(&LeaveGroupRequest { group_id: g.into(), member_id: idb.clone(), ..Default::default() }, 0).await;
    assert_eq!(l.error_code, 0);
    let l = b.call(&LeaveGroupRequest { group_id: g.into(), member_id: idb.clone(), ..Default::default() }, 0).await;
    assert_eq!(l.error_code, ErrorCode::UnknownMemberId.code());
    let d = describe(&mut admin, g).await;
    assert_eq!((d.group_state.as_str(), d.members.len(), d.protocol_type.as_str()), ("Empty", 0, "consumer"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_leader_rejoining_a_stable_group_starts_a_rebalance_and_followers_do_not() {
    let cluster = Cluster::builder().start().await.unwrap();
    let g = "leader-rejoin";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    let ida = solo_member(&mut a, g, &["t"], b"x").await;
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    let ra = a.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    let rb = b.recv::<JoinGroupRequest>(jb, 5).await;
    let sb = b.send(&sync_req(g, 2, &idb, &[]), 3).await;
    a.call(&sync_req(g, 2, &ida, &[(&ida, b"1"), (&idb, b"2")]), 3).await;
    b.recv::<SyncGroupRequest>(sb, 3).await;
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    // A follower with unchanged metadata gets the current generation back.
    let r = b.call(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    assert_eq!((r.error_code, r.generation_id, r.members.len()), (0, 2, 0));
    assert_eq!(describe(&mut b, g).await.group_state, "Stable");
    // The leader's JoinGroup (how it reacts to new partitions) starts a rebalance: it waits
    // for b, which learns of it from its heartbeat.
    let ja = a.send(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    let mut code = 0;
    while code == 0 {
        code = b.call(&hb(g, 2, &idb), 4).await.error_code;
    }
    assert_eq!(code, ErrorCode::RebalanceInProgress.code());
    let rb = b.call(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    let ra = a.recv::<JoinGroupRequest>(ja, 5).await;
    assert_eq!((ra.generation_id, rb.generation_id, ra.members.len()), (3, 3, 2));
    cluster.shutdown().await;
}

#[tokio::test]
async fn protocols_are_chosen_by_vote_and_mismatches_refused() {
    let cluster = Cluster::builder().start().await.unwrap();
    let g = "vote";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    let meta = subscription(&["t"]);
    let pa = vec![("cooperative-sticky", meta.clone()), ("range", meta.clone())];
    let pb = vec![("range", meta.clone()), ("cooperative-sticky", meta.clone()), ("roundrobin", meta.clone())];
    let ida = a.call(&join_req(g, "", None, &pa), 5).await.member_id;
    let ra = a.call(&join_req(g, &ida, None, &pa), 5).await;
    assert_eq!(ra.protocol_name.as_deref(), Some("cooperative-sticky"));
    a.call(&sync_req(g, 1, &ida, &[]), 3).await;
    // A member supporting none of the group's protocols is refused.
    let r = b.call(&join_req(g, "", None, &[("roundrobin", meta.clone())]), 5).await;
    assert_eq!((r.error_code, r.member_id.as_str()), (ErrorCode::InconsistentGroupProtocol.code(), ""));
    let mut other_type = join_req(g, "", None, &pa);
    other_type.protocol_type = "connect".into();
    assert_eq!(b.call(&other_type, 5).await.error_code, ErrorCode::InconsistentGroupProtocol.code());
    // b prefers range, a cooperative-sticky: one vote each; the first vote cast wins.
    let idb = b.call(&join_req(g, "", None, &pb), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &pb), 5).await;
    let ra = a.call(&join_req(g, &ida, None, &pa), 5).await;
    let rb = b.recv::<JoinGroupRequest>(jb, 5).await;
    assert_eq!(ra.protocol_name, rb.protocol_name);
    assert_eq!(ra.protocol_name.as_deref(), Some("cooperative-sticky"));
    assert_eq!(
        ra.members.iter().find(|m| m.member_id == idb).unwrap().metadata,
        meta,
        "metadata of the chosen protocol"
    );
    // SyncGroup v5 must name the group's protocol type and name.
    let mut s = sync_req(g, 2, &idb, &[]);
    assert_eq!(b.call(&s, 5).await.error_code, ErrorCode::InconsistentGroupProtocol.code(), "v5 requires both");
    s.protocol_type = Some("consumer".into());
    s.protocol_name = Some("range".into());
    assert_eq!(b.call(&s, 5).await.error_code, ErrorCode::InconsistentGroupProtocol.code());
    s.protocol_name = Some("cooperative-sticky".into());
    let sb = b.send(&s, 5).await;
    a.call(&sync_req(g, 2, &ida, &[(&idb, b"for b")]), 3).await;
    let sb = b.recv::<SyncGroupRequest>(sb, 5).await;
    assert_eq!(
        (sb.error_code, sb.protocol_name.as_deref(), &sb.assignment[..]),
        (0, Some("cooperative-sticky"), &b"for b"[..])
    );
    assert_eq!(sb.protocol_type.as_deref(), Some("consumer"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_removed() {
    let cluster = Cluster::builder().start().await.unwrap();
    let g = "slow";
    let (mut a, mut b, mut c) =
        (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    let ida = solo_member(&mut a, g, &["t"], b"").await;
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    a.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    b.recv::<JoinGroupRequest>(jb, 5).await;
    let sb = b.send(&sync_req(g, 2, &idb, &[]), 3).await;
    a.call(&sync_req(g, 2, &ida, &[]), 3).await;
    b.recv::<SyncGroupRequest>(sb, 3).await;
    // c joins; a rejoins, b does not.
    let idc = c.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jc = c.send(&join_req(g, &idc, None, &range(&["t"])), 5).await;
    let mut code = 0;
    while code == 0 {
        code = a.call(&hb(g, 2, &ida), 4).await.error_code;
    }
    let ja = a.send(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    while describe(&mut b, g).await.members.len() < 3 {
        tokio::task::yield_now().await;
    }
    cluster.advance_clock(REBALANCE_MS as u64).await.unwrap();
    let (ra, rc) = (a.recv::<JoinGroupRequest>(ja, 5).await, c.recv::<JoinGroupRequest>(jc, 5).await);
    assert_eq!((ra.generation_id, rc.generation_id), (3, 3));
    let mut ids: Vec<String> = ra.members.iter().map(|m| m.member_id.clone()).collect();
    ids.sort();
    let mut want = vec![ida.clone(), idc.clone()];
    want.sort();
    assert_eq!(ids, want, "b was removed at the rebalance timeout");
    assert_eq!(b.call(&hb(g, 2, &idb), 4).await.error_code, ErrorCode::UnknownMemberId.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn an_expired_session_evicts_the_member_and_starts_a_rebalance() {
    let cluster = Cluster::builder().start().await.unwrap();
    let g = "sessions";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    let ida = solo_member(&mut a, g, &["t"], b"").await;
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    a.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    b.recv::<JoinGroupRequest>(jb, 5).await;
    let sb = b.send(&sync_req(g, 2, &idb, &[]), 3).await;
    a.call(&sync_req(g, 2, &ida, &[]), 3).await;
    b.recv::<SyncGroupRequest>(sb, 3).await;

    cluster.advance_clock(SESSION_MS as u64 - 1000).await.unwrap();
    assert_eq!(a.call(&hb(g, 2, &ida), 4).await.error_code, 0, "a's session restarts");
    cluster.advance_clock(1000).await.unwrap();
    // b's session ended; a's has 9 s left.
    assert_eq!(b.call(&hb(g, 2, &idb), 4).await.error_code, ErrorCode::UnknownMemberId.code());
    assert_eq!(a.call(&hb(g, 2, &ida), 4).await.error_code, ErrorCode::RebalanceInProgress.code());
    let ra = a.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    assert_eq!((ra.generation_id, ra.members.len()), (3, 1));
    cluster.shutdown().await;
}

#[tokio::test]
async fn the_initial_rebalance_delay_gathers_members_into_one_generation() {
    let cluster = Cluster::builder().broker_config("group.initial.rebalance.delay.ms", "3000").start().await.unwrap();
    let g = "delayed";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    let ida = a.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let ja = a.send(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    while describe(&mut Client::to(&cluster, 1).await, g).await.members.len() < 2 {
        tokio::task::yield_now().await;
    }
    // b arrived during the delay, which is then extended once more (up to the rebalance
    // timeout): both join generation 1 together.
    cluster.advance_clock(3000).await.unwrap();
    cluster.advance_clock(3000).await.unwrap();
    let (ra, rb) = (a.recv::<JoinGroupRequest>(ja, 5).await, b.recv::<JoinGroupRequest>(jb, 5).await);
    assert_eq!((ra.generation_id, rb.generation_id, ra.members.len()), (1, 1, 2));
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_static_member_restarting_gets_its_assignment_back_and_its_old_self_is_fenced() {
    let cluster = Cluster::builder().start().await.unwrap();
    let g = "static";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    // Static members join without MEMBER_ID_REQUIRED.
    let ja = a.send(&join_req(g, "", Some("instance-a"), &range(&["t"])), 5).await;
    let ra = a.recv::<JoinGroupRequest>(ja, 5).await;
    assert_eq!(ra.error_code, 0);
    assert!(ra.member_id.starts_with("instance-a-"));
    assert_eq!(ra.members[0].group_instance_id.as_deref(), Some("instance-a"));
    let ida = ra.member_id;
    // b's join starts a rebalance and waits for a to rejoin.
    let jb = b.send(&join_req(g, "", Some("instance-b"), &range(&["t"])), 5).await;
    while describe(&mut a, g).await.members.len() < 2 {
        tokio::task::yield_now().await;
    }
    let ra = a.call(&join_req(g, &ida, Some("instance-a"), &range(&["t"])), 5).await;
    assert_eq!((ra.generation_id, ra.members.len()), (2, 2));
    let rb = b.recv::<JoinGroupRequest>(jb, 5).await;
    assert!(rb.member_id.starts_with("instance-b-"));
    let idb =
        ra.members.iter().find(|m| m.group_instance_id.as_deref() == Some("instance-b")).unwrap().member_id.clone();
    let mut sync_b = sync_req(g, 2, &idb, &[]);
    sync_b.group_instance_id = Some("instance-b".into());
    let sb = b.send(&sync_b, 3).await;
    a.call(&sync_req(g, 2, &ida, &[(&ida, b"A"), (&idb, b"B")]), 3).await;
    assert_eq!(&b.recv::<SyncGroupRequest>(sb, 3).await.assignment[..], b"B");

    // instance-b restarts (a new connection, no member id): same generation, a new id, no
    // rebalance, and its assignment back.
    let mut b2 = Client::to(&cluster, 1).await;
    let r = b2.call(&join_req(g, "", Some("instance-b"), &range(&["t"])), 5).await;
    assert_eq!((r.error_code, r.generation_id), (0, 2));
    assert_ne!(r.member_id, idb);
    assert_eq!(r.leader, ida, "not the leader");
    let new_b = r.member_id;
    let mut s = sync_req(g, 2, &new_b, &[]);
    s.group_instance_id = Some("instance-b".into());
    assert_eq!(&b2.call(&s, 3).await.assignment[..], b"B");
    assert_eq!(describe(&mut b2, g).await.group_state, "Stable");
    assert_eq!(a.call(&hb(g, 2, &ida), 4).await.error_code, 0, "no rebalance for a");
    // The old process is fenced wherever it shows up.
    let mut old = hb(g, 2, &idb);
    old.group_instance_id = Some("instance-b".into());
    assert_eq!(b.call(&old, 4).await.error_code, ErrorCode::FencedInstanceId.code());
    let mut old_join = join_req(g, &idb, Some("instance-b"), &range(&["t"]));
    old_join.rebalance_timeout_ms = REBALANCE_MS;
    assert_eq!(b.call(&old_join, 5).await.error_code, ErrorCode::FencedInstanceId.code());
    let mut old_commit = commit_req(g, 2, &idb, &[]);
    old_commit.group_instance_id = Some("instance-b".into());
    cluster.create_topic("t", 1, 1).await.unwrap();
    old_commit.topics = commit_req(g, 2, &idb, &[("t", 0, 5)]).topics;
    assert_eq!(commit_errors(&b.call(&old_commit, 7).await), [ErrorCode::FencedInstanceId.code()]);
    // Removed by an admin by instance id alone (LeaveGroup v3+).
    let l =
        a.call(&leave(g, &[("", Some("instance-b")), ("", Some("instance-z")), (&ida, Some("instance-b"))]), 5).await;
    let errs: Vec<i16> = l.members.iter().map(|m| m.error_code).collect();
    assert_eq!(
        errs,
        [0, ErrorCode::UnknownMemberId.code(), ErrorCode::UnknownMemberId.code()],
        "instance-b is gone by the time the third entry is checked"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn offset_commit_checks_generation_and_member() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("t", 2, 1).await.unwrap();
    let g = "commits";
    let (mut a, mut b) = (Client::to(&cluster, 1).await, Client::to(&cluster, 1).await);
    // No group yet: a member's commit is an illegal generation (v8) or an unknown group (v9).
    let c = commit_req(g, 1, "m", &[("t", 0, 1)]);
    assert_eq!(commit_errors(&a.call(&c, 8).await), [ErrorCode::IllegalGeneration.code()]);
    assert_eq!(commit_errors(&a.call(&c, 9).await), [ErrorCode::GroupIdNotFound.code()]);
    // A consumer outside group management (generation -1) creates an empty group.
    assert_eq!(commit_errors(&a.call(&commit_req(g, -1, "", &[("t", 0, 10)]), 8).await), [0]);
    assert_eq!(describe(&mut a, g).await.group_state, "Empty");
    // Unknown topics and partitions, before anything else.
    let r = a.call(&commit_req(g, -1, "", &[("t", 1, 1), ("t", 9, 1), ("nope", 0, 1)]), 8).await;
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(commit_errors(&r), [0, unknown, unknown]);

    let ida = solo_member(&mut a, g, &["t"], b"").await;
    assert_eq!(commit_errors(&a.call(&commit_req(g, 1, &ida, &[("t", 0, 20)]), 8).await), [0]);
    assert_eq!(
        commit_errors(&a.call(&commit_req(g, 7, &ida, &[("t", 0, 1)]), 8).await),
        [ErrorCode::IllegalGeneration.code()]
    );
    assert_eq!(
        commit_errors(&a.call(&commit_req(g, 1, "ghost", &[("t", 0, 1)]), 8).await),
        [ErrorCode::UnknownMemberId.code()]
    );
    assert_eq!(
        commit_errors(&a.call(&commit_req(g, -1, "", &[("t", 0, 1)]), 8).await),
        [ErrorCode::UnknownMemberId.code()],
        "a group with members takes no commits from outside"
    );
    // During the join phase the old generation may still commit; once the join phase is
    // over and before the assignment, commits are refused with REBALANCE_IN_PROGRESS.
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    let mut code = 0;
    while code == 0 {
        code = a.call(&hb(g, 1, &ida), 4).await.error_code;
    }
    assert_eq!(commit_errors(&a.call(&commit_req(g, 1, &ida, &[("t", 0, 21)]), 8).await), [0], "PreparingRebalance");
    a.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    b.recv::<JoinGroupRequest>(jb, 5).await;
    assert_eq!(
        commit_errors(&a.call(&commit_req(g, 2, &ida, &[("t", 0, 22)]), 8).await),
        [ErrorCode::RebalanceInProgress.code()]
    );
    // Metadata beyond offset.metadata.max.bytes (4096).
    let sb = b.send(&sync_req(g, 2, &idb, &[]), 3).await;
    a.call(&sync_req(g, 2, &ida, &[]), 3).await;
    b.recv::<SyncGroupRequest>(sb, 3).await;
    let mut big = commit_req(g, 2, &idb, &[("t", 0, 30), ("t", 1, 31)]);
    big.topics[0].partitions[1].committed_metadata = Some("x".repeat(4097));
    assert_eq!(commit_errors(&b.call(&big, 8).await), [0, ErrorCode::OffsetMetadataTooLarge.code()]);
    let f = b.call(&fetch_req_v7(g, Some(&[("t", &[0, 1])])), 7).await;
    let got: Vec<(i32, i64, i32, Option<&str>)> = f.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata.as_deref()))
        .collect();
    assert_eq!(got, [(0, 30, 3, Some("meta-0")), (1, 1, 3, Some("meta-1"))], "the refused commit left p1 as it was");
    cluster.shutdown().await;
}

#[tokio::test]
async fn offset_fetch_every_version_single_and_batched() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("a", 2, 1).await.unwrap();
    cluster.create_topic("b", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    let mut commit = commit_req("g1", -1, "", &[("a", 0, 5), ("a", 1, 6), ("b", 0, 7)]);
    commit.topics[0].partitions[0].committed_metadata = None;
    assert_eq!(commit_errors(&c.call(&commit, 8).await), [0, 0, 0]);
    assert_eq!(commit_errors(&c.call(&commit_req("g2", -1, "", &[("b", 0, 70)]), 9).await), [0]);
    let mut v2 = commit_req("g3", -1, "", &[("b", 0, 700)]);
    v2.retention_time_ms = 60_000;
    assert_eq!(commit_errors(&c.call(&v2, 2).await), [0], "v2, with a retention time");
    for v in 1..=7 {
        let r = c.call(&fetch_req_v7("g1", Some(&[("a", &[0, 1, 2]), ("b", &[0])])), v).await;
        let got: Vec<(String, i32, i64)> = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition_index, p.committed_offset)))
            .collect();
        assert_eq!(got, [("a".into(), 0, 5), ("a".into(), 1, 6), ("a".into(), 2, -1), ("b".into(), 0, 7)], "v{v}");
        assert_eq!(r.topics[0].partitions[0].metadata.as_deref(), Some(""), "null metadata reads as empty");
        assert_eq!(r.topics[0].partitions[1].committed_leader_epoch, if v >= 5 { 3 } else { -1 });
        if v >= 2 {
            let all = c.call(&fetch_req_v7("g1", None), v).await;
            assert_eq!(all.topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 3, "null topics: everything");
        }
    }
    let mut stable = fetch_req_v7("g1", Some(&[("a", &[0])]));
    stable.require_stable = true;
    assert_eq!(c.call(&stable, 7).await.topics[0].partitions[0].error_code, 0, "no transactional offsets pending");
    // v8+: several groups at once, one of them unknown.
    let groups: Vec<OffsetFetchRequestGroup> = ["g1", "g2", "none"]
        .iter()
        .map(|g| OffsetFetchRequestGroup {
            group_id: (*g).into(),
            topics: if *g == "g2" {
                Some(vec![OffsetFetchRequestTopics {
                    name: "b".into(),
                    partition_indexes: vec![0],
                    ..Default::default()
                }])
            } else {
                None
            },
            ..Default::default()
        })
        .collect();
    for v in [8, 9] {
        let r = c.call(&OffsetFetchRequest { groups: groups.clone(), ..Default::default() }, v).await;
        assert_eq!(r.groups.len(), 3);
        assert_eq!(r.groups[0].topics.iter().map(|t| t.partitions.len()).sum::<usize>(), 3);
        assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, 70);
        assert!(r.groups[2].topics.is_empty() && r.groups[2].error_code == 0, "an unknown group has nothing");
    }
    // OffsetFetch v0 was removed in Kafka 4.
    let r = c.call(&fetch_req_v7("g1", Some(&[("a", &[0])])), 0).await;
    assert_eq!(r.topics[0].partitions[0].error_code, ErrorCode::UnsupportedVersion.code());
    let mut v1 = commit_req("g1", -1, "", &[("a", 0, 1)]);
    v1.generation_id_or_member_epoch = -1;
    assert_eq!(commit_errors(&c.call(&v1, 1).await), [ErrorCode::UnsupportedVersion.code()], "OffsetCommit v1 too");
    cluster.shutdown().await;
}

#[tokio::test]
async fn offset_delete_refuses_topics_the_group_consumes() {
    let cluster = Cluster::builder().start().await.unwrap();
    cluster.create_topic("consumed", 1, 1).await.unwrap();
    cluster.create_topic("old", 2, 1).await.unwrap();
    let g = "od";
    let mut a = Client::to(&cluster, 1).await;
    let ida = solo_member(&mut a, g, &["consumed"], b"").await;
    a.call(&commit_req(g, 1, &ida, &[("consumed", 0, 1), ("old", 0, 2), ("old", 1, 3)]), 8).await;
    let del = |topics: &[(&str, &[i32])]| OffsetDeleteRequest {
        group_id: g.into(),
        topics: topics
            .iter()
            .map(|(t, ps)| OffsetDeleteRequestTopic {
                name: (*t).into(),
                partitions: ps
                    .iter()
                    .map(|p| OffsetDeleteRequestPartition { partition_index: *p, ..Default::default() })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let r = a.call(&del(&[("consumed", &[0]), ("old", &[0]), ("missing", &[0])]), 0).await;
    assert_eq!(r.error_code, 0);
    let errs: Vec<(String, i16)> =
        r.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.error_code))).collect();
    assert!(errs.contains(&("consumed".into(), ErrorCode::GroupSubscribedToTopic.code())));
    assert!(errs.contains(&("old".into(), 0)));
    assert!(errs.contains(&("missing".into(), ErrorCode::UnknownTopicOrPartition.code())));
    let f = a.call(&fetch_req_v7(g, None), 7).await;
    let left: Vec<(String, i32)> =
        f.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition_index))).collect();
    assert_eq!(left, [("consumed".into(), 0), ("old".into(), 1)]);
    assert_eq!(
        a.call(&OffsetDeleteRequest { group_id: "nope".into(), ..Default::default() }, 0).await.error_code,
        ErrorCode::GroupIdNotFound.code()
    );
    assert_eq!(a.call(&OffsetDeleteRequest::default(), 0).await.error_code, ErrorCode::InvalidGroupId.code());
    // A non-consumer group with members: NON_EMPTY_GROUP.
    let mut connect = join_req("connect-group", "", None, &[("default", Bytes::from_static(b"x"))]);
    connect.protocol_type = "connect".into();
    let id = a.call(&connect, 5).await.member_id;
    connect.member_id = id;
    a.call(&connect, 5).await;
    let mut d = del(&[("old", &[1])]);
    d.group_id = "connect-group".into();
    assert_eq!(a.call(&d, 0).await.error_code, ErrorCode::NonEmptyGroup.code());
    cluster.shutdown().await;
}

#[tokio::test]
async fn list_describe_and_delete_groups() {
    let cluster = Cluster::builder().brokers(2).start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    // Two groups on different coordinators.
    let mut names = Vec::new();
    for i in 0.. {
        let g = format!("lg-{i}");
        let node = cluster.group_coordinator(&g).await.unwrap();
        if !names.iter().any(|(_, n)| *n == node) {
            names.push((g, node));
        }
        if names.len() == 2 {
            break;
        }
    }
    let (g_live, node_live) = names[0].clone();
    let (g_empty, node_empty) = names[1].clone();
    let mut live = Client::to(&cluster, node_live).await;
    let id = solo_member(&mut live, &g_live, &["t"], b"assignment").await;
    let mut other = Client::to(&cluster, node_empty).await;
    other.call(&commit_req(&g_empty, -1, "", &[("t", 0, 1)]), 8).await;

    // Each broker lists the groups it coordinates.
    for (node, group, state, ptype) in [(node_live, &g_live, "Stable", "consumer"), (node_empty, &g_empty, "Empty", "")]
    {
        let mut c = Client::to(&cluster, node).await;
        let r = c.call(&ListGroupsRequest::default(), 5).await;
        let listed: Vec<(&str, &str, &str, &str)> = r
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g.protocol_type.as_str(), g.group_state.as_str(), g.group_type.as_str()))
            .collect();
        assert_eq!(listed, [(group.as_str(), ptype, state, "classic")]);
        let filtered =
            c.call(&ListGroupsRequest { states_filter: vec!["stable".into()], ..Default::default() }, 4).await;
        assert_eq!(filtered.groups.len(), usize::from(state == "Stable"), "states filter is case-insensitive");
        let typed = c.call(&ListGroupsRequest { types_filter: vec!["consumer".into()], ..Default::default() }, 5).await;
        assert!(typed.groups.is_empty(), "every group here is classic");
        let v0 = c.call(&ListGroupsRequest::default(), 0).await;
        assert_eq!(v0.groups.len(), 1);
    }

    let d = live
        .call(
            &DescribeGroupsRequest {
                groups: vec![g_live.clone(), "unknown".into()],
                include_authorized_operations: true,
                ..Default::default()
            },
            5,
        )
        .await;
    let g = &d.groups[0];
    assert_eq!(
        (g.error_code, g.group_state.as_str(), g.protocol_type.as_str(), g.protocol_data.as_str()),
        (0, "Stable", "consumer", "range")
    );
    let m = &g.members[0];
    assert_eq!(
        (m.member_id.as_str(), m.client_id.as_str(), m.client_host.as_str()),
        (id.as_str(), "tcp-test", "/127.0.0.1")
    );
    assert_eq!((m.member_metadata.clone(), &m.member_assignment[..]), (subscription(&["t"]), &b"assignment"[..]));
    assert_eq!(g.authorized_operations, (1 << 3) | (1 << 6) | (1 << 8), "READ, DELETE, DESCRIBE");
    let unknown = &d.groups[1];
    if cluster.group_coordinator("unknown").await.unwrap() == node_live {
        assert_eq!((unknown.error_code, unknown.group_state.as_str()), (0, "Dead"));
    } else {
        assert_eq!(unknown.error_code, ErrorCode::NotCoordinator.code());
    }

    // DeleteGroups: not while members remain; an empty group goes with its offsets.
    let del = |g: &str| DeleteGroupsRequest { groups_names: vec![g.into(), g.into()], ..Default::default() };
    let r = live.call(&del(&g_live), 2).await;
    assert_eq!(r.results.len(), 1, "a repeated name is answered once");
    assert_eq!(r.results[0].error_code, ErrorCode::NonEmptyGroup.code());
    assert_eq!(other.call(&del(&g_empty), 0).await.results[0].error_code, 0);
    assert_eq!(other.call(&del(&g_empty), 1).await.results[0].error_code, ErrorCode::GroupIdNotFound.code());
    assert!(other.call(&fetch_req_v7(&g_empty, None), 7).await.topics.is_empty(), "its offsets went too");
    live.call(&leave(&g_live, &[(&id, None)]), 3).await;
    assert_eq!(live.call(&del(&g_live), 2).await.results[0].error_code, 0);
    assert!(live.call(&ListGroupsRequest::default(), 5).await.groups.is_empty());
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_moved_coordinator_answers_not_coordinator_until_rediscovered() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let g = "moving";
    let old = coordinator(&cluster, g).await;
    let (mut a, mut b) = (Client::to(&cluster, old).await, Client::to(&cluster, old).await);
    let ida = solo_member(&mut a, g, &["t"], b"A").await;
    a.call(&commit_req(g, 1, &ida, &[("t", 0, 42)]), 8).await;
    // b's JoinGroup waits for a, then the coordinator moves.
    let idb = b.call(&join_req(g, "", None, &range(&["t"])), 5).await.member_id;
    let jb = b.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    while describe(&mut a, g).await.group_state != "PreparingRebalance" {
        tokio::task::yield_now().await;
    }
    let new = cluster.move_coordinator(g).await.unwrap();
    assert_ne!(new, old);
    let rb = b.recv::<JoinGroupRequest>(jb, 5).await;
    assert_eq!(rb.error_code, ErrorCode::NotCoordinator.code(), "a waiting JoinGroup is told at once");
    assert_eq!(a.call(&hb(g, 1, &ida), 4).await.error_code, ErrorCode::NotCoordinator.code());
    assert_eq!(
        commit_errors(&a.call(&commit_req(g, 1, &ida, &[("t", 0, 43)]), 8).await),
        [ErrorCode::NotCoordinator.code()]
    );
    // Re-discovery: every broker now names the new coordinator, which has the group.
    for node in 1..=3 {
        let mut c = Client::to(&cluster, node).await;
        let r = c
            .call(&FindCoordinatorRequest { key_type: 0, coordinator_keys: vec![g.into()], ..Default::default() }, 4)
            .await;
        assert_eq!(r.coordinators[0].node_id, new);
    }
    let (mut a2, mut b2) = (Client::to(&cluster, new).await, Client::to(&cluster, new).await);
    assert_eq!(a2.call(&hb(g, 1, &ida), 4).await.error_code, ErrorCode::RebalanceInProgress.code());
    let jb = b2.send(&join_req(g, &idb, None, &range(&["t"])), 5).await;
    let ra = a2.call(&join_req(g, &ida, None, &range(&["t"])), 5).await;
    let rb = b2.recv::<JoinGroupRequest>(jb, 5).await;
    assert_eq!((ra.generation_id, rb.generation_id, ra.members.len()), (2, 2, 2));
    let f = a2.call(&fetch_req_v7(g, Some(&[("t", &[0])])), 7).await;
    assert_eq!(f.topics[0].partitions[0].committed_offset, 42, "offsets moved with the group");
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_stopped_coordinators_groups_move_to_a_live_broker() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let g = "failover";
    let old = coordinator(&cluster, g).await;
    let mut a = Client::to(&cluster, old).await;
    let ida = solo_member(&mut a, g, &["t"], b"A").await;
    cluster.stop_broker(old).await.unwrap();
    let survivor = (1..=3).find(|n| *n != old).unwrap();
    let mut c = Client::to(&cluster, survivor).await;
    let r = c.call(&FindCoordinatorRequest { key: g.into(), ..Default::default() }, 2).await;
    assert_eq!(r.error_code, 0);
    assert_ne!(r.node_id, old);
    let mut a2 = Client::to(&cluster, r.node_id).await;
    assert_eq!(a2.call(&hb(g, 1, &ida), 4).await.error_code, 0, "the group survived the move");
    cluster.start_broker(old).await.unwrap();
    assert_eq!(cluster.group_coordinator(g).await.unwrap(), old, "its partition's leader is back");
    cluster.shutdown().await;
}

#[tokio::test]
async fn pushed_errors_answer_group_requests() {
    let cluster = Cluster::builder().start().await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    cluster
        .push_errors(ApiKey::FindCoordinator, ErrorScope::Cluster, [ErrorCode::CoordinatorNotAvailable])
        .await
        .unwrap();
    cluster.push_errors(ApiKey::JoinGroup, ErrorScope::Cluster, [ErrorCode::CoordinatorLoadInProgress]).await.unwrap();
    cluster.push_errors(ApiKey::OffsetFetch, ErrorScope::Broker(1), [ErrorCode::NotCoordinator]).await.unwrap();
    let r = c
        .call(
            &FindCoordinatorRequest {
                key_type: 0,
                coordinator_keys: vec!["g".into(), "h".into()],
                ..Default::default()
            },
            4,
        )
        .await;
    assert!(r
        .coordinators
        .iter()
        .all(|x| x.error_code == ErrorCode::CoordinatorNotAvailable.code() && x.node_id == -1));
    assert_eq!(r.coordinators.len(), 2);
    let r = c.call(&join_req("g", "", None, &range(&["t"])), 5).await;
    assert_eq!(r.error_code, ErrorCode::CoordinatorLoadInProgress.code());
    let r = c
        .call(
            &OffsetFetchRequest {
                groups: vec![OffsetFetchRequestGroup { group_id: "g".into(), topics: None, ..Default::default() }],
                ..Default::default()
            },
            8,
        )
        .await;
    assert_eq!(r.groups[0].error_code, ErrorCode::NotCoordinator.code());
    // And then the real answers.
    assert_eq!(
        c.call(&join_req("g", "", None, &range(&["t"])), 5).await.error_code,
        ErrorCode::MemberIdRequired.code()
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn expired_offsets_and_empty_groups_are_removed_by_housekeeping() {
    let cluster = Cluster::builder().broker_config("offsets.retention.minutes", "1").start().await.unwrap();
    cluster.create_topic("t", 1, 1).await.unwrap();
    let mut c = Client::to(&cluster, 1).await;
    c.call(&commit_req("simple", -1, "", &[("t", 0, 5)]), 8).await;
    let id = solo_member(&mut c, "member-less-soon", &["t"], b"").await;
    c.call(&leave("member-less-soon", &[(&id, None)]), 3).await;
    cluster.run_housekeeping().await.unwrap();
    let groups = |r: ListGroupsResponse| r.groups.into_iter().map(|g| g.group_id).collect::<Vec<_>>();
    assert_eq!(
        groups(c.call(&ListGroupsRequest::default(), 3).await),
        ["simple"],
        "an empty group without offsets goes"
    );
    cluster.advance_clock(50_000).await.unwrap();
    cluster.run_housekeeping().await.unwrap();
    assert_eq!(
        c.call(&fetch_req_v7("simple", Some(&[("t", &[0])])), 7).await.topics[0].partitions[0].committed_offset,
        5
    );
    cluster.advance_clock(10_000).await.unwrap();
    cluster.run_housekeeping().await.unwrap();
    assert_eq!(
        c.call(&fetch_req_v7("simple", Some(&[("t", &[0])])), 7).await.topics[0].partitions[0].committed_offset,
        -1
    );
    assert!(groups(c.call(&ListGroupsRequest::default(), 3).await).is_empty());
    cluster.shutdown().await;
}
