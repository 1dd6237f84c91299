//! One module per API, named like Kafka's APIs (franz-go's kfake layout), each opening with
//! the versions it supports. Every handler runs on the state task.

pub(crate) mod api_versions;
pub(crate) mod create_topics;
pub(crate) mod metadata;

use kafka_protocol::messages::{ApiKey, RequestBody, RequestHeader, ResponseBody};

use crate::cluster::State;

/// The APIs this broker implements and the versions of each, exactly what ApiVersions
/// advertises. A version outside these ranges is never sent by a client that read
/// ApiVersions first.
pub(crate) const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, api_versions::MIN_VERSION, api_versions::MAX_VERSION),
    (ApiKey::Metadata, metadata::MIN_VERSION, metadata::MAX_VERSION),
    (ApiKey::CreateTopics, create_topics::MIN_VERSION, create_topics::MAX_VERSION),
];

/// Whether `version` of `api` is implemented.
pub(crate) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == api && (*min..=*max).contains(&version))
}

/// Handles one request. `None` means the API is not implemented: the connection is closed
/// with a logged reason, as Kafka closes connections that send requests it cannot serve
/// (answering with a default body would tell the client it succeeded).
pub(crate) fn handle(
    state: &mut State,
    _broker: i32,
    _header: &RequestHeader,
    version: i16,
    body: RequestBody,
) -> Option<ResponseBody> {
    if !supports(body.api_key(), version) {
        return None;
    }
    Some(match body {
        RequestBody::ApiVersions(r) => api_versions::handle(state, version, r).into(),
        RequestBody::Metadata(r) => metadata::handle(state, version, r).into(),
        RequestBody::CreateTopics(r) => create_topics::handle(state, version, r).into(),
        _ => return None,
    })
}
