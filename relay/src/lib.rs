#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod body;
pub mod broker;
pub mod compare;
pub mod config;
mod conn;
pub mod defaults;
pub mod keyfile;
pub mod loadgen;
pub mod metrics;
mod per_ip;
pub mod procstat;
mod redact;
pub mod server;
mod shard;
pub mod stats;

/// The client side of the wire lives in its own crate so that the daemon
/// links no server code; re-exported here for the load generator and tests.
pub use anonchat_relay_client as client;
pub use config::RelayConfig;
pub use server::{Relay, run, run_with_metrics};
pub use stats::Stats;
