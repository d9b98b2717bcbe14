//! Plain data at the bottom of the library: configs, results, stats, model info, prediction events
//! and the error type. No I/O, no llama.cpp; every other layer builds on these.

pub mod config;
pub mod error;
pub mod event;
pub mod result;
pub(crate) mod sync;
pub mod tools;
