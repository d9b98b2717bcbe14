#![no_main]
use lmstudio::fuzzing::write_seeds;
use lmstudio_server::fuzzing::{sdk_message, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "sdk_message"), |data: &[u8]| sdk_message(data));
