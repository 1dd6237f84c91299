//! AddOffsetsToTxn (key 25), versions 0-4: a producer about to commit a consumer group's
//! offsets in its transaction adds the group's `__consumer_offsets` partition to it, asked of
//! the transactional id's coordinator (the TxnOffsetCommit that follows goes to the group
//! coordinator). Versions before 2 get INVALID_PRODUCER_EPOCH where newer ones get
//! PRODUCER_FENCED.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::Ctx;
use crate::cluster::State;
use crate::groups::partition_for;
use crate::txn::OFFSETS_TOPIC;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

/// The error answer.
pub(crate) fn refuse(code: ErrorCode) -> AddOffsetsToTxnResponse {
    AddOffsetsToTxnResponse { error_code: code.code(), ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let partition = partition_for(&req.group_id, state.groups.config.offsets_topic_partitions);
    let code = state.add_partitions_to_txn(
        ctx.broker,
        &req.transactional_id,
        req.producer_id,
        req.producer_epoch,
        &[(OFFSETS_TOPIC.to_string(), partition)],
        ctx.now_ms,
    );
    refuse(fenced_for(code, ctx.version, 2))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::assert_encodes;
    use kafka_protocol::messages::RequestHeader;

    #[test]
    fn the_groups_offsets_partition_joins_the_transaction() {
        let mut s = test_state(1);
        let (pid, epoch) = s.init_transactional_producer(1, "x", 1000, None, 0).unwrap();
        let header = RequestHeader::default();
        let ctx = |version| Ctx { broker: 1, peer: None, header: &header, version, now_ms: 0, final_attempt: false };
        let req = |epoch| AddOffsetsToTxnRequest {
            transactional_id: "x".into(),
            producer_id: pid,
            producer_epoch: epoch,
            group_id: "group".into(),
            ..Default::default()
        };
        assert_eq!(handle(&mut s, ctx(0), &req(epoch)).error_code, 0);
        let want = (OFFSETS_TOPIC.to_string(), partition_for("group", 50));
        assert!(s.txns.txns["x"].partitions.contains(&want));
        assert_eq!(handle(&mut s, ctx(1), &req(epoch + 1)).error_code, ErrorCode::InvalidProducerEpoch.code());
        assert_eq!(handle(&mut s, ctx(2), &req(epoch + 1)).error_code, ErrorCode::ProducerFenced.code());
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse(ErrorCode::NotCoordinator), v);
        }
    }
}
