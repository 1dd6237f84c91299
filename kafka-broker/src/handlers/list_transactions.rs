//! ListTransactions (key 66), versions 0-1: the transactions this broker coordinates, filtered
//! by state name (unknown names are echoed in `unknown_state_filters`), by producer id, and
//! (v1, KIP-994) by running longer than `duration_filter` milliseconds. Expiring ids (Dead)
//! are never listed. Sorted by transactional id.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;
use crate::txn::TxnState;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 1;

/// The error answer.
pub(crate) fn refuse(code: ErrorCode) -> ListTransactionsResponse {
    ListTransactionsResponse { error_code: code.code(), ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &ListTransactionsRequest) -> ListTransactionsResponse {
    let mut states: Vec<TxnState> = Vec::new();
    let mut unknown_state_filters = Vec::new();
    for name in &req.state_filters {
        match TxnState::from_name(name) {
            Some(s) => states.push(s),
            None => unknown_state_filters.push(name.clone()),
        }
    }
    let duration = if ctx.version >= 1 { req.duration_filter } else { -1 };
    let transaction_states = state
        .txns
        .txns
        .values()
        .filter(|m| m.state != TxnState::Dead)
        .filter(|m| req.producer_id_filters.is_empty() || req.producer_id_filters.contains(&m.producer_id))
        .filter(|m| req.state_filters.is_empty() || states.contains(&m.state))
        .filter(|m| duration < 0 || ctx.now_ms.saturating_sub(m.start_ms) > duration)
        .filter(|m| state.is_txn_coordinator(ctx.broker, &m.transactional_id))
        .map(|m| TransactionState {
            transactional_id: m.transactional_id.clone(),
            producer_id: m.producer_id,
            transaction_state: m.state.name().to_string(),
            ..Default::default()
        })
        .collect();
    ListTransactionsResponse {
        throttle_time_ms: 0,
        error_code: 0,
        unknown_state_filters,
        transaction_states,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::assert_encodes;
    use kafka_protocol::messages::RequestHeader;

    #[test]
    fn filters_by_state_producer_and_duration() {
        let mut s = test_state(1);
        let (a, ea) = s.init_transactional_producer(1, "a", 5000, None, 0).unwrap();
        let (b, _) = s.init_transactional_producer(1, "b", 5000, None, 0).unwrap();
        s.add_partitions_to_txn(1, "a", a, ea, &[("t".into(), 0)], 1000);
        let header = RequestHeader::default();
        let mut list = |version, states: &[&str], pids: &[i64], duration: i64, now_ms: i64| {
            let req = ListTransactionsRequest {
                state_filters: states.iter().map(|s| s.to_string()).collect(),
                producer_id_filters: pids.to_vec(),
                duration_filter: duration,
                ..Default::default()
            };
            let ctx = Ctx { broker: 1, peer: None, header: &header, version, now_ms, final_attempt: false };
            let r = handle(&mut s, ctx, &req);
            assert_encodes(r.clone(), version);
            let ids: Vec<String> = r.transaction_states.iter().map(|t| t.transactional_id.clone()).collect();
            (ids, r.unknown_state_filters)
        };
        assert_eq!(list(0, &[], &[], -1, 0).0, vec!["a", "b"]);
        assert_eq!(list(0, &["Ongoing", "Nope"], &[], -1, 0), (vec!["a".to_string()], vec!["Nope".to_string()]));
        assert_eq!(list(0, &[], &[b], -1, 0).0, vec!["b"]);
        assert_eq!(list(1, &["Ongoing"], &[], 500, 2000).0, vec!["a"], "running for 1000 ms > 500");
        assert!(list(1, &["Ongoing"], &[], 5000, 2000).0.is_empty());
        assert_eq!(list(0, &["Ongoing"], &[], 5000, 2000).0, vec!["a"], "v0 has no duration filter");
    }
}
