//! Shared code of the examples and command-line tools.

pub mod perf;
