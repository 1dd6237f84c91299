//! Support code for the cross-crate integration tests (filled by later issues).
