//! Round trips of every generated message at every version, with every field that exists at
//! that version set to a non-default value (nullable fields null on some seeds, an unknown
//! tagged field added in flexible versions), plus truncation and corruption of each encoding.

use bytes::Bytes;

use crate::message::Message;
use crate::messages::{visit_all, MessageVisitor, Sample};
use crate::ProtocolError;

const SEEDS: u64 = 6;

#[derive(Default)]
struct RoundTrip {
    messages: usize,
    cases: usize,
    bytes: usize,
    failures: Vec<String>,
}

impl MessageVisitor for RoundTrip {
    fn visit<M: Message + Sample>(&mut self) {
        self.messages += 1;
        for version in M::VERSIONS.min..=M::VERSIONS.max {
            for seed in 0..SEEDS {
                self.cases += 1;
                let msg = M::sample(version, seed);
                let encoded = match msg.encode_to_bytes(version) {
                    Ok(b) => b,
                    Err(e) => {
                        self.failures.push(format!("{} v{version} seed {seed}: encode failed: {e}", M::NAME));
                        continue;
                    }
                };
                self.bytes += encoded.len();
                let mut rest = encoded.clone();
                match M::decode(&mut rest, version) {
                    Ok(decoded) => {
                        if !rest.is_empty() {
                            self.failures.push(format!(
                                "{} v{version}: {} bytes left after decode",
                                M::NAME,
                                rest.len()
                            ));
                        }
                        if decoded != msg {
                            self.failures.push(format!(
                                "{} v{version} seed {seed}: decoded value differs\n  sent {msg:?}\n  got  {decoded:?}",
                                M::NAME
                            ));
                        }
                        match decoded.encode_to_bytes(version) {
                            Ok(again) if again == encoded => {}
                            Ok(_) => self.failures.push(format!("{} v{version}: re-encoding differs", M::NAME)),
                            Err(e) => self.failures.push(format!("{} v{version}: re-encode failed: {e}", M::NAME)),
                        }
                    }
                    Err(e) => self.failures.push(format!("{} v{version} seed {seed}: decode failed: {e}", M::NAME)),
                }
                if seed == 1 {
                    self.truncate_and_corrupt::<M>(version, &encoded);
                }
            }
        }
    }
}

impl RoundTrip {
    fn truncate_and_corrupt<M: Message>(&mut self, version: i16, encoded: &Bytes) {
        // Every strict prefix must fail with an error (every field consumes bytes, so a
        // prefix can never be a complete message).
        for cut in 0..encoded.len() {
            let mut b = encoded.slice(..cut);
            if M::decode(&mut b, version).is_ok() {
                self.failures.push(format!("{} v{version}: prefix of {cut}/{} bytes decoded", M::NAME, encoded.len()));
            }
        }
        // Corrupting any byte must never panic; the result may be Ok or Err.
        let mut bytes = encoded.to_vec();
        for i in 0..bytes.len() {
            for x in [0xff_u8, 0x80, 0x01] {
                bytes[i] ^= x;
                let _ = M::decode(&mut Bytes::copy_from_slice(&bytes), version);
                bytes[i] ^= x;
            }
        }
    }
}

#[test]
fn every_message_round_trips_at_every_version() {
    let mut rt = RoundTrip::default();
    visit_all(&mut rt);
    assert!(rt.messages >= 186, "visited {} message types", rt.messages);
    assert!(
        rt.failures.is_empty(),
        "{} failures, first ones:\n{}",
        rt.failures.len(),
        rt.failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
    println!("round trips: {} message types, {} cases, {} bytes", rt.messages, rt.cases, rt.bytes);
}

/// Samples must really be non-default, or the round trip proves little.
#[test]
fn samples_are_not_defaults() {
    struct Check(Vec<String>);
    impl MessageVisitor for Check {
        fn visit<M: Message + Sample>(&mut self) {
            let v = M::VERSIONS.max;
            if M::sample(v, 1) == M::default() {
                self.0.push(M::NAME.to_string());
            }
        }
    }
    let mut c = Check(Vec::new());
    visit_all(&mut c);
    // Messages with no fields at all (none in Kafka today) would be the only exception.
    assert!(c.0.is_empty(), "samples equal to default: {:?}", c.0);
}

#[test]
fn unsupported_versions_are_errors() {
    use crate::messages::FetchRequest;
    let err = FetchRequest::default().encode_to_bytes(99).unwrap_err();
    assert_eq!(err, ProtocolError::UnsupportedVersion { api_key: 1, api_name: "FetchRequest", version: 99 });
    assert!(FetchRequest::decode(&mut Bytes::new(), -1).is_err());
}

#[test]
fn non_ignorable_fields_refuse_old_versions_and_ignorable_ones_are_dropped() {
    use crate::messages::{fetch_request::ReplicaState, FetchRequest};
    // ReplicaState exists from v15 and is not ignorable: v14 cannot express it.
    let req = FetchRequest {
        replica_state: ReplicaState { replica_id: 3, replica_epoch: 9, ..Default::default() },
        ..Default::default()
    };
    assert!(matches!(
        req.encode_to_bytes(14),
        Err(ProtocolError::FieldNotSupported { field: "ReplicaState", version: 14, .. })
    ));
    assert!(req.encode_to_bytes(15).is_ok());
    // RackId (v11+) is ignorable: v10 drops it silently, as the Java client does.
    let req = FetchRequest { rack_id: "rack-a".into(), ..Default::default() };
    let mut b = req.encode_to_bytes(10).unwrap();
    assert_eq!(FetchRequest::decode(&mut b, 10).unwrap().rack_id, "");
}

#[test]
fn unknown_tagged_fields_survive_and_stay_sorted() {
    use crate::messages::ApiVersionsRequest;
    use crate::primitives::RawTaggedField;
    let req = ApiVersionsRequest {
        client_software_name: "x".into(),
        client_software_version: "1".into(),
        unknown_tagged_fields: vec![
            RawTaggedField { tag: 9, data: Bytes::from_static(b"nine") },
            RawTaggedField { tag: 4, data: Bytes::from_static(b"four") },
        ],
    };
    let b = req.encode_to_bytes(3).unwrap();
    // The tag section is the tail: count 2, then tag 4 before tag 9.
    let tail = &b[b.len() - 13..];
    assert_eq!(tail, b"\x02\x04\x04four\x09\x04nine");
    let d = ApiVersionsRequest::decode(&mut b.clone(), 3).unwrap();
    assert_eq!(d.unknown_tagged_fields.len(), 2);
    assert_eq!(d.unknown_tagged_fields[0].tag, 4);
}
