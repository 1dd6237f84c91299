//! One module per API, named like Kafka's APIs (franz-go's kfake layout), each opening with
//! the versions it supports. Every handler runs on the state task.

pub(crate) mod alter_configs;
pub(crate) mod api_versions;
pub(crate) mod create_partitions;
pub(crate) mod create_topics;
pub(crate) mod delete_topics;
pub(crate) mod describe_cluster;
pub(crate) mod describe_configs;
pub(crate) mod incremental_alter_configs;
pub(crate) mod metadata;

use std::time::Instant;

use kafka_protocol::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody};

use crate::cluster::State;

/// The APIs this broker implements and the versions of each, exactly what ApiVersions
/// advertises. A version outside these ranges is never sent by a client that read
/// ApiVersions first.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, api_versions::MIN_VERSION, api_versions::MAX_VERSION),
    (ApiKey::Metadata, metadata::MIN_VERSION, metadata::MAX_VERSION),
    (ApiKey::CreateTopics, create_topics::MIN_VERSION, create_topics::MAX_VERSION),
    (ApiKey::DeleteTopics, delete_topics::MIN_VERSION, delete_topics::MAX_VERSION),
    (ApiKey::DescribeConfigs, describe_configs::MIN_VERSION, describe_configs::MAX_VERSION),
    (ApiKey::AlterConfigs, alter_configs::MIN_VERSION, alter_configs::MAX_VERSION),
    (ApiKey::CreatePartitions, create_partitions::MIN_VERSION, create_partitions::MAX_VERSION),
    (ApiKey::IncrementalAlterConfigs, incremental_alter_configs::MIN_VERSION, incremental_alter_configs::MAX_VERSION),
    (ApiKey::DescribeCluster, describe_cluster::MIN_VERSION, describe_cluster::MAX_VERSION),
];

/// Whether `version` of `api` is implemented.
pub(crate) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == api && (*min..=*max).contains(&version))
}

/// What a handler decided.
#[derive(Debug)]
pub(crate) enum Handled {
    /// Send this response.
    Respond(ResponseBody),
    /// Send nothing (a Produce with acks=0 that succeeded).
    Silent,
    /// Close the connection with this reason (a Produce with acks=0 that failed: Kafka's
    /// only way to tell such a producer).
    Close(String),
    /// Not answerable yet (a Fetch waiting for `min_bytes`): run the request again when data
    /// arrives, and for the last time at the deadline.
    Park(Instant),
    /// The API or version is not implemented.
    NotImplemented,
}

impl From<ResponseBody> for Handled {
    fn from(body: ResponseBody) -> Self {
        Handled::Respond(body)
    }
}

/// One request as the state task sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    /// The node id of the broker the client is connected to.
    pub broker: i32,
    pub header: &'a RequestHeader,
    pub version: i16,
    /// The cluster clock (milliseconds since the epoch).
    pub now_ms: i64,
    /// A parked request's deadline has passed: answer with what there is.
    pub final_attempt: bool,
}

/// Handles one request.
pub(crate) fn handle(state: &mut State, ctx: Ctx<'_>, body: &RequestBody) -> Handled {
    let version = ctx.version;
    if !supports(body.api_key(), version) {
        return Handled::NotImplemented;
    }
    match body {
        RequestBody::ApiVersions(r) => ResponseBody::from(api_versions::handle(state, version, r.clone())).into(),
        RequestBody::Metadata(r) => ResponseBody::from(metadata::handle(state, version, r.clone())).into(),
        RequestBody::CreateTopics(r) => ResponseBody::from(create_topics::handle(state, version, r.clone())).into(),
        RequestBody::DeleteTopics(r) => ResponseBody::from(delete_topics::handle(state, version, r)).into(),
        RequestBody::DescribeConfigs(r) => {
            ResponseBody::from(describe_configs::handle(state, ctx.broker, version, r)).into()
        }
        RequestBody::AlterConfigs(r) => ResponseBody::from(alter_configs::handle(state, ctx.broker, version, r)).into(),
        RequestBody::CreatePartitions(r) => ResponseBody::from(create_partitions::handle(state, version, r)).into(),
        RequestBody::IncrementalAlterConfigs(r) => {
            ResponseBody::from(incremental_alter_configs::handle(state, ctx.broker, version, r)).into()
        }
        RequestBody::DescribeCluster(r) => ResponseBody::from(describe_cluster::handle(state, version, r)).into(),
        _ => Handled::NotImplemented,
    }
}

/// Fails unless `body` encodes at `version`: the encoder refuses a value in a field the
/// version does not have, which would otherwise surface only as a closed connection.
#[cfg(test)]
pub(crate) fn assert_encodes(body: impl Into<ResponseBody>, version: i16) {
    let body = body.into();
    let mut out = bytes::BytesMut::new();
    if let Err(e) = kafka_protocol::frame::encode_response_body(&mut out, 1, &body, version) {
        panic!("{:?} v{version} does not encode: {e}", body.api_key());
    }
}
