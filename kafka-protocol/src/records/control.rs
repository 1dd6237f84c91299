//! Control records: the transaction markers (COMMIT / ABORT) that transaction coordinators
//! write into each partition of a transaction.
//!
//! Key: version i16 (0) + type i16 (0 = ABORT, 1 = COMMIT). Value of a transaction marker:
//! version i16 (0) + coordinator epoch i32.

use bytes::Bytes;

use super::{BatchOptions, ProducerState, Record, RecordBatchBuilder, TimestampType, NO_SEQUENCE};
use crate::compression::Compression;
use crate::error::{ProtocolError, Result};

/// The type of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlRecordType {
    /// Transaction aborted (type 0).
    Abort,
    /// Transaction committed (type 1).
    Commit,
    /// A type this crate does not interpret (KRaft uses 2 and above in its metadata log);
    /// kept as read.
    Unknown(i16),
}

impl ControlRecordType {
    /// The type id on the wire.
    pub fn id(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
            ControlRecordType::Unknown(id) => id,
        }
    }

    /// The type for a wire id; unknown ids are preserved.
    pub fn from_id(id: i16) -> Self {
        match id {
            0 => ControlRecordType::Abort,
            1 => ControlRecordType::Commit,
            other => ControlRecordType::Unknown(other),
        }
    }

    /// Whether this is a transaction marker (ABORT or COMMIT).
    pub fn is_transaction_marker(self) -> bool {
        matches!(self, ControlRecordType::Abort | ControlRecordType::Commit)
    }
}

/// A parsed control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlRecord {
    /// The control record type.
    pub kind: ControlRecordType,
    /// The key's version (0 today; newer versions are read as version 0, as Java does).
    pub version: i16,
    /// The transaction coordinator's epoch, for ABORT and COMMIT markers.
    pub coordinator_epoch: Option<i32>,
}

impl ControlRecord {
    /// Parses a control record's key and value.
    ///
    /// The key must hold at least the version and type (a negative version is an error);
    /// ABORT and COMMIT need a value of at least version + coordinator epoch. The values of
    /// unknown types are not interpreted.
    pub fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Self> {
        let Some(key) = key else {
            return Err(ProtocolError::CorruptRecord("control record without a key"));
        };
        let Some((k, _)) = key.split_first_chunk::<4>() else {
            return Err(ProtocolError::CorruptRecord("control record key shorter than 4 bytes"));
        };
        let [v0, v1, t0, t1] = *k;
        let version = i16::from_be_bytes([v0, v1]);
        if version < 0 {
            return Err(ProtocolError::CorruptRecord("negative control record key version"));
        }
        let kind = ControlRecordType::from_id(i16::from_be_bytes([t0, t1]));
        let coordinator_epoch = if kind.is_transaction_marker() {
            let Some((v, _)) = value.unwrap_or_default().split_first_chunk::<6>() else {
                return Err(ProtocolError::CorruptRecord("transaction marker value shorter than 6 bytes"));
            };
            let [m0, m1, e0, e1, e2, e3] = *v;
            if i16::from_be_bytes([m0, m1]) < 0 {
                return Err(ProtocolError::CorruptRecord("negative transaction marker version"));
            }
            Some(i32::from_be_bytes([e0, e1, e2, e3]))
        } else {
            None
        };
        Ok(ControlRecord { kind, version, coordinator_epoch })
    }

    /// Parses the control record in `record` (a record of a control batch).
    pub fn from_record(record: &Record<'_>) -> Result<Self> {
        Self::parse(record.key(), record.value())
    }
}

/// Builds a control batch holding one transaction marker, as a transaction coordinator writes
/// it: transactional and control bits set, no compression, CreateTime, base offset 0, no base
/// sequence.
pub fn build_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlRecordType,
    coordinator_epoch: i32,
    timestamp_ms: i64,
    partition_leader_epoch: i32,
) -> Bytes {
    let [t0, t1] = kind.id().to_be_bytes();
    let key = [0, 0, t0, t1];
    let [e0, e1, e2, e3] = coordinator_epoch.to_be_bytes();
    let value = [0, 0, e0, e1, e2, e3];
    let options = BatchOptions {
        compression: Compression::None,
        compression_level: None,
        timestamp_type: TimestampType::CreateTime,
        transactional: true,
        partition_leader_epoch,
        base_offset: 0,
    };
    let producer = ProducerState { producer_id, producer_epoch, base_sequence: NO_SEQUENCE };
    RecordBatchBuilder::control_batch(options, producer, timestamp_ms, &key, &value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RecordBatch;

    #[test]
    fn control_batch_round_trip() {
        for kind in [ControlRecordType::Abort, ControlRecordType::Commit, ControlRecordType::Unknown(7)] {
            let bytes = build_control_batch(42, 3, kind, 17, 1_700_000_000_000, 5);
            let batch = RecordBatch::from_bytes(bytes).unwrap();
            batch.verify_crc().unwrap();
            let h = batch.header();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence), (42, 3, -1));
            assert_eq!(h.partition_leader_epoch, 5);
            assert_eq!(h.record_count, 1);
            assert_eq!(h.max_timestamp, 1_700_000_000_000);
            let records = batch.records(1 << 20).unwrap();
            let rec = records.iter().next().unwrap().unwrap();
            assert_eq!(rec.timestamp(), 1_700_000_000_000);
            let c = ControlRecord::from_record(&rec).unwrap();
            assert_eq!(c.kind, kind);
            assert_eq!(c.version, 0);
            let expect_epoch = if kind.is_transaction_marker() { Some(17) } else { None };
            assert_eq!(c.coordinator_epoch, expect_epoch);
        }
    }

    #[test]
    fn parse_rules() {
        let commit = ControlRecord::parse(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 9])).unwrap();
        assert_eq!(commit, ControlRecord { kind: ControlRecordType::Commit, version: 0, coordinator_epoch: Some(9) });
        // Newer key/value versions are read like version 0.
        assert_eq!(
            ControlRecord::parse(Some(&[0, 1, 0, 0, 0xff]), Some(&[0, 1, 0, 0, 0, 1, 0xff])).unwrap().version,
            1
        );
        // Unknown types keep their number and ignore the value.
        let unknown = ControlRecord::parse(Some(&[0, 0, 0x7f, 0]), None).unwrap();
        assert_eq!(unknown.kind, ControlRecordType::Unknown(0x7f00));
        assert_eq!(unknown.kind.id(), 0x7f00);
        assert!(ControlRecord::parse(None, None).is_err());
        assert!(ControlRecord::parse(Some(&[0, 0, 0]), None).is_err());
        assert!(ControlRecord::parse(Some(&[0xff, 0xff, 0, 0]), Some(&[0; 6])).is_err());
        assert!(ControlRecord::parse(Some(&[0, 0, 0, 0]), None).is_err());
        assert!(ControlRecord::parse(Some(&[0, 0, 0, 0]), Some(&[0, 0, 0])).is_err());
        assert!(ControlRecord::parse(Some(&[0, 0, 0, 1]), Some(&[0xff, 0xff, 0, 0, 0, 0])).is_err());
    }
}
