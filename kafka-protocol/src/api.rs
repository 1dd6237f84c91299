//! What the generated API table cannot know: header versions and Kafka 4's version floors.

use crate::messages::ApiKey;

impl ApiKey {
    /// The request header version for `version` of this API: 2 for flexible versions, else 1.
    /// ControlledShutdown v0 is the one exception (header v0, without a client id).
    pub const fn request_header_version(self, version: i16) -> i16 {
        if matches!(self, ApiKey::ControlledShutdown) && version == 0 {
            return 0;
        }
        match self.first_flexible_version() {
            Some(f) if version >= f => 2,
            _ => 1,
        }
    }

    /// The response header version for `version` of this API: 1 for flexible versions, else 0.
    /// ApiVersions responses always use header v0, so that a client that sent a version the
    /// broker does not know can still read the error and the broker's own version ranges.
    pub const fn response_header_version(self, version: i16) -> i16 {
        if matches!(self, ApiKey::ApiVersions) {
            return 0;
        }
        match self.first_flexible_version() {
            Some(f) if version >= f => 1,
            _ => 0,
        }
    }

    /// Whether `version` of this API is flexible (compact encodings, tagged fields).
    pub const fn is_flexible(self, version: i16) -> bool {
        match self.first_flexible_version() {
            Some(f) => version >= f,
            None => false,
        }
    }

    /// The lowest version an Apache Kafka 4.x broker accepts (KIP-896 removed older ones).
    /// A client should never send a version below this to a broker that supports it or more;
    /// the message definitions still list the old versions, so this crate can still encode
    /// and decode them for older brokers. A broker's ApiVersions answer remains the authority:
    /// clients pick the highest version both sides support, which is never below a 4.x
    /// broker's advertised minimum.
    pub const fn kafka4_min_version(self) -> i16 {
        match self {
            ApiKey::Produce => 3,
            ApiKey::Fetch => 4,
            ApiKey::ListOffsets => 1,
            ApiKey::OffsetCommit => 2,
            ApiKey::OffsetFetch => 1,
            ApiKey::CreateTopics => 2,
            ApiKey::DeleteTopics => 1,
            ApiKey::OffsetForLeaderEpoch => 2,
            ApiKey::DescribeConfigs => 1,
            ApiKey::DescribeAcls | ApiKey::CreateAcls | ApiKey::DeleteAcls => 1,
            _ => self.valid_versions().min,
        }
    }

    /// The highest version that is stable upstream: `valid_versions().max`, or one less when
    /// Kafka marks the latest version unstable. Clients should not send unstable versions.
    pub const fn max_stable_version(self) -> i16 {
        let max = self.valid_versions().max;
        if self.latest_version_unstable() && max > self.valid_versions().min {
            max - 1
        } else {
            max
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_versions() {
        assert_eq!(ApiKey::Metadata.request_header_version(8), 1);
        assert_eq!(ApiKey::Metadata.request_header_version(9), 2);
        assert_eq!(ApiKey::Metadata.response_header_version(9), 1);
        assert_eq!(ApiKey::ApiVersions.request_header_version(3), 2);
        assert_eq!(ApiKey::ApiVersions.response_header_version(3), 0);
        assert_eq!(ApiKey::ControlledShutdown.request_header_version(0), 0);
        assert_eq!(ApiKey::ControlledShutdown.request_header_version(1), 1);
        assert_eq!(ApiKey::Produce.request_header_version(9), 2);
        assert_eq!(ApiKey::Produce.request_header_version(8), 1);
        assert_eq!(ApiKey::Fetch.first_flexible_version(), Some(12));
    }

    #[test]
    fn table_is_complete() {
        assert_eq!(ApiKey::ALL.len(), 88);
        for (i, k) in ApiKey::ALL.iter().enumerate() {
            assert_eq!(k.key(), i as i16);
            assert_eq!(ApiKey::from_key(i as i16), Some(*k));
            assert!(!k.valid_versions().is_empty());
            assert!(k.kafka4_min_version() >= k.valid_versions().min);
            assert!(k.max_stable_version() >= k.kafka4_min_version(), "{k:?}");
        }
        assert_eq!(ApiKey::from_key(88), None);
        assert_eq!(ApiKey::from_key(-1), None);
        assert_eq!(ApiKey::Produce.kafka4_min_version(), 3);
        assert_eq!(ApiKey::Fetch.kafka4_min_version(), 4);
        assert_eq!(ApiKey::Metadata.name(), "Metadata");
    }
}
