//! The public API: client, model handles, config, results, streams and errors.

pub mod client;
pub mod config;
pub mod error;
pub mod result;
pub mod stream;
