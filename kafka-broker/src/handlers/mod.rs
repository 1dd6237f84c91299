//! One module per API, named like Kafka's APIs (franz-go's kfake layout), each opening with
//! the versions it supports. Every handler runs on the state task.

pub(crate) mod add_offsets_to_txn;
pub(crate) mod add_partitions_to_txn;
pub(crate) mod alter_configs;
pub(crate) mod api_versions;
pub(crate) mod consumer_group_describe;
pub(crate) mod consumer_group_heartbeat;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_groups;
pub(crate) mod delete_records;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod describe_groups;
pub(crate) mod describe_producers;
pub(crate) mod describe_transactions;
pub(crate) mod end_txn;
pub(crate) mod errors;
pub(crate) mod fetch;
pub(crate) mod find_coordinator;
pub(crate) mod heartbeat;
pub(crate) mod incremental_alter_configs;
pub(crate) mod init_producer_id;
pub(crate) mod join_group;
pub(crate) mod leave_group;
pub(crate) mod list_groups;
pub(crate) mod list_offsets;
pub(crate) mod list_transactions;
pub(crate) mod metadata;
pub(crate) mod offset_commit;
pub(crate) mod offset_delete;
pub(crate) mod offset_fetch;
pub(crate) mod offset_for_leader_epoch;
pub(crate) mod produce;
pub(crate) mod sync_group;
pub(crate) mod txn_offset_commit;

use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody};
use kafka_protocol::ErrorCode;

use crate::cluster::{Partition, State};
use crate::configs::LogSettings;

/// The APIs this broker implements and the versions of each, exactly what ApiVersions
/// advertises. A version outside these ranges is never sent by a client that read
/// ApiVersions first.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, api_versions::MIN_VERSION, api_versions::MAX_VERSION),
    // Answered on the connection task (server.rs, security.rs), advertised on every listener
    // as Kafka does. SaslHandshake v0 (raw SASL frames after it) is not supported.
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::Metadata, metadata::MIN_VERSION, metadata::MAX_VERSION),
    (ApiKey::CreateTopics, create_topics::MIN_VERSION, create_topics::MAX_VERSION),
    (ApiKey::Produce, produce::MIN_VERSION, produce::MAX_VERSION),
    (ApiKey::Fetch, fetch::MIN_VERSION, fetch::MAX_VERSION),
    (ApiKey::ListOffsets, list_offsets::MIN_VERSION, list_offsets::MAX_VERSION),
    (ApiKey::InitProducerId, init_producer_id::MIN_VERSION, init_producer_id::MAX_VERSION),
    (ApiKey::DescribeProducers, describe_producers::MIN_VERSION, describe_producers::MAX_VERSION),
    (ApiKey::OffsetForLeaderEpoch, offset_for_leader_epoch::MIN_VERSION, offset_for_leader_epoch::MAX_VERSION),
    (ApiKey::DeleteRecords, delete_records::MIN_VERSION, delete_records::MAX_VERSION),
    (ApiKey::DeleteTopics, delete_topics::MIN_VERSION, delete_topics::MAX_VERSION),
    (ApiKey::DescribeConfigs, describe_configs::MIN_VERSION, describe_configs::MAX_VERSION),
    (ApiKey::AlterConfigs, alter_configs::MIN_VERSION, alter_configs::MAX_VERSION),
    (ApiKey::CreatePartitions, create_partitions::MIN_VERSION, create_partitions::MAX_VERSION),
    (ApiKey::IncrementalAlterConfigs, incremental_alter_configs::MIN_VERSION, incremental_alter_configs::MAX_VERSION),
    (ApiKey::DescribeCluster, describe_cluster::MIN_VERSION, describe_cluster::MAX_VERSION),
    (ApiKey::FindCoordinator, find_coordinator::MIN_VERSION, find_coordinator::MAX_VERSION),
    (ApiKey::JoinGroup, join_group::MIN_VERSION, join_group::MAX_VERSION),
    (ApiKey::SyncGroup, sync_group::MIN_VERSION, sync_group::MAX_VERSION),
    (ApiKey::Heartbeat, heartbeat::MIN_VERSION, heartbeat::MAX_VERSION),
    (ApiKey::LeaveGroup, leave_group::MIN_VERSION, leave_group::MAX_VERSION),
    (ApiKey::OffsetCommit, offset_commit::MIN_VERSION, offset_commit::MAX_VERSION),
    (ApiKey::OffsetFetch, offset_fetch::MIN_VERSION, offset_fetch::MAX_VERSION),
    (ApiKey::OffsetDelete, offset_delete::MIN_VERSION, offset_delete::MAX_VERSION),
    (ApiKey::ListGroups, list_groups::MIN_VERSION, list_groups::MAX_VERSION),
    (ApiKey::DescribeGroups, describe_groups::MIN_VERSION, describe_groups::MAX_VERSION),
    (ApiKey::DeleteGroups, delete_groups::MIN_VERSION, delete_groups::MAX_VERSION),
    (ApiKey::ConsumerGroupHeartbeat, consumer_group_heartbeat::MIN_VERSION, consumer_group_heartbeat::MAX_VERSION),
    (ApiKey::ConsumerGroupDescribe, consumer_group_describe::MIN_VERSION, consumer_group_describe::MAX_VERSION),
    (ApiKey::AddPartitionsToTxn, add_partitions_to_txn::MIN_VERSION, add_partitions_to_txn::MAX_VERSION),
    (ApiKey::AddOffsetsToTxn, add_offsets_to_txn::MIN_VERSION, add_offsets_to_txn::MAX_VERSION),
    (ApiKey::EndTxn, end_txn::MIN_VERSION, end_txn::MAX_VERSION),
    (ApiKey::TxnOffsetCommit, txn_offset_commit::MIN_VERSION, txn_offset_commit::MAX_VERSION),
    (ApiKey::DescribeTransactions, describe_transactions::MIN_VERSION, describe_transactions::MAX_VERSION),
    (ApiKey::ListTransactions, list_transactions::MIN_VERSION, list_transactions::MAX_VERSION),
];

/// Whether `version` of `api` is implemented.
pub(crate) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == api && (*min..=*max).contains(&version))
}

/// What a handler decided.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Send this response.
    Respond(ResponseBody),
    /// Send nothing (a Produce with acks=0 that succeeded).
    Silent,
    /// Close the connection with this reason (a Produce with acks=0 that failed: Kafka's
    /// only way to tell such a producer).
    Close(String),
    /// Not answerable yet (a Fetch waiting for `min_bytes`): run the request again when data
    /// arrives, and for the last time at the deadline.
    Park(Instant),
    /// Answered later by the group coordinator through the ticket (a JoinGroup or SyncGroup
    /// waiting for the rebalance).
    Wait(u64),
    /// The API or version is not implemented.
    NotImplemented,
}

impl From<ResponseBody> for Handled {
    fn from(body: ResponseBody) -> Self {
        Handled::Respond(body)
    }
}

/// One request as the state task sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The node id of the broker the client is connected to.
    pub broker: i32,
    /// The client's address.
    pub peer: Option<std::net::IpAddr>,
    pub header: &'a RequestHeader,
    pub version: i16,
    /// The cluster clock (milliseconds since the epoch).
    pub now_ms: i64,
    /// A parked request's deadline has passed: answer with what there is.
    pub final_attempt: bool,
}

/// Handles one request.
/// Takes `&mut`: a produce request's record data moves into the log (not copied) when nothing
/// else holds it.
pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, body: &mut RequestBody) -> Handled {
    let version = ctx.version;
    // Versions Kafka 4 removed get Kafka's error answer rather than a closed connection.
    let removed = match body {
        RequestBody::Produce(_) => version < produce::MIN_VERSION,
        RequestBody::Fetch(_) => version < fetch::MIN_VERSION,
        RequestBody::ListOffsets(_) => version < list_offsets::MIN_VERSION,
        RequestBody::OffsetCommit(_) => version < offset_commit::MIN_VERSION,
        RequestBody::OffsetFetch(_) => version < offset_fetch::MIN_VERSION,
        _ => false,
    };
    if removed {
        if let Some(answer) = errors::error_response(body, version, ErrorCode::UnsupportedVersion) {
            return Handled::Respond(answer);
        }
    }
    if !supports(body.api_key(), version) {
        return Handled::NotImplemented;
    }
    match body {
        RequestBody::Produce(r) => produce::handle(state, ctx, r),
        RequestBody::Fetch(r) => fetch::handle(state, ctx, r),
        RequestBody::ListOffsets(r) => list_offsets::handle(state, ctx, r),
        RequestBody::InitProducerId(r) => ResponseBody::from(init_producer_id::handle(state, ctx, r)).into(),
        RequestBody::DescribeProducers(r) => ResponseBody::from(describe_producers::handle(state, ctx, r)).into(),
        RequestBody::OffsetForLeaderEpoch(r) => {
            ResponseBody::from(offset_for_leader_epoch::handle(state, ctx, r)).into()
        }
        RequestBody::DeleteRecords(r) => delete_records::handle(state, ctx, r),
        RequestBody::ApiVersions(r) => ResponseBody::from(api_versions::handle(state, version, r.clone())).into(),
        RequestBody::Metadata(r) => ResponseBody::from(metadata::handle(state, version, r.clone())).into(),
        RequestBody::CreateTopics(r) => ResponseBody::from(create_topics::handle(state, version, r.clone())).into(),
        RequestBody::DeleteTopics(r) => ResponseBody::from(delete_topics::handle(state, version, r)).into(),
        RequestBody::DescribeConfigs(r) => {
            ResponseBody::from(describe_configs::handle(state, ctx.broker, version, r)).into()
        }
        RequestBody::AlterConfigs(r) => ResponseBody::from(alter_configs::handle(state, ctx.broker, version, r)).into(),
        RequestBody::CreatePartitions(r) => ResponseBody::from(create_partitions::handle(state, version, r)).into(),
        RequestBody::IncrementalAlterConfigs(r) => {
            ResponseBody::from(incremental_alter_configs::handle(state, ctx.broker, version, r)).into()
        }
        RequestBody::DescribeCluster(r) => ResponseBody::from(describe_cluster::handle(state, version, r)).into(),
        RequestBody::FindCoordinator(r) => ResponseBody::from(find_coordinator::handle(state, version, r)).into(),
        RequestBody::JoinGroup(r) => join_group::handle(state, ctx, r),
        RequestBody::SyncGroup(r) => sync_group::handle(state, ctx, r),
        RequestBody::Heartbeat(r) => ResponseBody::from(heartbeat::handle(state, ctx, r)).into(),
        RequestBody::LeaveGroup(r) => ResponseBody::from(leave_group::handle(state, ctx, r)).into(),
        RequestBody::OffsetCommit(r) => ResponseBody::from(offset_commit::handle(state, ctx, r)).into(),
        RequestBody::OffsetFetch(r) => ResponseBody::from(offset_fetch::handle(state, ctx, r)).into(),
        RequestBody::OffsetDelete(r) => ResponseBody::from(offset_delete::handle(state, ctx, r)).into(),
        RequestBody::ListGroups(r) => ResponseBody::from(list_groups::handle(state, ctx, r)).into(),
        RequestBody::DescribeGroups(r) => ResponseBody::from(describe_groups::handle(state, ctx, r)).into(),
        RequestBody::DeleteGroups(r) => ResponseBody::from(delete_groups::handle(state, ctx, r)).into(),
        RequestBody::ConsumerGroupHeartbeat(r) => {
            ResponseBody::from(consumer_group_heartbeat::handle(state, ctx, r)).into()
        }
        RequestBody::ConsumerGroupDescribe(r) => {
            ResponseBody::from(consumer_group_describe::handle(state, ctx, r)).into()
        }
        RequestBody::AddPartitionsToTxn(r) => ResponseBody::from(add_partitions_to_txn::handle(state, ctx, r)).into(),
        RequestBody::AddOffsetsToTxn(r) => ResponseBody::from(add_offsets_to_txn::handle(state, ctx, r)).into(),
        RequestBody::EndTxn(r) => ResponseBody::from(end_txn::handle(state, ctx, r)).into(),
        RequestBody::TxnOffsetCommit(r) => ResponseBody::from(txn_offset_commit::handle(state, ctx, r)).into(),
        RequestBody::DescribeTransactions(r) => ResponseBody::from(describe_transactions::handle(state, ctx, r)).into(),
        RequestBody::ListTransactions(r) => ResponseBody::from(list_transactions::handle(state, ctx, r)).into(),
        _ => Handled::NotImplemented,
    }
}

/// Why a partition-level request cannot be served here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionError {
    pub code: ErrorCode,
    pub message: String,
    /// The current leader and its epoch, when the client asked the wrong broker.
    pub leader: Option<(i32, i32)>,
}

impl PartitionError {
    fn new(code: ErrorCode, message: String) -> Self {
        PartitionError { code, message, leader: None }
    }
}

/// Checks a client's `current_leader_epoch` (-1: no check) against the partition's (KIP-320).
pub(crate) fn check_leader_epoch(partition: &Partition, current_leader_epoch: i32) -> Result<(), PartitionError> {
    if current_leader_epoch < 0 || current_leader_epoch == partition.leader_epoch {
        return Ok(());
    }
    let code = if current_leader_epoch < partition.leader_epoch {
        ErrorCode::FencedLeaderEpoch
    } else {
        ErrorCode::UnknownLeaderEpoch
    };
    Err(PartitionError {
        code,
        message: format!(
            "The request's leader epoch {current_leader_epoch} does not match the current leader epoch {}",
            partition.leader_epoch
        ),
        leader: Some((partition.leader, partition.leader_epoch)),
    })
}

/// The partition `topic`-`index` if `broker` leads it, with its topic's log settings.
pub(crate) fn leader_partition<'a>(
    state: &'a mut State,
    broker: i32,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
) -> Result<(LogSettings, &'a mut Partition), PartitionError> {
    let (settings, partition) = find_partition(state, topic, index)?;
    if partition.leader != broker {
        let code = if partition.leader < 0 { ErrorCode::LeaderNotAvailable } else { ErrorCode::NotLeaderOrFollower };
        return Err(PartitionError {
            code,
            message: format!("This server is not the leader for partition {topic}-{index}"),
            leader: Some((partition.leader, partition.leader_epoch)),
        });
    }
    check_leader_epoch(partition, current_leader_epoch)?;
    Ok((settings, partition))
}

/// The partition `topic`-`index` with its topic's log settings, wherever it is led.
pub(crate) fn find_partition<'a>(
    state: &'a mut State,
    topic: &str,
    index: i32,
) -> Result<(LogSettings, &'a mut Partition), PartitionError> {
    let unknown = || {
        PartitionError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("This server does not host this topic-partition: {topic}-{index}"),
        )
    };
    if let Some(code) = state.faults.partition_error(topic, index) {
        let leader = lookup_partition(state, topic, index).map(|p| (p.leader, p.leader_epoch));
        return Err(PartitionError { code, message: format!("injected {code}"), leader });
    }
    let t = state.topics.get_mut(topic).ok_or_else(unknown)?;
    let settings = t.settings.clone();
    let partition = usize::try_from(index).ok().and_then(|i| t.partitions.get_mut(i)).ok_or_else(unknown)?;
    Ok((settings, partition))
}

/// How Kafka shows a client's address (`InetAddress.toString()` of an address without a
/// host name): "/127.0.0.1", or "/0:0:0:0:0:0:0:1" for IPv6.
pub(crate) fn client_host(peer: Option<std::net::IpAddr>) -> String {
    match peer {
        Some(std::net::IpAddr::V4(ip)) => format!("/{ip}"),
        Some(std::net::IpAddr::V6(ip)) => {
            let segments: Vec<String> = ip.segments().iter().map(|s| format!("{s:x}")).collect();
            format!("/{}", segments.join(":"))
        }
        None => String::new(),
    }
}

/// The partition `topic`-`index`, if it exists (no checks, no injected errors).
pub(crate) fn lookup_partition<'a>(state: &'a State, topic: &str, index: i32) -> Option<&'a Partition> {
    state.topics.get(topic).and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get(i)))
}

/// The partition `topic`-`index` for writing, if it exists (no checks, no injected errors).
pub(crate) fn lookup_partition_mut<'a>(state: &'a mut State, topic: &str, index: i32) -> Option<&'a mut Partition> {
    state.topics.get_mut(topic).and_then(|t| usize::try_from(index).ok().and_then(|i| t.partitions.get_mut(i)))
}
/// Fails unless `body` encodes at `version`: the encoder refuses a value in a field the
/// version does not have, which would otherwise surface only as a closed connection.
#[cfg(test)]
pub(crate) fn assert_encodes(body: impl Into<ResponseBody>, version: i16) {
    let body = body.into();
    let mut out = bytes::BytesMut::new();
    if let Err(e) = kafka_protocol::frame::encode_response_body(&mut out, 1, &body, version) {
        panic!("{:?} v{version} does not encode: {e}", body.api_key());
    }
}
