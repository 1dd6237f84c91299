//! The Kafka admin client. Not yet implemented: see the README for status.
