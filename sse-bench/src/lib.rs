//! The fan-out benchmark behind `cargo xtask bench fanout`.
//!
//! It starts a server as its own process (sse-server, or the axum `Sse` + `tokio::sync::broadcast`
//! [`baseline`]), holds N subscribers from this process — HTTP/1.1 connections read by a minimal
//! reader ([`reader`]), or streams of cleartext HTTP/2 connections driven by the `h2` crate
//! ([`load::Protocol`]) — publishes sequence-numbered, timestamped events, and reports throughput,
//! latency, the server's RSS and CPU from `/proc`, and lost or duplicated events ([`stats`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod baseline;
pub mod cluster;
pub mod error;
pub mod load;
pub mod multi;
pub mod nchan;
pub mod plot;
pub mod procfs;
pub mod reader;
pub mod redis_cluster;
pub mod report;
pub mod server;
pub mod shards;
pub mod stats;
pub mod tls;

pub use error::Error;
