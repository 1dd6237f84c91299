//! DeleteRecords (key 21), versions 0-2: moves a partition's log start offset forward
//! (-1 means the high watermark); whole batches below it are dropped. Asked of the leader.

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use kafka_protocol::ErrorCode;

use super::{leader_partition, Ctx, Handled};
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 2;

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &DeleteRecordsRequest) -> Handled {
    let mut freed = Vec::new();
    let topics = req
        .topics
        .iter()
        .map(|t| DeleteRecordsTopicResult {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult {
                        partition_index: p.partition_index,
                        low_watermark: -1,
                        error_code: 0,
                        ..Default::default()
                    };
                    match leader_partition(state, ctx.broker, &t.name, p.partition_index, -1) {
                        Ok((_, partition)) => {
                            let hw = partition.log.high_watermark();
                            let target = if p.offset == -1 { hw } else { p.offset };
                            if target < 0 || target > hw {
                                r.error_code = ErrorCode::OffsetOutOfRange.code();
                            } else {
                                partition.log.delete_records_before(target);
                                r.low_watermark = partition.log.log_start_offset();
                                freed.extend(partition.log.take_freed());
                            }
                        }
                        Err(e) => r.error_code = e.code.code(),
                    }
                    r
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    state.pool.give_all(freed);
    // A fetch waiting on a partition whose start moved must look again.
    state.data_version += 1;
    Handled::Respond(DeleteRecordsResponse { throttle_time_ms: 0, topics, ..Default::default() }.into())
}
