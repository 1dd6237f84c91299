//! ListOffsets (key 2), versions 1-10 (Kafka 4 dropped v0, which answers UNSUPPORTED_VERSION):
//! earliest (-2), latest (-1, the last stable offset under read_committed), max timestamp
//! (-3, v7+), earliest local (-4, v8+: the log start, nothing is tiered), latest tiered (-5,
//! v9+: none), and the earliest offset at or after a timestamp.

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ErrorCode;

use super::{leader_partition, Ctx, Handled};
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 1;
pub(crate) const MAX_VERSION: i16 = 10;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &ListOffsetsRequest) -> Handled {
    let version = ctx.version;
    let committed = version >= 2 && req.isolation_level == 1;
    let topics = req
        .topics
        .iter()
        .map(|t| ListOffsetsTopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse {
                        partition_index: p.partition_index,
                        error_code: 0,
                        old_style_offsets: Vec::new(),
                        timestamp: -1,
                        offset: -1,
                        leader_epoch: -1,
                        ..Default::default()
                    };
                    let epoch_check = if version >= 4 { p.current_leader_epoch } else { -1 };
                    let (_, partition) =
                        match leader_partition(state, ctx.broker, &t.name, p.partition_index, epoch_check) {
                            Ok(found) => found,
                            Err(e) => {
                                r.error_code = e.code.code();
                                return r;
                            }
                        };
                    let log = &partition.log;
                    let found = match p.timestamp {
                        LATEST if committed => Some((log.last_stable_offset(), -1)),
                        LATEST => Some((log.high_watermark(), -1)),
                        EARLIEST | EARLIEST_LOCAL => Some((log.log_start_offset(), -1)),
                        MAX_TIMESTAMP => log.max_timestamp_offset(),
                        LATEST_TIERED => None,
                        ts if ts >= 0 => log.offset_for_timestamp(ts),
                        _ => {
                            r.error_code = ErrorCode::InvalidRequest.code();
                            return r;
                        }
                    };
                    if let Some((offset, ts)) = found {
                        let upper = if committed { log.last_stable_offset() } else { log.high_watermark() };
                        if p.timestamp >= 0 && offset >= upper {
                            return r;
                        }
                        r.offset = offset;
                        r.timestamp = ts;
                        r.leader_epoch = if version < 4 {
                            -1
                        } else if offset >= log.log_end_offset() {
                            partition.leader_epoch
                        } else {
                            log.epoch_at(offset)
                        };
                    }
                    r
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    Handled::Respond(ListOffsetsResponse { throttle_time_ms: 0, topics, ..Default::default() }.into())
}
