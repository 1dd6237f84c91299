//! Topic configs by Kafka's names: the defaults, the broker settings that override them, value
//! validation, and the effective value of a config for one topic.
//!
//! A topic config resolves like Kafka's `LogConfig`: the topic's own value (set at creation or
//! by AlterConfigs/IncrementalAlterConfigs), else the broker setting it inherits from (given at
//! start, e.g. `log.retention.ms`), else Kafka's default.

use std::collections::BTreeMap;

use kafka_protocol::ErrorCode;

/// How a config's value is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A signed 64-bit integer at least the given minimum.
    Long(i64),
    /// A signed 32-bit integer at least the given minimum.
    Int(i32),
    /// A floating-point number in [0, 1].
    Ratio,
    /// `true` or `false`.
    Bool,
    /// One of the given words.
    OneOf(&'static [&'static str]),
    /// A comma-separated list of the given words (at least one).
    ListOf(&'static [&'static str]),
    /// Any string.
    Str,
}

/// Kafka's config types as DescribeConfigs v3+ reports them.
impl Kind {
    pub(crate) fn config_type(self) -> i8 {
        match self {
            Kind::Bool => 1,
            Kind::Str | Kind::OneOf(_) => 2,
            Kind::Int(_) => 3,
            Kind::Long(_) => 5,
            Kind::Ratio => 6,
            Kind::ListOf(_) => 7,
        }
    }
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigDef {
    /// The topic-level name.
    pub name: &'static str,
    /// The broker setting a topic inherits when it has no value of its own.
    pub broker_name: &'static str,
    /// Kafka's default.
    pub default: &'static str,
    /// How values are checked.
    pub kind: Kind,
    /// Kafka's one-line documentation.
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config Kafka defines (`TopicConfig`), with Kafka 3.x/4.x defaults.
pub(crate) const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        default: "delete",
        kind: Kind::ListOf(&["delete", "compact"]),
        doc: "The retention policy for old log segments: delete, compact, or both.",
    },
    ConfigDef {
        name: "compression.type",
        broker_name: "compression.type",
        default: "producer",
        kind: Kind::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
        doc: "The final compression type for a topic; producer keeps the producer's codec.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        default: "86400000",
        kind: Kind::Long(0),
        doc: "How long tombstones are kept on compacted topics.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        broker_name: "log.segment.delete.delay.ms",
        default: "60000",
        kind: Kind::Long(0),
        doc: "The time to wait before deleting a file from the filesystem.",
    },
    ConfigDef {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        default: LONG_MAX,
        kind: Kind::Long(1),
        doc: "Messages written before a forced fsync (no effect in memory).",
    },
    ConfigDef {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        default: LONG_MAX,
        kind: Kind::Long(0),
        doc: "Time between forced fsyncs (no effect in memory).",
    },
    ConfigDef {
        name: "follower.replication.throttled.replicas",
        broker_name: "follower.replication.throttled.replicas",
        default: "",
        kind: Kind::Str,
        doc: "Replicas whose log replication is throttled on the follower side.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        default: "4096",
        kind: Kind::Int(0),
        doc: "How often an entry is added to the offset index.",
    },
    ConfigDef {
        name: "leader.replication.throttled.replicas",
        broker_name: "leader.replication.throttled.replicas",
        default: "",
        kind: Kind::Str,
        doc: "Replicas whose log replication is throttled on the leader side.",
    },
    ConfigDef {
        name: "local.retention.bytes",
        broker_name: "log.local.retention.bytes",
        default: "-2",
        kind: Kind::Long(-2),
        doc: "Local log size kept when tiered storage is on (-2: retention.bytes).",
    },
    ConfigDef {
        name: "local.retention.ms",
        broker_name: "log.local.retention.ms",
        default: "-2",
        kind: Kind::Long(-2),
        doc: "Local log age kept when tiered storage is on (-2: retention.ms).",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        broker_name: "log.cleaner.max.compaction.lag.ms",
        default: LONG_MAX,
        kind: Kind::Long(1),
        doc: "The longest a record stays uncompacted.",
    },
    ConfigDef {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        default: "1048588",
        kind: Kind::Int(0),
        doc: "The largest record batch size allowed.",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        broker_name: "log.message.downconversion.enable",
        default: "true",
        kind: Kind::Bool,
        doc: "Whether old-format fetches are down-converted (removed in Kafka 4).",
    },
    ConfigDef {
        name: "message.format.version",
        broker_name: "log.message.format.version",
        default: "3.0-IV1",
        kind: Kind::Str,
        doc: "The message format version (removed in Kafka 4).",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        default: LONG_MAX,
        kind: Kind::Long(0),
        doc: "How far a record's timestamp may be ahead of the broker's clock.",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        default: LONG_MAX,
        kind: Kind::Long(0),
        doc: "How far a record's timestamp may be behind the broker's clock.",
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        broker_name: "log.message.timestamp.difference.max.ms",
        default: LONG_MAX,
        kind: Kind::Long(0),
        doc: "Deprecated: the allowed difference between a record's timestamp and the broker's.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        default: "CreateTime",
        kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        doc: "Whether records keep the producer's timestamp or get the broker's append time.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        broker_name: "log.cleaner.min.cleanable.ratio",
        default: "0.5",
        kind: Kind::Ratio,
        doc: "How dirty a compacted log must be before it is cleaned.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        default: "0",
        kind: Kind::Long(0),
        doc: "The least time a record stays uncompacted.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        default: "1",
        kind: Kind::Int(1),
        doc: "The fewest in-sync replicas for an acks=all write to succeed.",
    },
    ConfigDef {
        name: "preallocate",
        broker_name: "log.preallocate",
        default: "false",
        kind: Kind::Bool,
        doc: "Whether segment files are preallocated (no effect in memory).",
    },
    ConfigDef {
        name: "remote.storage.enable",
        broker_name: "remote.storage.enable",
        default: "false",
        kind: Kind::Bool,
        doc: "Whether tiered storage is on for the topic (not simulated).",
    },
    ConfigDef {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        default: "-1",
        kind: Kind::Long(-1),
        doc: "The largest a partition may grow before old batches are deleted (-1: no limit).",
    },
    ConfigDef {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        default: "604800000",
        kind: Kind::Long(-1),
        doc: "How long batches are kept before deletion (-1: forever).",
    },
    ConfigDef {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        default: "1073741824",
        kind: Kind::Int(14),
        doc: "The segment size: retention deletes whole segments.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        broker_name: "log.index.size.max.bytes",
        default: "10485760",
        kind: Kind::Int(4),
        doc: "The offset index size (no effect in memory).",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        broker_name: "log.roll.jitter.ms",
        default: "0",
        kind: Kind::Long(0),
        doc: "Random jitter subtracted from segment.ms.",
    },
    ConfigDef {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        default: "604800000",
        kind: Kind::Long(1),
        doc: "The time after which a segment is rolled even if not full.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        default: "false",
        kind: Kind::Bool,
        doc: "Whether out-of-sync replicas may become leader.",
    },
];

/// The definition of a topic config, if Kafka defines one by that name.
pub(crate) fn topic_config(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks that `name` is a topic config and `value` a legal value for it; Kafka's
/// INVALID_CONFIG otherwise.
pub(crate) fn validate(name: &str, value: &str) -> Result<(), (ErrorCode, String)> {
    let Some(def) = topic_config(name) else {
        return Err((ErrorCode::InvalidConfig, format!("Unknown topic config name: {name}")));
    };
    let bad =
        |why: String| Err((ErrorCode::InvalidConfig, format!("Invalid value {value} for configuration {name}: {why}")));
    match def.kind {
        Kind::Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type LONG".into()),
        },
        Kind::Int(min) => match value.trim().parse::<i32>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type INT".into()),
        },
        Kind::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            Ok(_) => bad("Value must be between 0 and 1".into()),
            Err(_) => bad("Not a number of type DOUBLE".into()),
        },
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("Expected value to be either true or false".into()),
        },
        Kind::OneOf(words) => {
            if words.iter().any(|w| w.eq_ignore_ascii_case(value.trim())) {
                Ok(())
            } else {
                bad(format!("String must be one of: {}", words.join(", ")))
            }
        }
        Kind::ListOf(words) => {
            let items: Vec<&str> = value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            if items.is_empty() {
                return bad("Empty list".into());
            }
            match items.iter().find(|i| !words.contains(i)) {
                Some(i) => bad(format!("Invalid value {i}; must be one of {}", words.join(", "))),
                None => Ok(()),
            }
        }
        Kind::Str => Ok(()),
    }
}

/// Where an effective config value comes from (DescribeConfigs' `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Set on the topic.
    Topic,
    /// A broker setting given at start.
    StaticBroker,
    /// Kafka's default.
    Default,
}

impl Source {
    /// Kafka's `ConfigSource` id.
    pub(crate) fn id(self) -> i8 {
        match self {
            Source::Topic => 1,
            Source::StaticBroker => 4,
            Source::Default => 5,
        }
    }
}

/// The broker settings `def` inherits from, most specific first, each with the factor that
/// turns its unit into the topic config's (Kafka's `ServerTopicConfigSynonyms`: the broker
/// name itself, then Kafka's coarser broker settings for the same thing).
pub(crate) fn broker_synonyms(def: &ConfigDef) -> Vec<(&'static str, i64)> {
    let coarse: &[(&'static str, i64)] = match def.name {
        "retention.ms" => &[("log.retention.minutes", 60_000), ("log.retention.hours", 3_600_000)],
        "segment.ms" => &[("log.roll.hours", 3_600_000)],
        _ => &[],
    };
    std::iter::once((def.broker_name, 1)).chain(coarse.iter().copied()).collect()
}

/// The effective value of `def` for a topic with `topic_configs`, given the broker settings,
/// and where it comes from. A value inherited from a coarser broker setting
/// (`log.retention.hours=2`) is converted to the topic config's unit (`7200000`), for
/// DescribeConfigs and the log alike.
pub(crate) fn effective_value(
    def: &ConfigDef,
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, String>,
) -> (String, Source) {
    if let Some(v) = topic_configs.get(def.name) {
        return (v.clone(), Source::Topic);
    }
    for (key, factor) in broker_synonyms(def) {
        if let Some(v) = broker_configs.get(key) {
            let value = match v.trim().parse::<i64>() {
                Ok(n) if factor != 1 => n.saturating_mul(factor).to_string(),
                _ => v.clone(),
            };
            return (value, Source::StaticBroker);
        }
    }
    (def.default.to_string(), Source::Default)
}

/// A topic's resolved settings that the log and the handlers act on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogSettings {
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub compact: bool,
    pub delete: bool,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_message_bytes: i32,
    pub min_insync_replicas: i32,
    pub log_append_time: bool,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

/// Resolves the settings the log acts on for a topic with `topic_configs`.
pub(crate) fn log_settings(
    topic_configs: &BTreeMap<String, String>,
    broker_configs: &BTreeMap<String, String>,
) -> LogSettings {
    // Coarse broker synonyms (log.retention.hours, log.roll.hours, ...) come back scaled to
    // the topic config's unit.
    let get = |name: &str| -> (String, Source) {
        match topic_config(name) {
            Some(def) => effective_value(def, topic_configs, broker_configs),
            None => (String::new(), Source::Default),
        }
    };
    let long = |name: &str, default: i64| -> i64 { get(name).0.trim().parse::<i64>().unwrap_or(default) };
    let policy = get("cleanup.policy").0;
    LogSettings {
        retention_ms: long("retention.ms", 604_800_000),
        retention_bytes: long("retention.bytes", -1),
        compact: policy.split(',').any(|p| p.trim() == "compact"),
        delete: policy.split(',').any(|p| p.trim() == "delete"),
        delete_retention_ms: long("delete.retention.ms", 86_400_000),
        min_compaction_lag_ms: long("min.compaction.lag.ms", 0),
        max_message_bytes: i32::try_from(long("max.message.bytes", 1_048_588)).unwrap_or(i32::MAX),
        min_insync_replicas: i32::try_from(long("min.insync.replicas", 1)).unwrap_or(1),
        log_append_time: get("message.timestamp.type").0.eq_ignore_ascii_case("LogAppendTime"),
        segment_bytes: long("segment.bytes", 1_073_741_824),
        segment_ms: long("segment.ms", 604_800_000),
        timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX)
            .min(long("message.timestamp.difference.max.ms", i64::MAX)),
        timestamp_after_max_ms: long("message.timestamp.after.max.ms", i64::MAX)
            .min(long("message.timestamp.difference.max.ms", i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_kafka_types() {
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("retention.ms", "ten").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "compact,shred").is_err());
        assert!(validate("cleanup.policy", "").is_err());
        assert!(validate("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate("message.timestamp.type", "Now").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("preallocate", "yes").is_err());
        assert_eq!(validate("no.such.config", "1").unwrap_err().0, ErrorCode::InvalidConfig);
    }

    #[test]
    fn topic_value_beats_broker_setting_beats_default() {
        let mut topic = BTreeMap::new();
        let mut broker = BTreeMap::new();
        let def = topic_config("retention.ms").unwrap();
        assert_eq!(effective_value(def, &topic, &broker), ("604800000".to_string(), Source::Default));
        broker.insert("log.retention.ms".to_string(), "1000".to_string());
        assert_eq!(effective_value(def, &topic, &broker), ("1000".to_string(), Source::StaticBroker));
        topic.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(effective_value(def, &topic, &broker), ("5".to_string(), Source::Topic));
        assert_eq!(log_settings(&topic, &broker).retention_ms, 5);
    }

    #[test]
    fn coarse_broker_settings_are_converted_for_reporting() {
        let def = topic_config("retention.ms").unwrap();
        let topic = BTreeMap::new();
        let mut broker: BTreeMap<String, String> = [("log.retention.hours".to_string(), "2".to_string())].into();
        assert_eq!(effective_value(def, &topic, &broker), ("7200000".to_string(), Source::StaticBroker));
        broker.insert("log.retention.minutes".to_string(), "3".to_string());
        assert_eq!(effective_value(def, &topic, &broker), ("180000".to_string(), Source::StaticBroker));
        broker.insert("log.retention.ms".to_string(), "42".to_string());
        assert_eq!(effective_value(def, &topic, &broker), ("42".to_string(), Source::StaticBroker));
        let policy = topic_config("cleanup.policy").unwrap();
        assert_eq!(effective_value(policy, &topic, &broker), ("delete".to_string(), Source::Default));
        assert_eq!(broker_synonyms(policy), vec![("log.cleanup.policy", 1)]);
    }

    #[test]
    fn coarse_roll_setting_is_scaled() {
        let broker: BTreeMap<String, String> = [("log.roll.hours".to_string(), "1".to_string())].into();
        assert_eq!(log_settings(&BTreeMap::new(), &broker).segment_ms, 3_600_000);
    }

    #[test]
    fn coarse_retention_settings_are_scaled() {
        let topic = BTreeMap::new();
        let broker: BTreeMap<String, String> = [("log.retention.hours".to_string(), "2".to_string())].into();
        assert_eq!(log_settings(&topic, &broker).retention_ms, 7_200_000);
        let broker: BTreeMap<String, String> = [("log.retention.minutes".to_string(), "3".to_string())].into();
        assert_eq!(log_settings(&topic, &broker).retention_ms, 180_000);
    }

    #[test]
    fn settings_parse_policy_and_timestamp_type() {
        let topic: BTreeMap<String, String> = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("message.timestamp.type".to_string(), "LogAppendTime".to_string()),
        ]
        .into();
        let s = log_settings(&topic, &BTreeMap::new());
        assert!(s.compact && !s.delete && s.log_append_time);
        assert_eq!(s.max_message_bytes, 1_048_588);
    }
}
