//! AlterConfigs (key 33), versions 0-2: Kafka's legacy semantics, where the configs given
//! replace all of a topic's own configs (those not listed go back to their defaults), each
//! validated, with `validate_only`. Topic resources only: broker configs are static in the
//! bundled broker. The checks shared with IncrementalAlterConfigs live here.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;
use crate::configs;
use crate::handlers::create_topics;
use crate::handlers::describe_configs::{resource_type_name, RESOURCE_BROKER, RESOURCE_TOPIC};

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 2;

pub(crate) type Failure = (ErrorCode, String);

fn invalid_request(message: String) -> Failure {
    (ErrorCode::InvalidRequest, message)
}

/// The (type, name) pairs that appear more than once: Kafka refuses every occurrence.
pub(crate) fn duplicate_resources<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> BTreeSet<(i8, &'a str)> {
    let mut seen = BTreeSet::new();
    resources.filter(|r| !seen.insert(*r)).collect()
}

/// The checks Kafka makes on every resource before looking at its configs: config names
/// given once, values present where the operation needs one (`needs_value`), and a resource
/// type this broker alters (topics). `alters_loggers` is false for the legacy API, which has
/// no broker-logger resources.
pub(crate) fn check_resource<'a>(
    broker: i32,
    resource_type: i8,
    resource_name: &str,
    configs: impl Iterator<Item = (&'a str, bool)> + Clone,
    alters_loggers: bool,
) -> Result<(), Failure> {
    let mut names = BTreeSet::new();
    if !configs.clone().all(|(name, _)| names.insert(name)) {
        return Err(invalid_request("Error due to duplicate config keys".into()));
    }
    let missing: Vec<&str> = configs.filter(|(_, missing_value)| *missing_value).map(|(name, _)| name).collect();
    if !missing.is_empty() {
        return Err(invalid_request(format!("Null value not supported for : {}", missing.join(", "))));
    }
    match (resource_type, resource_type_name(resource_type)) {
        (RESOURCE_TOPIC, _) => Ok(()),
        (RESOURCE_BROKER, _) => {
            if !resource_name.is_empty() {
                let id: i32 = resource_name
                    .parse()
                    .map_err(|_| invalid_request(format!("Node id must be an integer, but it is: {resource_name}")))?;
                if id != broker {
                    return Err(invalid_request(format!(
                        "Unexpected broker id, expected {broker}, but received {resource_name}"
                    )));
                }
            }
            Err(invalid_request(
                "Altering broker configs is not supported by the bundled broker: they are fixed at start.".into(),
            ))
        }
        (_, Some("BROKER_LOGGER")) if !alters_loggers => {
            Err(invalid_request(format!("Unknown resource type {resource_type}")))
        }
        (_, Some(kind)) => {
            Err(invalid_request(format!("Altering {kind} configs is not supported by the bundled broker.")))
        }
        (_, None) => Err(invalid_request(format!("Unknown resource type {resource_type}"))),
    }
}

/// Validates a topic's complete new set of own configs and, unless `validate_only`, installs
/// it (re-resolving the settings its log acts on). Kafka's order: the name, the configs, then
/// whether the topic exists.
pub(crate) fn commit_topic(
    state: &mut State,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), Failure> {
    if name.is_empty() {
        return Err(invalid_request("Default topic resources are not allowed.".into()));
    }
    create_topics::validate_topic_name(name)?;
    configs.iter().try_for_each(|(k, v)| configs::validate(k, v))?;
    if !state.topics.contains_key(name) {
        return Err((ErrorCode::UnknownTopicOrPartition, ErrorCode::UnknownTopicOrPartition.description().into()));
    }
    if !validate_only {
        state.set_topic_configs(name, configs);
    }
    Ok(())
}

/// The error code and message of a resource's answer (null message on success).
pub(crate) fn outcome(result: Result<(), Failure>) -> (i16, Option<String>) {
    match result {
        Ok(()) => (0, None),
        Err((code, message)) => (code.code(), Some(message)),
    }
}

/// Answers an AlterConfigs sent to the broker with node id `broker`.
pub(crate) fn handle(state: &mut State, broker: i32, _version: i16, req: &AlterConfigsRequest) -> AlterConfigsResponse {
    let duplicates = duplicate_resources(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let responses = req
        .resources
        .iter()
        .map(|resource| {
            let result = if duplicates.contains(&(resource.resource_type, resource.resource_name.as_str())) {
                Err(invalid_request("Each resource must appear at most once.".into()))
            } else {
                let given = resource.configs.iter().map(|c| (c.name.as_str(), c.value.is_none()));
                check_resource(broker, resource.resource_type, &resource.resource_name, given, false).and_then(|()| {
                    let configs =
                        resource.configs.iter().filter_map(|c| c.value.clone().map(|v| (c.name.clone(), v))).collect();
                    commit_topic(state, &resource.resource_name, configs, req.validate_only)
                })
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
    AlterConfigsResponse { throttle_time_ms: 0, responses, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};

    use super::*;
    use crate::cluster::test_state;

    fn resource(resource_type: i8, name: &str, configs: &[(&str, Option<&str>)]) -> AlterConfigsResource {
        AlterConfigsResource {
            resource_type,
            resource_name: name.into(),
            configs: configs
                .iter()
                .map(|(n, v)| AlterableConfig {
                    name: n.to_string(),
                    value: v.map(str::to_string),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn request(resources: Vec<AlterConfigsResource>, validate_only: bool) -> AlterConfigsRequest {
        AlterConfigsRequest { resources, validate_only, ..Default::default() }
    }

    fn codes(resp: &AlterConfigsResponse) -> Vec<i16> {
        resp.responses.iter().map(|r| r.error_code).collect()
    }

    fn own(state: &State, topic: &str) -> Vec<(String, String)> {
        state.topics[topic].configs.clone().into_iter().collect()
    }

    #[test]
    fn replaces_every_own_config_and_the_settings_follow() {
        let mut state = test_state(1);
        let start: BTreeMap<String, String> = [("cleanup.policy".to_string(), "compact".to_string())].into();
        state.add_topic("t", 1, 1, start);
        assert!(state.topics["t"].settings.compact);
        let req = request(vec![resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("1000"))])], false);
        let resp = handle(&mut state, 1, 0, &req);
        assert_eq!(codes(&resp), vec![0]);
        assert!(resp.responses[0].error_message.is_none());
        assert_eq!(own(&state, "t"), vec![("retention.ms".to_string(), "1000".to_string())]);
        let settings = &state.topics["t"].settings;
        assert_eq!((settings.retention_ms, settings.compact, settings.delete), (1000, false, true));
    }

    #[test]
    fn invalid_values_unknown_topics_and_validate_only_change_nothing() {
        let mut state = test_state(1);
        state.add_topic("t", 1, 1, BTreeMap::new());
        let req = request(
            vec![
                resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("soon"))]),
                resource(RESOURCE_TOPIC, "missing", &[("retention.ms", Some("5"))]),
                resource(RESOURCE_TOPIC, "bad/name", &[]),
                resource(RESOURCE_TOPIC, "", &[]),
            ],
            false,
        );
        let resp = handle(&mut state, 1, 2, &req);
        assert_eq!(
            codes(&resp),
            vec![
                ErrorCode::InvalidConfig.code(),
                ErrorCode::UnknownTopicOrPartition.code(),
                ErrorCode::InvalidTopicException.code(),
                ErrorCode::InvalidRequest.code()
            ]
        );
        let dry = request(vec![resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("5"))])], true);
        assert_eq!(codes(&handle(&mut state, 1, 1, &dry)), vec![0]);
        assert!(own(&state, "t").is_empty());
        assert_eq!(state.topics["t"].settings.retention_ms, 604_800_000);
    }

    #[test]
    fn malformed_resources_are_invalid_requests() {
        let mut state = test_state(2);
        state.add_topic("t", 1, 1, BTreeMap::new());
        state.add_topic("u", 1, 1, BTreeMap::new());
        let req = request(
            vec![
                resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("5"))]),
                resource(RESOURCE_TOPIC, "u", &[("retention.ms", Some("5")), ("retention.ms", Some("6"))]),
                resource(RESOURCE_TOPIC, "t", &[]),
                resource(RESOURCE_TOPIC, "v", &[("retention.ms", None)]),
                resource(RESOURCE_BROKER, "1", &[("log.retention.ms", Some("5"))]),
                resource(RESOURCE_BROKER, "2", &[]),
                resource(8, "1", &[]),
                resource(32, "group", &[]),
            ],
            false,
        );
        let resp = handle(&mut state, 1, 0, &req);
        assert_eq!(codes(&resp), vec![ErrorCode::InvalidRequest.code(); 8]);
        let messages: Vec<&str> = resp.responses.iter().filter_map(|r| r.error_message.as_deref()).collect();
        assert_eq!(
            messages,
            vec![
                "Each resource must appear at most once.",
                "Error due to duplicate config keys",
                "Each resource must appear at most once.",
                "Null value not supported for : retention.ms",
                "Altering broker configs is not supported by the bundled broker: they are fixed at start.",
                "Unexpected broker id, expected 1, but received 2",
                "Unknown resource type 8",
                "Altering GROUP configs is not supported by the bundled broker.",
            ]
        );
        assert!(own(&state, "t").is_empty() && own(&state, "u").is_empty());
    }

    #[test]
    fn every_version_encodes() {
        for version in MIN_VERSION..=MAX_VERSION {
            let mut state = test_state(1);
            state.add_topic("t", 1, 1, BTreeMap::new());
            let req = request(
                vec![resource(RESOURCE_TOPIC, "t", &[("retention.ms", Some("1"))]), resource(RESOURCE_TOPIC, "x", &[])],
                false,
            );
            crate::handlers::assert_encodes(handle(&mut state, 1, version, &req), version);
        }
    }
}
