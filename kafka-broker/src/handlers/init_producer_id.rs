//! InitProducerId (key 22), versions 0-5. Without a transactional id (idempotent producers): a
//! new producer id with epoch 0 on every call, from any broker, as Kafka does. With one: the
//! transaction coordinator (`txn/coordinator.rs`) bumps the epoch of the id's producer or
//! gives it a new one, fencing the previous producer and aborting its open transaction
//! (CONCURRENT_TRANSACTIONS until the retry); `transaction_timeout_ms` must be within
//! `transaction.max.timeout.ms` (INVALID_TRANSACTION_TIMEOUT). v3+ carry the producer's own
//! id and epoch (KIP-360). Versions before 4 get INVALID_PRODUCER_EPOCH where newer ones get
//! PRODUCER_FENCED, as from Kafka.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ErrorCode;

use super::Ctx;
use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

/// The error answer.
pub(crate) fn refuse(code: ErrorCode) -> InitProducerIdResponse {
    InitProducerIdResponse { error_code: code.code(), producer_id: -1, producer_epoch: -1, ..Default::default() }
}

/// PRODUCER_FENCED as a request of `version` understands it (Kafka's `KafkaApis`: versions
/// before `first_fenced_version` only know INVALID_PRODUCER_EPOCH).
pub(crate) fn fenced_for(code: ErrorCode, version: i16, first_fenced_version: i16) -> ErrorCode {
    if code == ErrorCode::ProducerFenced && version < first_fenced_version {
        ErrorCode::InvalidProducerEpoch
    } else {
        code
    }
}

pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    let version = ctx.version;
    // The producer's id and epoch: both or neither (KafkaApis checks this first).
    let (id, epoch) = if version >= 3 { (req.producer_id, req.producer_epoch) } else { (-1, -1) };
    let expected = match (id, epoch) {
        (-1, -1) => None,
        (-1, _) | (_, -1) => return refuse(ErrorCode::InvalidRequest),
        (id, epoch) => Some((id, epoch)),
    };
    let Some(transactional_id) = req.transactional_id.as_deref() else {
        let producer_id = state.allocate_producer_id();
        return InitProducerIdResponse { error_code: 0, producer_id, producer_epoch: 0, ..Default::default() };
    };
    match state.init_transactional_producer(
        ctx.broker,
        transactional_id,
        req.transaction_timeout_ms,
        expected,
        ctx.now_ms,
    ) {
        Ok((producer_id, producer_epoch)) => {
            InitProducerIdResponse { error_code: 0, producer_id, producer_epoch, ..Default::default() }
        }
        Err(code) => refuse(fenced_for(code, version, 4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::assert_encodes;

    #[test]
    fn fenced_maps_for_old_versions_and_every_version_encodes() {
        assert_eq!(fenced_for(ErrorCode::ProducerFenced, 3, 4), ErrorCode::InvalidProducerEpoch);
        assert_eq!(fenced_for(ErrorCode::ProducerFenced, 4, 4), ErrorCode::ProducerFenced);
        assert_eq!(fenced_for(ErrorCode::ConcurrentTransactions, 0, 4), ErrorCode::ConcurrentTransactions);
        for v in MIN_VERSION..=MAX_VERSION {
            assert_encodes(refuse(ErrorCode::NotCoordinator), v);
        }
    }
}
