//! OffsetFetch (key 9), versions 1-9 (Kafka 4 dropped v0, which answers UNSUPPORTED_VERSION):
//! one group (v1-7) or a batch (v8+); every committed partition when the topic list is null
//! (v2+). A group-level error is per partition in v1 (which has no top-level error), at the
//! top in v2-7 and per group in v8+. `require_stable` (v7+) answers UNSTABLE_OFFSET_COMMIT for
//! partitions with pending transactional offsets.

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::groups::offsets::FetchedOffset;

pub(crate) const MIN_VERSION: i16 = 1;
pub(crate) const MAX_VERSION: i16 = 9;

/// One group's answer before it is fitted to the version.
struct GroupAnswer {
    group_id: String,
    error: ErrorCode,
    topics: Vec<(String, Vec<FetchedOffset>)>,
}

/// The requested (topic, partitions), or `None` for all.
type Wanted = Option<Vec<(String, Vec<i32>)>>;

/// The group ids and topic lists of the request.
fn groups_of(req: &OffsetFetchRequest, version: i16) -> Vec<(String, Wanted)> {
    if version >= 8 {
        req.groups
            .iter()
            .map(|g| {
                let topics = g
                    .topics
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
                (g.group_id.clone(), topics)
            })
            .collect()
    } else {
        let topics =
            req.topics.as_ref().map(|ts| ts.iter().map(|t| (t.name.clone(), t.partition_indexes.clone())).collect());
        vec![(req.group_id.clone(), topics)]
    }
}

fn answer_group(
    state: &State,
    ctx: &Ctx<'_>,
    group_id: String,
    wanted: Wanted,
    require_stable: bool,
    member: Option<(Option<&str>, i32)>,
) -> GroupAnswer {
    if !state.is_group_coordinator(ctx.broker, &group_id) {
        return GroupAnswer { group_id, error: ErrorCode::NotCoordinator, topics: refused(&wanted, ErrorCode::None) };
    }
    // v9 (KIP-848): a consumer group's member fetching its offsets must be at its epoch.
    if let Some((member_id, epoch)) = member {
        if let Err(code) = state.groups.validate_offset_fetch(&group_id, member_id, epoch) {
            return GroupAnswer { group_id, error: code, topics: refused(&wanted, ErrorCode::None) };
        }
    }
    let topics = state.groups.fetch_offsets(&group_id, wanted.as_deref(), require_stable);
    GroupAnswer { group_id, error: ErrorCode::None, topics }
}

/// The requested partitions, nothing committed, with `code`.
fn refused(wanted: &Wanted, code: ErrorCode) -> Vec<(String, Vec<FetchedOffset>)> {
    wanted
        .iter()
        .flatten()
        .map(|(topic, partitions)| {
            let fetched = partitions
                .iter()
                .map(|p| FetchedOffset {
                    partition: *p,
                    offset: -1,
                    leader_epoch: -1,
                    metadata: String::new(),
                    error: code,
                })
                .collect();
            (topic.clone(), fetched)
        })
        .collect()
}

fn build(version: i16, answers: Vec<GroupAnswer>) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = answers
            .into_iter()
            .map(|a| OffsetFetchResponseGroup {
                group_id: a.group_id,
                error_code: a.error.code(),
                // A group-level error carries no partitions, as in Kafka.
                topics: if a.error != ErrorCode::None {
                    Vec::new()
                } else {
                    a.topics
                        .into_iter()
                        .map(|(name, parts)| OffsetFetchResponseTopics {
                            name,
                            partitions: parts
                                .into_iter()
                                .map(|f| OffsetFetchResponsePartitions {
                                    partition_index: f.partition,
                                    committed_offset: f.offset,
                                    committed_leader_epoch: f.leader_epoch,
                                    metadata: Some(f.metadata),
                                    error_code: f.error.code(),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect()
                },
                ..Default::default()
            })
            .collect();
        return OffsetFetchResponse { groups, ..Default::default() };
    }
    let Some(a) = answers.into_iter().next() else { return OffsetFetchResponse::default() };
    let group_error = a.error;
    let topics = a
        .topics
        .into_iter()
        .map(|(name, parts)| OffsetFetchResponseTopic {
            name,
            partitions: parts
                .into_iter()
                .map(|f| {
                    // v1 has no top-level error: the group's error goes to every partition.
                    let error = if version < 2 && group_error != ErrorCode::None { group_error } else { f.error };
                    OffsetFetchResponsePartition {
                        partition_index: f.partition,
                        committed_offset: f.offset,
                        committed_leader_epoch: f.leader_epoch,
                        metadata: Some(f.metadata),
                        error_code: error.code(),
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
        .filter(|_| version < 2 || group_error == ErrorCode::None)
        .collect();
    OffsetFetchResponse {
        throttle_time_ms: 0,
        topics,
        error_code: if version >= 2 { group_error.code() } else { 0 },
        ..Default::default()
    }
}

/// The answer with `code` for every group (v2+) or every partition (v1).
pub(crate) fn refuse_all(req: &OffsetFetchRequest, version: i16, code: ErrorCode) -> OffsetFetchResponse {
    let answers = groups_of(req, version)
        .into_iter()
        .map(|(group_id, wanted)| GroupAnswer { group_id, error: code, topics: refused(&wanted, ErrorCode::None) })
        .collect();
    build(version, answers)
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &OffsetFetchRequest) -> OffsetFetchResponse {
    let version = ctx.version;
    let require_stable = version >= 7 && req.require_stable;
    let answers = groups_of(req, version)
        .into_iter()
        .enumerate()
        .map(|(i, (group_id, wanted))| {
            let member =
                if version >= 9 { req.groups.get(i).map(|g| (g.member_id.as_deref(), g.member_epoch)) } else { None };
            answer_group(state, &ctx, group_id, wanted, require_stable, member)
        })
        .collect();
    build(version, answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
    };

    fn request(version: i16) -> OffsetFetchRequest {
        if version >= 8 {
            OffsetFetchRequest {
                groups: vec![OffsetFetchRequestGroup {
                    group_id: "g".into(),
                    topics: Some(vec![OffsetFetchRequestTopics {
                        name: "t".into(),
                        partition_indexes: vec![0, 1],
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }
        } else {
            OffsetFetchRequest {
                group_id: "g".into(),
                topics: Some(vec![OffsetFetchRequestTopic {
                    name: "t".into(),
                    partition_indexes: vec![0, 1],
                    ..Default::default()
                }]),
                ..Default::default()
            }
        }
    }

    #[test]
    fn group_errors_go_where_each_version_has_room() {
        let v1 = refuse_all(&request(1), 1, ErrorCode::NotCoordinator);
        assert_eq!(v1.error_code, 0);
        assert!(v1.topics[0].partitions.iter().all(|p| p.error_code == ErrorCode::NotCoordinator.code()));
        let v5 = refuse_all(&request(5), 5, ErrorCode::NotCoordinator);
        assert_eq!((v5.error_code, v5.topics.len()), (ErrorCode::NotCoordinator.code(), 0));
        let v8 = refuse_all(&request(8), 8, ErrorCode::NotCoordinator);
        assert_eq!(v8.groups[0].error_code, ErrorCode::NotCoordinator.code());
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse_all(&request(v), v, ErrorCode::CoordinatorLoadInProgress), v);
        }
    }
}
