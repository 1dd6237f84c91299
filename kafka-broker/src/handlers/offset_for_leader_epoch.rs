//! OffsetForLeaderEpoch (key 23), versions 0-4: the end offset of a leader epoch, which
//! consumers use to detect log truncation after a leader change (KIP-320). Asked of the
//! leader; `current_leader_epoch` (v2+) is checked.

use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{leader_partition, Ctx};
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

pub(crate) fn handle(
    state: &mut State,
    ctx: Ctx<'_>,
    req: &OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| OffsetForLeaderTopicResult {
            topic: t.topic.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let check = if ctx.version >= 2 { p.current_leader_epoch } else { -1 };
                    match leader_partition(state, ctx.broker, &t.topic, p.partition, check) {
                        Ok((_, partition)) => {
                            let (epoch, end) =
                                partition.log.end_offset_for_epoch(p.leader_epoch, partition.leader_epoch);
                            EpochEndOffset {
                                error_code: 0,
                                partition: p.partition,
                                leader_epoch: epoch,
                                end_offset: end,
                                ..Default::default()
                            }
                        }
                        Err(e) => EpochEndOffset {
                            error_code: e.code.code(),
                            partition: p.partition,
                            leader_epoch: -1,
                            end_offset: -1,
                            ..Default::default()
                        },
                    }
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    OffsetForLeaderEpochResponse { throttle_time_ms: 0, topics, ..Default::default() }
}
