//! EndTxn (key 26), versions 0-4 (v5, KIP-890's epoch bump per transaction, is unstable in
//! this spec snapshot and not served): commits or aborts the producer's transaction, asked of
//! the transactional id's coordinator. The markers are written before the answer (see
//! `txn/mod.rs`); a retry of a completed EndTxn is answered NONE, the opposite outcome
//! INVALID_TXN_STATE, and one that finds the markers still waiting for a partition leader
//! CONCURRENT_TRANSACTIONS. Versions before 2 get INVALID_PRODUCER_EPOCH where newer ones get
//! PRODUCER_FENCED.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use kafka_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

/// The answer with `code`.
pub(crate) fn refuse(code: ErrorCode) -> EndTxnResponse {
    EndTxnResponse { error_code: code.code(), producer_id: -1, producer_epoch: -1, ..Default::default() }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &EndTxnRequest) -> EndTxnResponse {
    let id = req.transactional_id.as_str();
    let code = if id.is_empty() {
        ErrorCode::InvalidRequest
    } else if !state.is_txn_coordinator(ctx.broker, id) {
        ErrorCode::NotCoordinator
    } else {
        state.end_transaction(id, req.producer_id, req.producer_epoch, req.committed, true, ctx.now_ms)
    };
    refuse(fenced_for(code, ctx.version, 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;

    #[test]
    fn every_version_encodes() {
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse(ErrorCode::None), v);
        }
    }
}
