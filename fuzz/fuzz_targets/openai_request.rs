#![no_main]
use lmstudio::fuzzing::write_seeds;
use lmstudio_server::fuzzing::{openai_request, TARGETS};

libfuzzer_sys::fuzz_target!(init: write_seeds(TARGETS, "openai_request"), |data: &[u8]| openai_request(data));
