//! DescribeProducers (key 61), version 0: the producers each partition remembers (id, epoch,
//! last sequence, last timestamp, the coordinator epoch of the last marker, and the first
//! offset of an open transaction: `current_txn_start_offset`); asked of the partition's leader.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};

use super::{leader_partition, Ctx};
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 0;

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| TopicResponse {
            name: t.name.clone(),
            partitions: t
                .partition_indexes
                .iter()
                .map(|&index| match leader_partition(state, ctx.broker, &t.name, index, -1) {
                    Ok((_, partition)) => {
                        let mut active: Vec<ProducerState> = partition
                            .log
                            .producers
                            .iter()
                            .map(|(id, e)| ProducerState {
                                producer_id: *id,
                                producer_epoch: i32::from(e.epoch),
                                last_sequence: e.last_seq(),
                                last_timestamp: e.last_timestamp,
                                coordinator_epoch: e.coordinator_epoch,
                                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
                                ..Default::default()
                            })
                            .collect();
                        active.sort_by_key(|p| p.producer_id);
                        PartitionResponse {
                            partition_index: index,
                            error_code: 0,
                            error_message: None,
                            active_producers: active,
                            ..Default::default()
                        }
                    }
                    Err(e) => PartitionResponse {
                        partition_index: index,
                        error_code: e.code.code(),
                        error_message: Some(e.message),
                        ..Default::default()
                    },
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    DescribeProducersResponse { throttle_time_ms: 0, topics, ..Default::default() }
}
