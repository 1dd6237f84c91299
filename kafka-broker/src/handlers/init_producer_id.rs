//! InitProducerId (key 22), versions 0-5, for idempotent producers (no transactional id): a
//! new producer id with epoch 0 on every call, as Kafka does when the transactional id is
//! null. Transactional ids belong to the transaction coordinator, which the bundled broker
//! does not have yet: they are refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, an error
//! clients treat as fatal and report at once (a retriable one would make them spin).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 5;

pub(crate) fn handle(state: &mut State, _version: i16, req: &InitProducerIdRequest) -> InitProducerIdResponse {
    if req.transactional_id.as_deref().is_some_and(|id| !id.is_empty()) {
        return InitProducerIdResponse {
            error_code: ErrorCode::TransactionalIdAuthorizationFailed.code(),
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        };
    }
    let producer_id = state.next_producer_id;
    state.next_producer_id += 1;
    InitProducerIdResponse { throttle_time_ms: 0, error_code: 0, producer_id, producer_epoch: 0, ..Default::default() }
}
