//! Error answers built from a request: every partition (or the whole response, for APIs
//! without partitions; every group or coordinator key, for batched group APIs) carries the
//! given code. Used for injected errors and for versions
//! Kafka 4 removed; the layout is the
//! one a real broker sends when it refuses the request.

use kafka_protocol::messages::*;
use kafka_protocol::ErrorCode;

/// The error answer to `body` with `code` everywhere, or `None` for an API this broker
/// cannot answer.
pub(crate) fn error_response(body: &RequestBody, version: i16, code: ErrorCode) -> Option<ResponseBody> {
    let c = code.code();
    Some(match body {
        RequestBody::Produce(r) => super::produce::refuse_all(r, code).into(),
        RequestBody::Fetch(r) => super::fetch::refuse_all(r, version, code).into(),
        RequestBody::ListOffsets(r) => ListOffsetsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| list_offsets_response::ListOffsetsTopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| list_offsets_response::ListOffsetsPartitionResponse {
                            partition_index: p.partition_index,
                            error_code: c,
                            timestamp: -1,
                            offset: -1,
                            leader_epoch: -1,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::Metadata(r) => MetadataResponse {
            cluster_id: None,
            controller_id: -1,
            cluster_authorized_operations: i32::MIN,
            topics: r
                .topics
                .iter()
                .flatten()
                .map(|t| metadata_response::MetadataResponseTopic {
                    error_code: c,
                    name: t.name.clone(),
                    topic_id: t.topic_id,
                    topic_authorized_operations: i32::MIN,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::ApiVersions(_) => ApiVersionsResponse { error_code: c, ..Default::default() }.into(),
        RequestBody::CreateTopics(r) => CreateTopicsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| create_topics_response::CreatableTopicResult {
                    name: t.name.clone(),
                    error_code: c,
                    error_message: None,
                    num_partitions: -1,
                    replication_factor: -1,
                    configs: None,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::InitProducerId(_) => super::init_producer_id::refuse(code).into(),
        RequestBody::AddPartitionsToTxn(r) => super::add_partitions_to_txn::refuse_all(r, version, code).into(),
        RequestBody::AddOffsetsToTxn(_) => super::add_offsets_to_txn::refuse(code).into(),
        RequestBody::EndTxn(_) => super::end_txn::refuse(code).into(),
        RequestBody::TxnOffsetCommit(r) => super::txn_offset_commit::refuse_all(r, code).into(),
        RequestBody::DescribeTransactions(r) => super::describe_transactions::refuse_all(r, code).into(),
        RequestBody::ListTransactions(_) => super::list_transactions::refuse(code).into(),
        RequestBody::DeleteRecords(r) => DeleteRecordsResponse {
            topics: r
                .topics
                .iter()
                .map(|t| delete_records_response::DeleteRecordsTopicResult {
                    name: t.name.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| delete_records_response::DeleteRecordsPartitionResult {
                            partition_index: p.partition_index,
                            low_watermark: -1,
                            error_code: c,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::OffsetForLeaderEpoch(r) => OffsetForLeaderEpochResponse {
            topics: r
                .topics
                .iter()
                .map(|t| offset_for_leader_epoch_response::OffsetForLeaderTopicResult {
                    topic: t.topic.clone(),
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| offset_for_leader_epoch_response::EpochEndOffset {
                            error_code: c,
                            partition: p.partition,
                            leader_epoch: -1,
                            end_offset: -1,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::DescribeProducers(r) => DescribeProducersResponse {
            topics: r
                .topics
                .iter()
                .map(|t| describe_producers_response::TopicResponse {
                    name: t.name.clone(),
                    partitions: t
                        .partition_indexes
                        .iter()
                        .map(|p| describe_producers_response::PartitionResponse {
                            partition_index: *p,
                            error_code: c,
                            error_message: None,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
        .into(),
        RequestBody::FindCoordinator(r) => super::find_coordinator::refuse_all(r, version, code).into(),
        RequestBody::JoinGroup(r) => super::join_group::refuse(r, version, code).into(),
        RequestBody::SyncGroup(_) => super::sync_group::refuse(version, code).into(),
        RequestBody::Heartbeat(_) => super::heartbeat::refuse(code).into(),
        RequestBody::LeaveGroup(_) => super::leave_group::refuse(code).into(),
        RequestBody::OffsetCommit(r) => super::offset_commit::refuse_all(r, code).into(),
        RequestBody::OffsetFetch(r) => super::offset_fetch::refuse_all(r, version, code).into(),
        RequestBody::OffsetDelete(_) => super::offset_delete::refuse(code).into(),
        RequestBody::ListGroups(_) => super::list_groups::refuse(code).into(),
        RequestBody::DescribeGroups(r) => super::describe_groups::refuse_all(r, code).into(),
        RequestBody::DeleteGroups(r) => super::delete_groups::refuse_all(r, code).into(),
        RequestBody::ConsumerGroupHeartbeat(_) => super::consumer_group_heartbeat::refuse(code, None).into(),
        RequestBody::ConsumerGroupDescribe(r) => super::consumer_group_describe::refuse_all(r, code).into(),
        _ => return None,
    })
}
