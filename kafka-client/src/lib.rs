//! The async Kafka client (producer, consumer). Not yet implemented: see the README for status.
