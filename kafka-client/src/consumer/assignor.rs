//! Partition assignors of the classic consumer group protocol (placeholder; see issue 6).
