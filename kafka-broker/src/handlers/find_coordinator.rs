//! FindCoordinator (key 10), versions 0-6: one key (v0-3) or a batch (v4+), of key type group
//! (0) or transaction (1, answered with the same hash-based placement, for the transaction
//! coordinator). Share coordinators (key type 2, v6) do not exist here: INVALID_REQUEST, as
//! from a Kafka broker without one. Placement: `State::coordinator_for`.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;
use crate::groups::{KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 6;

/// Key type 2: the share-group state coordinator (KIP-932).
const KEY_TYPE_SHARE: i8 = 2;

/// The coordinator's node id, host and port.
fn lookup(state: &State, key_type: i8, key: &str) -> Result<(i32, String, i32), ErrorCode> {
    if key_type == KEY_TYPE_SHARE {
        return Err(ErrorCode::InvalidRequest);
    }
    let node = state.coordinator_for(key_type, key).ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let b = state.brokers.iter().find(|b| b.node_id == node).ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((b.node_id, b.host.clone(), i32::from(b.port)))
}

/// The answer refusing the whole request with `code` (an unknown key type; injected errors).
pub(crate) fn refuse_all(req: &FindCoordinatorRequest, version: i16, code: ErrorCode) -> FindCoordinatorResponse {
    if version < 4 {
        FindCoordinatorResponse {
            error_code: code.code(),
            error_message: Some(code.description().to_string()),
            node_id: -1,
            host: String::new(),
            port: -1,
            ..Default::default()
        }
    } else {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| Coordinator {
                key: key.clone(),
                node_id: -1,
                host: String::new(),
                port: -1,
                error_code: code.code(),
                error_message: Some(code.description().to_string()),
                ..Default::default()
            })
            .collect();
        FindCoordinatorResponse { coordinators, ..Default::default() }
    }
}

pub(crate) fn handle(state: &State, version: i16, req: &FindCoordinatorRequest) -> FindCoordinatorResponse {
    let key_type = req.key_type;
    if ![KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, KEY_TYPE_SHARE].contains(&key_type) {
        // Kafka fails the request: "Unknown coordinator type received".
        return refuse_all(req, version, ErrorCode::InvalidRequest);
    }
    if version < 4 {
        match lookup(state, key_type, &req.key) {
            // Kafka sends Errors.NONE.message(), which is "NONE".
            Ok((node_id, host, port)) => FindCoordinatorResponse {
                error_code: 0,
                error_message: Some("NONE".into()),
                node_id,
                host,
                port,
                ..Default::default()
            },
            Err(code) => refuse_all(req, version, code),
        }
    } else {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| match lookup(state, key_type, key) {
                Ok((node_id, host, port)) => {
                    Coordinator { key: key.clone(), node_id, host, port, ..Default::default() }
                }
                Err(code) => Coordinator {
                    key: key.clone(),
                    node_id: -1,
                    host: String::new(),
                    port: -1,
                    error_code: code.code(),
                    ..Default::default()
                },
            })
            .collect();
        FindCoordinatorResponse { coordinators, ..Default::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::assert_encodes;

    #[test]
    fn single_and_batched_keys_agree() {
        let state = test_state(3);
        let keys: Vec<String> = (0..10).map(|i| format!("group-{i}")).collect();
        let batched =
            handle(&state, 4, &FindCoordinatorRequest { coordinator_keys: keys.clone(), ..Default::default() });
        for (key, c) in keys.iter().zip(&batched.coordinators) {
            let single = handle(&state, 3, &FindCoordinatorRequest { key: key.clone(), ..Default::default() });
            assert_eq!((single.error_code, single.node_id, single.port), (0, c.node_id, c.port));
            assert_eq!(single.error_message.as_deref(), Some("NONE"));
            assert_eq!(&c.key, key);
            assert_eq!(c.node_id, state.coordinator_for(KEY_TYPE_GROUP, key).unwrap());
        }
    }

    #[test]
    fn share_and_unknown_key_types_are_invalid() {
        let state = test_state(1);
        let share = FindCoordinatorRequest { key_type: 2, coordinator_keys: vec!["g".into()], ..Default::default() };
        let resp = handle(&state, 6, &share);
        assert_eq!(resp.coordinators[0].error_code, ErrorCode::InvalidRequest.code());
        assert_eq!(resp.coordinators[0].node_id, -1);
        let unknown = FindCoordinatorRequest { key_type: 7, key: "g".into(), ..Default::default() };
        let resp = handle(&state, 2, &unknown);
        assert_eq!((resp.error_code, resp.node_id, resp.port), (ErrorCode::InvalidRequest.code(), -1, -1));
    }

    #[test]
    fn every_version_encodes() {
        let state = test_state(2);
        for v in MIN_VERSION..=MAX_VERSION {
            let req = FindCoordinatorRequest {
                key: if v < 4 { "g".into() } else { String::new() },
                key_type: if v >= 1 { 1 } else { 0 },
                coordinator_keys: if v >= 4 { vec!["g".into(), "h".into()] } else { Vec::new() },
                ..Default::default()
            };
            assert_encodes(handle(&state, v, &req), v);
            assert_encodes(refuse_all(&req, v, ErrorCode::NotCoordinator), v);
        }
    }
}
