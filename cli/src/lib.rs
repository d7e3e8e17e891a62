//! The `presence-router` command line: its JSON Lines protocol lives here,
//! apart from the binary, so that it can be tested and fuzzed on its own.

pub mod protocol;
