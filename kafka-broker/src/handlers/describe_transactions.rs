//! DescribeTransactions (key 65), version 0: the state of transactional ids, asked of their
//! coordinator (NOT_COORDINATOR otherwise; TRANSACTIONAL_ID_NOT_FOUND for unknown or expiring
//! ids). A transaction being completed lists only the partitions still waiting for a marker.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::txn::TxnState;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 0;

fn error(id: &str, code: ErrorCode) -> TransactionState {
    TransactionState {
        error_code: code.code(),
        transactional_id: id.to_string(),
        transaction_state: String::new(),
        transaction_timeout_ms: 0,
        transaction_start_time_ms: -1,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    }
}

/// Every id of `req` with `code`.
pub(crate) fn refuse_all(req: &DescribeTransactionsRequest, code: ErrorCode) -> DescribeTransactionsResponse {
    DescribeTransactionsResponse {
        transaction_states: req.transactional_ids.iter().map(|id| error(id, code)).collect(),
        ..Default::default()
    }
}

fn describe(state: &State, broker: i32, id: &str) -> TransactionState {
    if id.is_empty() {
        return error(id, ErrorCode::InvalidRequest);
    }
    if !state.is_txn_coordinator(broker, id) {
        return error(id, ErrorCode::NotCoordinator);
    }
    let Some(m) = state.txns.txns.get(id).filter(|m| m.state != TxnState::Dead) else {
        return error(id, ErrorCode::TransactionalIdNotFound);
    };
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in &m.partitions {
        match topics.last_mut() {
            Some(t) if t.topic == *topic => t.partitions.push(*partition),
            _ => topics.push(TopicData { topic: topic.clone(), partitions: vec![*partition], ..Default::default() }),
        }
    }
    TransactionState {
        error_code: 0,
        transactional_id: id.to_string(),
        transaction_state: m.state.name().to_string(),
        transaction_timeout_ms: m.timeout_ms,
        transaction_start_time_ms: m.start_ms,
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        topics,
        ..Default::default()
    }
}

pub(crate) fn handle(
    state: &mut State,
    ctx: Ctx<'_>,
    req: &DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    DescribeTransactionsResponse {
        throttle_time_ms: 0,
        transaction_states: req.transactional_ids.iter().map(|id| describe(state, ctx.broker, id)).collect(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::assert_encodes;

    #[test]
    fn states_and_partitions_grouped_by_topic() {
        let mut s = test_state(1);
        let (pid, epoch) = s.init_transactional_producer(1, "x", 5000, None, 0).unwrap();
        s.add_partitions_to_txn(1, "x", pid, epoch, &[("a".into(), 1), ("a".into(), 0), ("b".into(), 2)], 77);
        let d = describe(&s, 1, "x");
        assert_eq!((d.error_code, d.transaction_state.as_str(), d.transaction_timeout_ms), (0, "Ongoing", 5000));
        assert_eq!((d.transaction_start_time_ms, d.producer_id, d.producer_epoch), (77, pid, epoch));
        let topics: Vec<(&str, Vec<i32>)> = d.topics.iter().map(|t| (t.topic.as_str(), t.partitions.clone())).collect();
        assert_eq!(topics, vec![("a", vec![0, 1]), ("b", vec![2])]);
        assert_eq!(describe(&s, 1, "y").error_code, ErrorCode::TransactionalIdNotFound.code());
        assert_eq!(describe(&s, 1, "").error_code, ErrorCode::InvalidRequest.code());
        assert_encodes(DescribeTransactionsResponse { transaction_states: vec![d], ..Default::default() }, 0);
    }
}
