#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod broker;
pub mod client;
pub mod config;
mod conn;
pub mod keyfile;
pub mod loadgen;
mod redact;
pub mod server;
mod shard;
pub mod stats;

pub use config::RelayConfig;
pub use server::{Relay, run};
pub use stats::Stats;
