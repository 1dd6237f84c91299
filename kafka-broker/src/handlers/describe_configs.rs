//! DescribeConfigs (key 32), versions 0-4: every topic config of a topic with its effective
//! value and where it comes from, synonyms (v1+), types and documentation (v3+); a broker's
//! static settings and the broker-level settings topics inherit. Other resource types (broker
//! loggers, client metrics, groups) are refused with INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;
use crate::configs::{self, ConfigDef, Source, TOPIC_CONFIGS};
use crate::handlers::create_topics;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

/// Kafka's `ConfigResource.Type` ids.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
pub(crate) const RESOURCE_BROKER_LOGGER: i8 = 8;
pub(crate) const RESOURCE_CLIENT_METRICS: i8 = 16;
pub(crate) const RESOURCE_GROUP: i8 = 32;

/// The name Kafka gives a resource type in messages.
pub(crate) fn resource_type_name(resource_type: i8) -> Option<&'static str> {
    match resource_type {
        RESOURCE_TOPIC => Some("TOPIC"),
        RESOURCE_BROKER => Some("BROKER"),
        RESOURCE_BROKER_LOGGER => Some("BROKER_LOGGER"),
        RESOURCE_CLIENT_METRICS => Some("CLIENT_METRICS"),
        RESOURCE_GROUP => Some("GROUP"),
        _ => None,
    }
}

type Failure = (ErrorCode, String);

/// What each config entry carries, from the request and its version.
#[derive(Clone, Copy)]
struct Include {
    synonyms: bool,
    documentation: bool,
    /// v0 only: `is_default` (later versions have `config_source` instead, and the encoder
    /// refuses a field its version lacks).
    is_default: bool,
}

fn synonym(name: &str, value: &str, source: Source) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym {
        name: name.to_string(),
        value: Some(value.to_string()),
        source: source.id(),
        ..Default::default()
    }
}

/// Kafka's synonyms of `def` below the topic level: every broker setting it inherits from that
/// was given at start, then Kafka's default under the broker name.
fn broker_level_synonyms(def: &ConfigDef, broker_configs: &BTreeMap<String, String>) -> Vec<DescribeConfigsSynonym> {
    configs::broker_synonyms(def)
        .into_iter()
        .filter_map(|(key, _)| broker_configs.get(key).map(|v| synonym(key, v, Source::StaticBroker)))
        .chain(std::iter::once(synonym(def.broker_name, def.default, Source::Default)))
        .collect()
}

/// One config entry with the fields of every version filled in (the encoder drops what a
/// version does not have); `def` is the topic config it is or backs, if any.
fn entry(
    name: &str,
    (value, source): (String, Source),
    read_only: bool,
    synonyms: Vec<DescribeConfigsSynonym>,
    def: Option<&ConfigDef>,
    include: Include,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult {
        name: name.to_string(),
        value: Some(value),
        read_only,
        is_default: include.is_default && source == Source::Default,
        config_source: source.id(),
        is_sensitive: false,
        synonyms: if include.synonyms { synonyms } else { Vec::new() },
        // A setting the bundled broker keeps without knowing its type: UNKNOWN (0).
        config_type: def.map_or(0, |d| d.kind.config_type()),
        documentation: if include.documentation { def.map(|d| d.doc.to_string()) } else { None },
        ..Default::default()
    }
}

/// Kafka's filter: a null or empty key list means every config.
fn wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|k| k == name),
        _ => true,
    }
}

fn describe_topic(
    state: &State,
    resource: &DescribeConfigsResource,
    include: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, Failure> {
    let name = resource.resource_name.as_str();
    create_topics::validate_topic_name(name)?;
    let Some(topic) = state.topics.get(name) else {
        return Err((ErrorCode::UnknownTopicOrPartition, ErrorCode::UnknownTopicOrPartition.description().into()));
    };
    let broker_configs = &state.settings.broker_configs;
    Ok(TOPIC_CONFIGS
        .iter()
        .filter(|def| wanted(resource, def.name))
        .map(|def| {
            let value = configs::effective_value(def, &topic.configs, broker_configs);
            let mut synonyms = Vec::new();
            if let Some(own) = topic.configs.get(def.name) {
                synonyms.push(synonym(def.name, own, Source::Topic));
            }
            synonyms.extend(broker_level_synonyms(def, broker_configs));
            entry(def.name, value, false, synonyms, Some(def), include)
        })
        .collect())
}

/// A broker's configs: the settings given at start and, for every topic config, the broker
/// setting it inherits from (given or Kafka's default). The bundled broker has no dynamic
/// broker configs, so every entry is read-only and the cluster-wide default resource (empty
/// name) has no entries, as on a Kafka cluster where none were set.
fn describe_broker(
    state: &State,
    broker: i32,
    resource: &DescribeConfigsResource,
    include: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, Failure> {
    let name = resource.resource_name.as_str();
    if name.is_empty() {
        return Ok(Vec::new());
    }
    let id: i32 = name
        .parse()
        .map_err(|_| (ErrorCode::InvalidRequest, format!("Broker id must be an integer, but it is: {name}")))?;
    if id != broker {
        return Err((
            ErrorCode::InvalidRequest,
            format!("Unexpected broker id, expected {broker} or empty string, but received {name}"),
        ));
    }
    let broker_configs = &state.settings.broker_configs;
    // Every name to report, each with the topic config it backs (if any).
    let mut names: BTreeMap<&str, Option<&ConfigDef>> = broker_configs.keys().map(|k| (k.as_str(), None)).collect();
    for def in TOPIC_CONFIGS {
        names.insert(def.broker_name, Some(def));
    }
    Ok(names
        .into_iter()
        .filter(|(key, _)| wanted(resource, key))
        .map(|(key, def)| match def {
            // What a topic without a value of its own inherits, and from where.
            Some(def) => {
                let value = configs::effective_value(def, &BTreeMap::new(), broker_configs);
                entry(key, value, true, broker_level_synonyms(def, broker_configs), Some(def), include)
            }
            None => {
                let value = broker_configs.get(key).cloned().unwrap_or_default();
                let synonyms = vec![synonym(key, &value, Source::StaticBroker)];
                entry(key, (value, Source::StaticBroker), true, synonyms, None, include)
            }
        })
        .collect())
}

fn describe(
    state: &State,
    broker: i32,
    resource: &DescribeConfigsResource,
    include: Include,
) -> Result<Vec<DescribeConfigsResourceResult>, Failure> {
    match resource.resource_type {
        RESOURCE_TOPIC => describe_topic(state, resource, include),
        RESOURCE_BROKER => describe_broker(state, broker, resource, include),
        other => match resource_type_name(other) {
            Some(kind) => {
                Err((ErrorCode::InvalidRequest, format!("Resource type {kind} is not supported by the bundled broker")))
            }
            None => Err((ErrorCode::InvalidRequest, format!("Unsupported resource type: {other}"))),
        },
    }
}

/// Answers a DescribeConfigs sent to the broker with node id `broker`.
pub(crate) fn handle(
    state: &State,
    broker: i32,
    version: i16,
    req: &DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let include = Include {
        synonyms: req.include_synonyms && version >= 1,
        documentation: req.include_documentation && version >= 3,
        is_default: version == 0,
    };
    let results = req
        .resources
        .iter()
        .map(|resource| {
            let (error_code, error_message, configs) = match describe(state, broker, resource, include) {
                Ok(configs) => (0, None, configs),
                Err((code, message)) => (code.code(), Some(message), Vec::new()),
            };
            DescribeConfigsResult {
                error_code,
                error_message,
                resource_type: resource.resource_type,
                resource_name: resource.resource_name.clone(),
                configs,
                ..Default::default()
            }
        })
        .collect();
    DescribeConfigsResponse { throttle_time_ms: 0, results, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::test_state;

    fn resource(resource_type: i8, name: &str, keys: Option<&[&str]>) -> DescribeConfigsResource {
        DescribeConfigsResource {
            resource_type,
            resource_name: name.into(),
            configuration_keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    fn request(resources: Vec<DescribeConfigsResource>, synonyms: bool, docs: bool) -> DescribeConfigsRequest {
        DescribeConfigsRequest {
            resources,
            include_synonyms: synonyms,
            include_documentation: docs,
            ..Default::default()
        }
    }

    fn state_with_topic() -> State {
        let mut state = test_state(1);
        state.settings.broker_configs.insert("log.retention.hours".into(), "2".into());
        state.settings.broker_configs.insert("num.partitions".into(), "3".into());
        let configs: BTreeMap<String, String> = [("cleanup.policy".to_string(), "compact".to_string())].into();
        state.add_topic("t", 1, 1, configs);
        state
    }

    #[test]
    fn a_topic_has_every_config_with_its_source() {
        let state = state_with_topic();
        let resp = handle(&state, 1, 4, &request(vec![resource(RESOURCE_TOPIC, "t", None)], false, false));
        let r = &resp.results[0];
        assert_eq!((r.error_code, r.error_message.as_deref(), r.resource_type), (0, None, RESOURCE_TOPIC));
        assert_eq!(r.configs.len(), TOPIC_CONFIGS.len());
        let find = |n: &str| r.configs.iter().find(|c| c.name == n).unwrap();
        let policy = find("cleanup.policy");
        assert_eq!((policy.value.as_deref(), policy.config_source, policy.is_default), (Some("compact"), 1, false));
        let retention = find("retention.ms");
        assert_eq!((retention.value.as_deref(), retention.config_source), (Some("7200000"), 4));
        let segment = find("segment.bytes");
        assert_eq!(
            (segment.value.as_deref(), segment.config_source, segment.is_default),
            (Some("1073741824"), 5, false)
        );
        assert_eq!(segment.config_type, 3);
        assert!(r.configs.iter().all(|c| !c.read_only && !c.is_sensitive && c.synonyms.is_empty()));
        assert!(r.configs.iter().all(|c| c.documentation.is_none()));
        // v0 has is_default instead of config_source.
        let v0 = handle(&state, 1, 0, &request(vec![resource(RESOURCE_TOPIC, "t", None)], false, false));
        let defaults: Vec<&str> =
            v0.results[0].configs.iter().filter(|c| !c.is_default).map(|c| c.name.as_str()).collect();
        assert_eq!(defaults, vec!["cleanup.policy", "retention.ms"]);
    }

    #[test]
    fn every_version_encodes() {
        let state = state_with_topic();
        let req = request(
            vec![
                resource(RESOURCE_TOPIC, "t", None),
                resource(RESOURCE_BROKER, "1", None),
                resource(RESOURCE_TOPIC, "x", None),
            ],
            true,
            true,
        );
        for version in MIN_VERSION..=MAX_VERSION {
            crate::handlers::assert_encodes(handle(&state, 1, version, &req), version);
        }
    }

    #[test]
    fn synonyms_and_documentation_when_asked() {
        let state = state_with_topic();
        let keys: &[&str] = &["cleanup.policy", "retention.ms", "no.such.config"];
        let resp = handle(&state, 1, 3, &request(vec![resource(RESOURCE_TOPIC, "t", Some(keys))], true, true));
        let configs = &resp.results[0].configs;
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["cleanup.policy", "retention.ms"]);
        let syn = |i: usize| -> Vec<(String, Option<String>, i8)> {
            configs[i].synonyms.iter().map(|s| (s.name.clone(), s.value.clone(), s.source)).collect()
        };
        assert_eq!(
            syn(0),
            vec![
                ("cleanup.policy".into(), Some("compact".into()), 1),
                ("log.cleanup.policy".into(), Some("delete".into()), 5)
            ]
        );
        assert_eq!(
            syn(1),
            vec![
                ("log.retention.hours".into(), Some("2".into()), 4),
                ("log.retention.ms".into(), Some("604800000".into()), 5)
            ]
        );
        assert_eq!(configs[0].config_type, 7, "LIST");
        assert_eq!(configs[1].config_type, 5, "LONG");
        assert_eq!(configs[0].documentation.as_deref(), Some(configs::topic_config("cleanup.policy").unwrap().doc));
    }

    #[test]
    fn unknown_and_illegal_topics() {
        let state = state_with_topic();
        let req =
            request(vec![resource(RESOURCE_TOPIC, "missing", None), resource(RESOURCE_TOPIC, "", None)], false, false);
        let resp = handle(&state, 1, 0, &req);
        assert_eq!(resp.results[0].error_code, ErrorCode::UnknownTopicOrPartition.code());
        assert_eq!(resp.results[0].resource_name, "missing");
        assert!(resp.results[0].configs.is_empty());
        assert_eq!(resp.results[1].error_code, ErrorCode::InvalidTopicException.code());
    }

    #[test]
    fn a_broker_reports_static_settings_and_topic_defaults() {
        let state = state_with_topic();
        let resp = handle(&state, 1, 1, &request(vec![resource(RESOURCE_BROKER, "1", None)], true, false));
        let r = &resp.results[0];
        assert_eq!(r.error_code, 0);
        let find = |n: &str| r.configs.iter().find(|c| c.name == n).unwrap();
        let partitions = find("num.partitions");
        assert_eq!((partitions.value.as_deref(), partitions.config_source), (Some("3"), 4));
        let hours = find("log.retention.hours");
        assert_eq!((hours.value.as_deref(), hours.config_source), (Some("2"), 4));
        let policy = find("log.cleanup.policy");
        assert_eq!((policy.value.as_deref(), policy.config_source, policy.config_type), (Some("delete"), 5, 7));
        assert_eq!(policy.synonyms.len(), 1);
        // What topics inherit: log.retention.ms follows log.retention.hours.
        let retention = find("log.retention.ms");
        assert_eq!((retention.value.as_deref(), retention.config_source), (Some("7200000"), 4));
        let syn: Vec<(&str, i8)> = retention.synonyms.iter().map(|s| (s.name.as_str(), s.source)).collect();
        assert_eq!(syn, vec![("log.retention.hours", 4), ("log.retention.ms", 5)]);
        assert!(r.configs.iter().all(|c| c.read_only));
        // 2 given at start (neither backs a topic config directly) + one per topic config.
        assert_eq!(r.configs.len(), TOPIC_CONFIGS.len() + 2);
        let only = handle(
            &state,
            1,
            1,
            &request(vec![resource(RESOURCE_BROKER, "1", Some(&["num.partitions"]))], false, false),
        );
        assert_eq!(only.results[0].configs.len(), 1);
    }

    #[test]
    fn other_brokers_and_resource_types_are_invalid_requests() {
        let state = state_with_topic();
        let req = request(
            vec![
                resource(RESOURCE_BROKER, "2", None),
                resource(RESOURCE_BROKER, "one", None),
                resource(RESOURCE_BROKER, "", None),
                resource(RESOURCE_BROKER_LOGGER, "1", None),
                resource(RESOURCE_GROUP, "g", None),
                resource(3, "x", None),
            ],
            false,
            false,
        );
        let resp = handle(&state, 1, 2, &req);
        let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
        let invalid = ErrorCode::InvalidRequest.code();
        assert_eq!(codes, vec![invalid, invalid, 0, invalid, invalid, invalid]);
        assert_eq!(
            resp.results[0].error_message.as_deref(),
            Some("Unexpected broker id, expected 1 or empty string, but received 2")
        );
        assert!(resp.results[2].configs.is_empty(), "no dynamic cluster-wide defaults");
        assert_eq!(
            resp.results[4].error_message.as_deref(),
            Some("Resource type GROUP is not supported by the bundled broker")
        );
        assert_eq!(resp.results[5].error_message.as_deref(), Some("Unsupported resource type: 3"));
    }
}
