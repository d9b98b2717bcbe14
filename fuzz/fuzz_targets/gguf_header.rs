#![no_main]
use lmstudio::fuzzing::{gguf_header, write_seeds, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "gguf_header"), |data: &[u8]| gguf_header(data));
