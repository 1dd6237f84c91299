//! IncrementalAlterConfigs (key 44), versions 0-1: SET, DELETE, APPEND and SUBTRACT on a
//! topic's own configs (APPEND and SUBTRACT only for list configs), every resulting value
//! validated, `validate_only`; the topic's log settings follow the change. Topic resources
//! only, with the checks of [`super::alter_configs`].

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;
use crate::configs::{self, Kind};
use crate::handlers::alter_configs::{check_resource, commit_topic, duplicate_resources, outcome, Failure};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 1;

/// Kafka's `AlterConfigOp.OpType` ids.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The non-empty items of a comma-separated list.
fn items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter(|s| !s.is_empty())
}

/// Applies one operation to a topic's own configs, as Kafka's controller does: APPEND and
/// SUBTRACT start from the topic's value or else Kafka's default (not the broker setting).
fn apply(configs: &mut BTreeMap<String, String>, op: &AlterableConfig) -> Result<(), Failure> {
    let name = op.name.as_str();
    let value = op.value.clone().unwrap_or_default();
    match op.config_operation {
        SET => {
            configs.insert(name.to_string(), value);
        }
        DELETE => {
            configs.remove(name);
        }
        APPEND | SUBTRACT => {
            let verb = if op.config_operation == APPEND { "APPEND" } else { "SUBTRACT" };
            let def = configs::topic_config(name).filter(|d| matches!(d.kind, Kind::ListOf(_))).ok_or_else(|| {
                (ErrorCode::InvalidConfig, format!("Can't {verb} to key {name} because its type is not LIST."))
            })?;
            let current = configs.get(name).map_or(def.default, String::as_str);
            let mut list: Vec<String> = items(current).map(str::to_string).collect();
            for item in items(&value) {
                if op.config_operation == APPEND {
                    if !list.iter().any(|x| x == item) {
                        list.push(item.to_string());
                    }
                } else if let Some(i) = list.iter().position(|x| x == item) {
                    list.remove(i);
                }
            }
            configs.insert(name.to_string(), list.join(","));
        }
        other => return Err((ErrorCode::InvalidRequest, format!("Unknown operations type {other}"))),
    }
    Ok(())
}

fn alter(state: &mut State, broker: i32, resource: &AlterConfigsResource, validate_only: bool) -> Result<(), Failure> {
    // Only DELETE may leave the value null.
    let given = resource.configs.iter().map(|c| (c.name.as_str(), c.value.is_none() && c.config_operation != DELETE));
    check_resource(broker, resource.resource_type, &resource.resource_name, given, true)?;
    let mut configs = state.topics.get(&resource.resource_name).map(|t| t.configs.clone()).unwrap_or_default();
    for op in &resource.configs {
        apply(&mut configs, op)?;
    }
    commit_topic(state, &resource.resource_name, configs, validate_only)
}

/// Answers an IncrementalAlterConfigs sent to the broker with node id `broker`.
pub(crate) fn handle(
    state: &mut State,
    broker: i32,
    _version: i16,
    req: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let duplicates = duplicate_resources(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let responses = req
        .resources
        .iter()
        .map(|resource| {
            let result = if duplicates.contains(&(resource.resource_type, resource.resource_name.as_str())) {
                Err((ErrorCode::InvalidRequest, "Each resource must appear at most once.".to_string()))
            } else {
                alter(state, broker, resource, req.validate_only)
            };
            let (error_code, error_message) = outcome(result);
            AlterConfigsResourceResponse {
                error_code,
                error_message,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.clone(),
                ..Default::default()
            }
        })
        .collect();
    IncrementalAlterConfigsResponse { throttle_time_ms: 0, responses, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_state;
    use crate::handlers::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};

    fn op(name: &str, operation: i8, value: Option<&str>) -> AlterableConfig {
        AlterableConfig {
            name: name.into(),
            config_operation: operation,
            value: value.map(str::to_string),
            ..Default::default()
        }
    }

    fn resource(resource_type: i8, name: &str, configs: Vec<AlterableConfig>) -> AlterConfigsResource {
        AlterConfigsResource { resource_type, resource_name: name.into(), configs, ..Default::default() }
    }

    fn request(resources: Vec<AlterConfigsResource>, validate_only: bool) -> IncrementalAlterConfigsRequest {
        IncrementalAlterConfigsRequest { resources, validate_only, ..Default::default() }
    }

    fn own(state: &State, topic: &str) -> Vec<(String, String)> {
        state.topics[topic].configs.clone().into_iter().collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn state() -> State {
        let mut state = test_state(3);
        let configs: BTreeMap<String, String> = [("retention.ms".to_string(), "1000".to_string())].into();
        state.add_topic("t", 1, 3, configs);
        state
    }

    #[test]
    fn set_and_delete_keep_other_configs_and_the_settings_follow() {
        let mut state = state();
        let req = request(
            vec![resource(
                RESOURCE_TOPIC,
                "t",
                vec![op("min.insync.replicas", SET, Some("2")), op("retention.ms", DELETE, None)],
            )],
            false,
        );
        let resp = handle(&mut state, 1, 1, &req);
        assert_eq!((resp.responses[0].error_code, resp.responses[0].error_message.as_deref()), (0, None));
        assert_eq!(own(&state, "t"), pairs(&[("min.insync.replicas", "2")]));
        let settings = &state.topics["t"].settings;
        assert_eq!((settings.min_insync_replicas, settings.retention_ms), (2, 604_800_000));
    }

    #[test]
    fn append_and_subtract_work_on_lists_from_the_default() {
        let mut state = state();
        let append =
            request(vec![resource(RESOURCE_TOPIC, "t", vec![op("cleanup.policy", APPEND, Some("compact"))])], false);
        assert_eq!(handle(&mut state, 1, 0, &append).responses[0].error_code, 0);
        assert_eq!(state.topics["t"].configs["cleanup.policy"], "delete,compact");
        assert!(state.topics["t"].settings.compact && state.topics["t"].settings.delete);
        // Appending what is there already changes nothing.
        assert_eq!(handle(&mut state, 1, 0, &append).responses[0].error_code, 0);
        assert_eq!(state.topics["t"].configs["cleanup.policy"], "delete,compact");
        let subtract =
            request(vec![resource(RESOURCE_TOPIC, "t", vec![op("cleanup.policy", SUBTRACT, Some("delete"))])], false);
        assert_eq!(handle(&mut state, 1, 0, &subtract).responses[0].error_code, 0);
        assert_eq!(state.topics["t"].configs["cleanup.policy"], "compact");
        assert!(state.topics["t"].settings.compact && !state.topics["t"].settings.delete);
        // Subtracting the last item leaves an empty list, which is not a valid policy.
        let empty =
            request(vec![resource(RESOURCE_TOPIC, "t", vec![op("cleanup.policy", SUBTRACT, Some("compact"))])], false);
        assert_eq!(handle(&mut state, 1, 0, &empty).responses[0].error_code, ErrorCode::InvalidConfig.code());
        assert_eq!(state.topics["t"].configs["cleanup.policy"], "compact");
    }

    #[test]
    fn append_to_a_non_list_is_an_invalid_config() {
        let mut state = state();
        let req = request(vec![resource(RESOURCE_TOPIC, "t", vec![op("retention.ms", APPEND, Some("5"))])], false);
        let resp = handle(&mut state, 1, 0, &req);
        assert_eq!(resp.responses[0].error_code, ErrorCode::InvalidConfig.code());
        assert_eq!(
            resp.responses[0].error_message.as_deref(),
            Some("Can't APPEND to key retention.ms because its type is not LIST.")
        );
        assert_eq!(own(&state, "t"), pairs(&[("retention.ms", "1000")]));
    }

    #[test]
    fn invalid_values_unknown_topics_and_validate_only_change_nothing() {
        let mut state = state();
        let req = request(
            vec![
                resource(RESOURCE_TOPIC, "t", vec![op("min.insync.replicas", SET, Some("0"))]),
                resource(RESOURCE_TOPIC, "missing", vec![op("retention.ms", SET, Some("5"))]),
                resource(RESOURCE_TOPIC, "u", vec![op("no.such.config", SET, Some("5"))]),
            ],
            false,
        );
        let codes: Vec<i16> = handle(&mut state, 1, 1, &req).responses.iter().map(|r| r.error_code).collect();
        assert_eq!(
            codes,
            vec![
                ErrorCode::InvalidConfig.code(),
                ErrorCode::UnknownTopicOrPartition.code(),
                ErrorCode::InvalidConfig.code()
            ]
        );
        let dry = request(vec![resource(RESOURCE_TOPIC, "t", vec![op("retention.ms", SET, Some("5"))])], true);
        assert_eq!(handle(&mut state, 1, 1, &dry).responses[0].error_code, 0);
        assert_eq!(own(&state, "t"), pairs(&[("retention.ms", "1000")]));
        assert_eq!(state.topics["t"].settings.retention_ms, 1000);
    }

    #[test]
    fn malformed_resources_are_invalid_requests() {
        let mut state = state();
        let req = request(
            vec![
                resource(RESOURCE_TOPIC, "t", vec![op("retention.ms", SET, Some("5"))]),
                resource(RESOURCE_TOPIC, "t", vec![]),
                resource(
                    RESOURCE_TOPIC,
                    "u",
                    vec![op("retention.ms", SET, Some("5")), op("retention.ms", DELETE, None)],
                ),
                resource(RESOURCE_TOPIC, "v", vec![op("retention.ms", SET, None)]),
                resource(RESOURCE_TOPIC, "w", vec![op("retention.ms", 9, Some("5"))]),
                resource(RESOURCE_BROKER, "", vec![op("log.retention.ms", SET, Some("5"))]),
                resource(8, "1", vec![]),
            ],
            false,
        );
        let resp = handle(&mut state, 1, 0, &req);
        assert!(resp.responses.iter().all(|r| r.error_code == ErrorCode::InvalidRequest.code()));
        let messages: Vec<&str> = resp.responses.iter().filter_map(|r| r.error_message.as_deref()).collect();
        assert_eq!(
            messages,
            vec![
                "Each resource must appear at most once.",
                "Each resource must appear at most once.",
                "Error due to duplicate config keys",
                "Null value not supported for : retention.ms",
                "Unknown operations type 9",
                "Altering broker configs is not supported by the bundled broker: they are fixed at start.",
                "Altering BROKER_LOGGER configs is not supported by the bundled broker.",
            ]
        );
        assert_eq!(own(&state, "t"), pairs(&[("retention.ms", "1000")]));
    }

    #[test]
    fn every_version_encodes() {
        for version in MIN_VERSION..=MAX_VERSION {
            let mut state = state();
            let req = request(
                vec![
                    resource(RESOURCE_TOPIC, "t", vec![op("retention.ms", SET, Some("1"))]),
                    resource(RESOURCE_TOPIC, "x", vec![]),
                ],
                false,
            );
            crate::handlers::assert_encodes(handle(&mut state, 1, version, &req), version);
        }
    }
}
