//! The subcommands of the `sse-client` binary, one file each.

pub mod json;
pub mod listen;
pub mod parse;
