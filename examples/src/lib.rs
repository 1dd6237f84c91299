//! Examples and command-line tools (filled by later issues).
