//! ApiVersions (key 18), versions 0-4: the APIs and versions this broker implements.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ErrorCode;

use crate::cluster::State;

pub(crate) const MIN_VERSION: i16 = 0;
pub(crate) const MAX_VERSION: i16 = 4;

fn api_keys() -> Vec<ApiVersion> {
    super::SUPPORTED
        .iter()
        .map(|(k, min, max)| ApiVersion {
            api_key: k.key(),
            min_version: *min,
            max_version: *max,
            ..Default::default()
        })
        .collect()
}

pub(crate) fn handle(_state: &mut State, _version: i16, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse { error_code: 0, api_keys: api_keys(), ..Default::default() }
}

/// The answer to an ApiVersions request of a version this broker does not know: encoded at
/// v0 (whose layout every client can read), UNSUPPORTED_VERSION with the supported ranges.
pub(crate) fn unsupported_version() -> kafka_protocol::messages::ResponseBody {
    ApiVersionsResponse { error_code: ErrorCode::UnsupportedVersion.code(), api_keys: api_keys(), ..Default::default() }
        .into()
}
