#![no_main]
use lmstudio::fuzzing::{kv_config, write_seeds, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "kv_config"), |data: &[u8]| kv_config(data));
