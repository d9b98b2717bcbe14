#![no_main]
use lmstudio::fuzzing::{stop_strings, write_seeds, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "stop_strings"), |data: &[u8]| stop_strings(data));
