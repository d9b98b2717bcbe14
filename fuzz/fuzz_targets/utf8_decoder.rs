#![no_main]
use lmstudio::fuzzing::{utf8_decoder, write_seeds, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "utf8_decoder"), |data: &[u8]| utf8_decoder(data));
