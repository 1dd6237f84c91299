//! The bundled in-memory Kafka broker. Not yet implemented: see the README for status.
