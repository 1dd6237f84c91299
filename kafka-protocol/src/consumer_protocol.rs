//! The embedded formats of the classic consumer group protocol: the subscription a member sends
//! in JoinGroup metadata and the assignment the leader sends in SyncGroup, each prefixed with an
//! `i16` version on the wire (as Java's `ConsumerProtocol` writes them).
//!
//! Decoding is forward compatible as in Java: data written at a version newer than this crate
//! knows is read at the newest known version (new versions only append fields).

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ProtocolError, Result};
use crate::message::Message;
use crate::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use crate::primitives::write_i16;

fn encode_versioned<M: Message>(msg: &M, version: i16) -> Result<Bytes> {
    let mut out = BytesMut::new();
    write_i16(&mut out, version);
    msg.encode(&mut out, version)?;
    Ok(out.freeze())
}

fn decode_versioned<M: Message>(mut data: Bytes) -> Result<(i16, M)> {
    if data.len() < 2 {
        return Err(ProtocolError::Truncated { needed: 2, remaining: data.len() });
    }
    let version = data.get_i16();
    if version < 0 {
        return Err(ProtocolError::UnsupportedVersion { api_key: -1, api_name: M::NAME, version });
    }
    let read_at = version.min(M::VERSIONS.max);
    Ok((version, M::decode(&mut data, read_at)?))
}

/// Encodes a member's subscription (JoinGroup protocol metadata) with its version prefix.
pub fn encode_subscription(subscription: &ConsumerProtocolSubscription, version: i16) -> Result<Bytes> {
    encode_versioned(subscription, version)
}

/// Decodes JoinGroup protocol metadata; returns the version it was written at and the
/// subscription (read at the newest known version if it was written at a newer one).
pub fn decode_subscription(metadata: Bytes) -> Result<(i16, ConsumerProtocolSubscription)> {
    decode_versioned(metadata)
}

/// Encodes a member's assignment (SyncGroup assignment bytes) with its version prefix.
pub fn encode_assignment(assignment: &ConsumerProtocolAssignment, version: i16) -> Result<Bytes> {
    encode_versioned(assignment, version)
}

/// Decodes SyncGroup assignment bytes; returns the version and the assignment. Empty bytes (a
/// member given nothing, as some leaders send) decode as an empty assignment at version 0.
pub fn decode_assignment(data: Bytes) -> Result<(i16, ConsumerProtocolAssignment)> {
    if data.is_empty() {
        return Ok((0, ConsumerProtocolAssignment::default()));
    }
    decode_versioned(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::consumer_protocol_assignment::TopicPartition;

    #[test]
    fn subscription_round_trip_and_forward_compatibility() {
        let sub = ConsumerProtocolSubscription {
            topics: vec!["orders".into(), "payments".into()],
            rack_id: Some("rack-a".into()),
            ..Default::default()
        };
        let max = ConsumerProtocolSubscription::VERSIONS.max;
        let bytes = encode_subscription(&sub, max).unwrap();
        assert_eq!(&bytes[..2], &max.to_be_bytes());
        assert_eq!(decode_subscription(bytes.clone()).unwrap(), (max, sub.clone()));
        // Written by a newer member: same bytes plus a trailing field this crate does not know.
        let mut newer = BytesMut::from(&bytes[..]);
        newer[..2].copy_from_slice(&(max + 1).to_be_bytes());
        newer.extend_from_slice(b"future");
        let (v, decoded) = decode_subscription(newer.freeze()).unwrap();
        assert_eq!((v, decoded), (max + 1, sub));
    }

    #[test]
    fn assignment_round_trip_and_empty() {
        let a = ConsumerProtocolAssignment {
            assigned_partitions: vec![TopicPartition {
                topic: "orders".into(),
                partitions: vec![0, 2, 4],
                ..Default::default()
            }],
            user_data: None,
            ..Default::default()
        };
        let bytes = encode_assignment(&a, 0).unwrap();
        assert_eq!(decode_assignment(bytes).unwrap(), (0, a));
        assert_eq!(decode_assignment(Bytes::new()).unwrap().1, ConsumerProtocolAssignment::default());
        assert!(decode_subscription(Bytes::from_static(&[0])).is_err());
        assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff])).is_err());
    }
}
