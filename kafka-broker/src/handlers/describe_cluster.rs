//! DescribeCluster (key 60), versions 0-1: brokers, cluster id and controller id; the endpoint
//! type (v1, KIP-919) is always brokers, and asking for another one is answered the way a
//! Kafka broker answers it.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 1;

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// Every operation the cluster resource supports, as bits of Kafka's `AclOperation` ids:
/// CREATE (5), ALTER (7), DESCRIBE (8), CLUSTER_ACTION (9), DESCRIBE_CONFIGS (10),
/// ALTER_CONFIGS (11), IDEMPOTENT_WRITE (12). The bundled broker has no authorizer, and a Kafka
/// broker without one reports every supported operation as authorized.
const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

fn error(version: i16, code: ErrorCode, message: String) -> DescribeClusterResponse {
    // Before v1 the endpoint errors are not valid codes: Kafka answers INVALID_REQUEST.
    let code = if version == 0 { ErrorCode::InvalidRequest } else { code };
    DescribeClusterResponse {
        error_code: code.code(),
        error_message: Some(message),
        cluster_id: String::new(),
        controller_id: -1,
        brokers: Vec::new(),
        cluster_authorized_operations: AUTHORIZED_OPERATIONS_OMITTED,
        ..Default::default()
    }
}

pub(crate) fn handle(state: &State, version: i16, req: &DescribeClusterRequest) -> DescribeClusterResponse {
    match req.endpoint_type {
        ENDPOINT_BROKERS => {}
        ENDPOINT_CONTROLLERS => {
            return error(
                version,
                ErrorCode::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .into(),
            )
        }
        other => {
            return error(version, ErrorCode::UnsupportedEndpointType, format!("Unsupported endpoint type {other}"))
        }
    }
    let brokers = state
        .brokers
        .iter()
        .map(|b| DescribeClusterBroker {
            broker_id: b.node_id,
            host: b.host.clone(),
            port: i32::from(b.port),
            rack: b.rack.clone(),
            ..Default::default()
        })
        .collect();
    DescribeClusterResponse {
        throttle_time_ms: 0,
        error_code: 0,
        error_message: None,
        endpoint_type: ENDPOINT_BROKERS,
        cluster_id: state.cluster_id.clone(),
        controller_id: state.controller_id,
        brokers,
        cluster_authorized_operations: if req.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_state;

    #[test]
    fn lists_every_broker_and_the_controller() {
        let state = test_state(3);
        let resp = handle(&state, 1, &DescribeClusterRequest::default());
        assert_eq!((resp.error_code, resp.error_message.as_deref()), (0, None));
        assert_eq!(resp.cluster_id, "test-cluster");
        assert_eq!(resp.controller_id, 1);
        assert_eq!(resp.endpoint_type, 1);
        let ids: Vec<(i32, i32)> = resp.brokers.iter().map(|b| (b.broker_id, b.port)).collect();
        assert_eq!(ids, vec![(1, 9092), (2, 9093), (3, 9094)]);
        assert!(resp.brokers.iter().all(|b| b.host == "localhost" && b.rack.is_none()));
        assert_eq!(resp.cluster_authorized_operations, i32::MIN);
    }

    #[test]
    fn authorized_operations_only_when_asked() {
        let state = test_state(1);
        let req = DescribeClusterRequest { include_cluster_authorized_operations: true, ..Default::default() };
        let ops = handle(&state, 0, &req).cluster_authorized_operations;
        // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
        assert_eq!(ops, 0b1_1111_1010_0000);
    }

    #[test]
    fn other_endpoint_types_are_refused_like_kafka() {
        let state = test_state(2);
        let controllers = DescribeClusterRequest { endpoint_type: 2, ..Default::default() };
        let resp = handle(&state, 1, &controllers);
        assert_eq!(resp.error_code, ErrorCode::MismatchedEndpointType.code());
        assert!(resp.brokers.is_empty());
        assert_eq!(resp.controller_id, -1);
        let unknown = DescribeClusterRequest { endpoint_type: 7, ..Default::default() };
        let resp = handle(&state, 1, &unknown);
        assert_eq!(resp.error_code, ErrorCode::UnsupportedEndpointType.code());
        assert_eq!(resp.error_message.as_deref(), Some("Unsupported endpoint type 7"));
        assert_eq!(handle(&state, 0, &unknown).error_code, ErrorCode::InvalidRequest.code());
    }

    #[test]
    fn every_version_encodes() {
        let state = test_state(2);
        for version in MIN_VERSION..=MAX_VERSION {
            for endpoint_type in [1, 2, 3] {
                let req = DescribeClusterRequest { endpoint_type, ..Default::default() };
                crate::handlers::assert_encodes(handle(&state, version, &req), version);
            }
        }
    }
}
