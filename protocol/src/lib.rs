#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod e2e;
pub mod wire;
