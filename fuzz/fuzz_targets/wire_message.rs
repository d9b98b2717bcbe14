#![no_main]
use lmstudio::fuzzing::{wire_message, write_seeds, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "wire_message"), |data: &[u8]| wire_message(data));
