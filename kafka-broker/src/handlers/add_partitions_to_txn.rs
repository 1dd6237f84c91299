//! AddPartitionsToTxn (key 24), versions 0-5: a producer adds partitions to its transaction,
//! asked of the transactional id's coordinator. v0-3 are the client form (one transaction);
//! v4+ are the form brokers send each other (a batch of transactions, each either added or
//! only verified: `verify_only`, KIP-890), answered the same way Kafka answers it. Partitions
//! of unknown topics fail the whole transaction: UNKNOWN_TOPIC_OR_PARTITION for them,
//! OPERATION_NOT_ATTEMPTED for the others. Versions before 2 get INVALID_PRODUCER_EPOCH where
//! newer ones get PRODUCER_FENCED.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::{lookup_partition, Ctx};
use crate::cluster::State;
use crate::txn::TxnPartition;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// Every partition of `topics` with the code `code_for` gives it.
fn results(
    topics: &[AddPartitionsToTxnTopic],
    code_for: impl Fn(&str, i32) -> ErrorCode,
) -> Vec<AddPartitionsToTxnTopicResult> {
    topics
        .iter()
        .map(|t| AddPartitionsToTxnTopicResult {
            name: t.name.clone(),
            results_by_partition: t
                .partitions
                .iter()
                .map(|p| AddPartitionsToTxnPartitionResult {
                    partition_index: *p,
                    partition_error_code: code_for(&t.name, *p).code(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// One transaction's partitions, added or verified.
#[allow(clippy::too_many_arguments)]
fn one(
    state: &mut State,
    ctx: &Ctx<'_>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: &[AddPartitionsToTxnTopic],
) -> Vec<AddPartitionsToTxnTopicResult> {
    let exists = |state: &State, t: &str, p: i32| lookup_partition(state, t, p).is_some();
    if topics.iter().any(|t| t.partitions.iter().any(|p| !exists(state, &t.name, *p))) {
        let state: &State = state;
        return results(topics, |t, p| {
            if exists(state, t, p) {
                ErrorCode::OperationNotAttempted
            } else {
                ErrorCode::UnknownTopicOrPartition
            }
        });
    }
    let partitions: Vec<TxnPartition> =
        topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), *p))).collect();
    if !verify_only {
        let code = state.add_partitions_to_txn(
            ctx.broker,
            transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
            ctx.now_ms,
        );
        let code = fenced_for(code, ctx.version, 2);
        return results(topics, |_, _| code);
    }
    // Verification answers each partition (Kafka's handleVerifyPartitionsInTransaction).
    let whole = if transactional_id.is_empty() {
        Some(ErrorCode::InvalidRequest)
    } else if !state.is_txn_coordinator(ctx.broker, transactional_id) {
        Some(ErrorCode::NotCoordinator)
    } else {
        None
    };
    let state: &State = state;
    results(topics, |t, p| {
        whole.unwrap_or_else(|| {
            state.verify_txn_partition(transactional_id, producer_id, producer_epoch, &(t.to_string(), p))
        })
    })
}

/// Refuses every partition of `req` with `code` (injected errors).
pub(crate) fn refuse_all(req: &AddPartitionsToTxnRequest, version: i16, code: ErrorCode) -> AddPartitionsToTxnResponse {
    if version < 4 {
        AddPartitionsToTxnResponse {
            results_by_topic_v3_and_below: results(&req.v3_and_below_topics, |_, _| code),
            ..Default::default()
        }
    } else {
        AddPartitionsToTxnResponse { error_code: code.code(), ..Default::default() }
    }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    if ctx.version < 4 {
        let topics = one(
            state,
            &ctx,
            &req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id,
            req.v3_and_below_producer_epoch,
            false,
            &req.v3_and_below_topics,
        );
        return AddPartitionsToTxnResponse { results_by_topic_v3_and_below: topics, ..Default::default() };
    }
    let results_by_transaction = req
        .transactions
        .iter()
        .map(|t| AddPartitionsToTxnResult {
            transactional_id: t.transactional_id.clone(),
            topic_results: one(
                state,
                &ctx,
                &t.transactional_id,
                t.producer_id,
                t.producer_epoch,
                t.verify_only,
                &t.topics,
            ),
            ..Default::default()
        })
        .collect();
    AddPartitionsToTxnResponse { error_code: 0, results_by_transaction, ..Default::default() }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::assert_encodes;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
    use kafka_protocol::messages::RequestHeader;
    use std::collections::BTreeMap;

    fn ctx(header: &RequestHeader, version: i16) -> Ctx<'_> {
        Ctx { broker: 1, peer: None, header, version, now_ms: 0, final_attempt: false }
    }

    fn topics(spec: &[(&str, &[i32])]) -> Vec<AddPartitionsToTxnTopic> {
        spec.iter()
            .map(|(n, ps)| AddPartitionsToTxnTopic { name: (*n).into(), partitions: ps.to_vec(), ..Default::default() })
            .collect()
    }

    fn codes(r: &[AddPartitionsToTxnTopicResult]) -> Vec<(String, i32, i16)> {
        r.iter()
            .flat_map(|t| {
                t.results_by_partition.iter().map(|p| (t.name.clone(), p.partition_index, p.partition_error_code))
            })
            .collect()
    }

    #[test]
    fn unknown_topics_fail_the_transaction_and_old_versions_get_invalid_producer_epoch() {
        let mut s = test_state(1);
        s.add_topic("t", 2, 1, BTreeMap::new());
        let (pid, epoch) = s.init_transactional_producer(1, "x", 1000, None, 0).unwrap();
        let header = RequestHeader::default();
        let req = |epoch: i16, spec: &[(&str, &[i32])]| AddPartitionsToTxnRequest {
            v3_and_below_transactional_id: "x".into(),
            v3_and_below_producer_id: pid,
            v3_and_below_producer_epoch: epoch,
            v3_and_below_topics: topics(spec),
            ..Default::default()
        };
        let r = handle(&mut s, ctx(&header, 1), &req(epoch, &[("t", &[0, 5]), ("nope", &[0])]));
        let (ok, unknown, not_attempted) =
            (0, ErrorCode::UnknownTopicOrPartition.code(), ErrorCode::OperationNotAttempted.code());
        assert_eq!(
            codes(&r.results_by_topic_v3_and_below),
            vec![("t".into(), 0, not_attempted), ("t".into(), 5, unknown), ("nope".into(), 0, unknown)]
        );
        assert!(s.txns.txns["x"].partitions.is_empty(), "nothing was added");
        let r = handle(&mut s, ctx(&header, 1), &req(epoch + 1, &[("t", &[0])]));
        assert_eq!(codes(&r.results_by_topic_v3_and_below)[0].2, ErrorCode::InvalidProducerEpoch.code());
        let r = handle(&mut s, ctx(&header, 2), &req(epoch + 1, &[("t", &[0])]));
        assert_eq!(codes(&r.results_by_topic_v3_and_below)[0].2, ErrorCode::ProducerFenced.code());
        let r = handle(&mut s, ctx(&header, 3), &req(epoch, &[("t", &[0, 1])]));
        assert_eq!(codes(&r.results_by_topic_v3_and_below), vec![("t".into(), 0, ok), ("t".into(), 1, ok)]);
        // The broker form: verify only, per partition.
        let v4 = AddPartitionsToTxnRequest {
            transactions: vec![AddPartitionsToTxnTransaction {
                transactional_id: "x".into(),
                producer_id: pid,
                producer_epoch: epoch,
                verify_only: true,
                topics: vec![AddPartitionsToTxnTopic { name: "t".into(), partitions: vec![1], ..Default::default() }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let r = handle(&mut s, ctx(&header, 5), &v4);
        assert_eq!(codes(&r.results_by_transaction[0].topic_results), vec![("t".into(), 1, 0)]);
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(handle(&mut s, ctx(&header, v), &req(epoch, &[("t", &[0])])), v);
            assert_encodes(handle(&mut s, ctx(&header, v), &v4), v);
            assert_encodes(refuse_all(&req(epoch, &[("t", &[0])]), v, ErrorCode::NotCoordinator), v);
        }
    }
}
