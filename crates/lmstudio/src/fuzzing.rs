//! Fuzz targets: the decoders that take bytes from outside (model files, the wire) and the text
//! rules that see every token. Each is one function of arbitrary bytes that must never panic; the
//! text rules also check their contract. `fuzz/` runs them under libFuzzer (`scripts/fuzz`); the
//! unit tests below run a short, seeded mutation of each on every `cargo test` (the CI version).
//!
//! Not part of the API: compiled for tests and with the `fuzzing` feature only.

use serde_json::Value;

use crate::store::gguf::GgufHeader;
use crate::text::{Matched, StopMatcher, Utf8Decoder};
use crate::types::config::{Config, LoadConfig};
use crate::types::result::{Fragment, ModelInfo, Stats};
use crate::wire::{self, KvStack};

/// One fuzz target: its name (the file under `fuzz/fuzz_targets/`), the function, and the inputs
/// its runs start from.
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// Runs one input; panics only on a bug.
    pub run: fn(&[u8]),
    /// Well-formed and malformed inputs to mutate.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// The library's targets.
pub const TARGETS: &[Target] = &[
    Target { name: "gguf_header", run: gguf_header, seeds: gguf_seeds },
    Target { name: "kv_config", run: kv_config, seeds: kv_seeds },
    Target { name: "wire_message", run: wire_message, seeds: wire_seeds },
    Target { name: "stop_strings", run: stop_strings, seeds: text_seeds },
    Target { name: "utf8_decoder", run: utf8_decoder, seeds: text_seeds },
];

/// The GGUF header and tensor-table reader on a whole file.
pub fn gguf_header(data: &[u8]) {
    if let Ok(h) = GgufHeader::from_bytes(data) {
        // What the store reads off an accepted header.
        let _ = (h.architecture(), h.context_length(), h.quantization());
        assert!(h.file_size == data.len() as u64);
    }
}

/// An SDK KV config stack, read as prediction and as load settings, then validated.
pub fn kv_config(data: &[u8]) {
    let Ok(stack) = serde_json::from_slice::<KvStack>(data) else { return };
    let _ = stack.is_raw_completion();
    if let Ok(c) = stack.prediction_config() {
        if c.validate().is_ok() {
            // What we decode, we can encode and decode again to the same config.
            let fields = wire::prediction_fields(&c);
            let again = KvStack::of("x", fields);
            assert_eq!(again.prediction_config().ok().as_ref(), Some(&c), "round trip of {c:?}");
        }
    }
    if let Ok(c) = stack.load_config(LoadConfig::default()) {
        let _ = c.validate();
        let _ = wire::load_stack(&c);
    }
}

/// What the remote client decodes from a server: error objects, stats, model info, fragments, and
/// LM Studio's camelCase prediction config.
pub fn wire_message(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        let _ = std::str::from_utf8(data).map(Config::from_json);
        return;
    };
    if let Ok(object) = serde_json::from_value::<wire::ErrorObject>(v["error"].clone()) {
        let _ = wire::error_object(&wire::error_from_object(&object));
    }
    let _ = serde_json::from_value::<Stats>(v["stats"].clone());
    let _ = serde_json::from_value::<ModelInfo>(v["info"].clone());
    let _ = serde_json::from_value::<Fragment>(v["fragment"].clone());
    if let Ok(c) = serde_json::from_value::<Config>(v) {
        let _ = c.validate();
    }
}

/// Splits `data` into pieces at the bytes equal to the first byte (a text then follows).
fn pieces(data: &[u8]) -> Vec<&[u8]> {
    match data.split_first() {
        None => Vec::new(),
        Some((sep, rest)) => rest.split(|b| b == sep).collect(),
    }
}

/// The stop-string matcher: the first two pieces are stop strings, the rest arrives as text. It
/// stops on the first piece after which the text so far holds a stop string (the one that starts
/// earliest), shows exactly the text before it, and never releases any part of a stop string.
pub fn stop_strings(data: &[u8]) {
    let pieces: Vec<String> = pieces(data).into_iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    if pieces.len() < 2 {
        return;
    }
    let stops: Vec<String> = pieces[..2].iter().filter(|s| !s.is_empty()).cloned().collect();
    let mut m = StopMatcher::new(stops.clone());
    let (mut shown, mut so_far) = (String::new(), String::new());
    let longest = stops.iter().map(String::len).max().unwrap_or(0);
    let released_no_stop = |shown: &str| {
        for s in &stops {
            assert!(!shown.contains(s.as_str()), "released text holds {s:?}");
        }
    };
    for t in &pieces[2..] {
        // Only text from here on can hold a stop string that the text before it did not.
        let mut from = so_far.len().saturating_sub(longest);
        while !so_far.is_char_boundary(from) {
            from -= 1;
        }
        so_far.push_str(t);
        let expected = stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| so_far[from..].find(s.as_str()).map(|at| (from + at, std::cmp::Reverse(s.len()), i)))
            .min();
        match (m.push(t), expected) {
            (Matched::Emit(s), None) => shown.push_str(&s),
            (Matched::Stop { text, index }, Some((at, _, i))) => {
                shown.push_str(&text);
                assert_eq!(shown, so_far[..at], "text shown before stop {i}");
                assert_eq!(stops[index], stops[i], "the stop that fired");
                released_no_stop(&shown);
                return;
            }
            (got, want) => panic!("after {so_far:?}: matcher said {got:?}, expected a stop at {want:?}"),
        }
    }
    assert!(so_far.starts_with(&shown), "released {shown:?} of {so_far:?}");
    released_no_stop(&shown);
    shown.push_str(&m.flush());
    assert_eq!(shown, so_far, "all text is shown when no stop string came");
}

/// The incremental UTF-8 decoder: bytes split anywhere decode as the whole does at once.
pub fn utf8_decoder(data: &[u8]) {
    let mut d = Utf8Decoder::default();
    let mut out = String::new();
    for p in pieces(data) {
        out.push_str(&d.push(p));
    }
    out.push_str(&d.finish());
    let whole: Vec<u8> = pieces(data).concat();
    assert_eq!(out, String::from_utf8_lossy(&whole), "decoding {whole:?}");
}

fn gguf_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![crate::store::gguf::corpus::Gguf::valid().bytes()];
    seeds.extend(crate::store::gguf::corpus::malformed().into_iter().map(|c| c.bytes));
    seeds
}

fn kv_seeds() -> Vec<Vec<u8>> {
    let full = Config {
        max_tokens: Some(20),
        temperature: Some(0.5),
        stop_strings: vec!["\n".into()],
        top_k: Some(40),
        top_p: Some(0.9),
        min_p: Some(0.05),
        repeat_penalty: Some(1.1),
        seed: Some(7),
        ..Default::default()
    };
    let layer = |fields| KvStack::of("apiOverride", fields);
    vec![
        serde_json::to_vec(&layer(wire::prediction_fields(&full))).unwrap_or_default(),
        serde_json::to_vec(&wire::load_stack(&LoadConfig { context_length: Some(2048), ..Default::default() }))
            .unwrap_or_default(),
        br#"{"layers":[{"layerName":"apiOverride","config":{"fields":[{"key":"llm.prediction.maxPredictedTokens","value":{"checked":false,"value":1}}]}}]}"#.to_vec(),
    ]
}

fn wire_seeds() -> Vec<Vec<u8>> {
    vec![
        br#"{"type":"channelSend","message":{"type":"fragment","fragment":{"content":"Hi","tokensCount":1,"containsDrafted":false,"reasoningType":"none"}}}"#.to_vec(),
        br#"{"error":{"title":"Model not found","cause":"x","errorData":{"lmstudioRs":{"type":"modelNotFound","query":"x","candidates":["a"]}}}}"#.to_vec(),
        br#"{"stats":{"stopReason":"eosFound","tokensPerSecond":10.5,"timeToFirstTokenSec":0.1,"predictedTokensCount":3,"promptTokensCount":4,"totalTokensCount":7}}"#.to_vec(),
        br#"{"maxTokens":20,"temperature":0.6,"stopStrings":["\n"],"topKSampling":40,"seed":1}"#.to_vec(),
    ]
}

fn text_seeds() -> Vec<Vec<u8>> {
    vec![
        b"|</end>|\n\n|hello <|/e|nd> more".to_vec(),
        "#éx#$ #aé#y#a$#b".as_bytes().to_vec(),
        b"\x00\xf0\x9f\x00\xa6\x80\x00a\xff\xfeb\x00\xe2\x82".to_vec(),
    ]
}

/// Writes the seeds of target `name` of `targets` into `$LMS_FUZZ_SEEDS` (a directory), if set:
/// `scripts/fuzz` sets it to the target's libFuzzer corpus before the run starts.
pub fn write_seeds(targets: &[Target], name: &str) {
    let (Some(dir), Some(target)) = (std::env::var_os("LMS_FUZZ_SEEDS"), targets.iter().find(|t| t.name == name))
    else {
        return;
    };
    let dir = std::path::Path::new(&dir);
    let _ = std::fs::create_dir_all(dir);
    for (i, seed) in (target.seeds)().iter().enumerate() {
        let _ = std::fs::write(dir.join(format!("seed-{i:03}")), seed);
    }
}

/// A small seeded generator (xorshift64*), so that a failing short run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that sit on the edges parsers get wrong.
const EDGES: &[u64] = &[0, 1, 2, 3, 4, 7, 8, 9, 12, 13, 31, 32, 63, 64, 255, 256, 1 << 31, u32::MAX as u64, u64::MAX];

/// Runs `target` on `inputs` mutations of its seeds (bit flips, edge values, cuts, copies and
/// splices), seeded by `seed`. On a panic, reports the input that caused it.
pub fn mutate(target: &Target, inputs: usize, seed: u64) {
    let seeds = (target.seeds)();
    let mut rng = Rng(seed | 1);
    for n in 0..inputs {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(8) {
            mutate_once(&mut input, &seeds, &mut rng);
        }
        let outcome = std::panic::catch_unwind(|| (target.run)(&input));
        if outcome.is_err() {
            panic!("{}: input {n} of seed {seed} panicked: {input:?}", target.name);
        }
    }
}

fn mutate_once(input: &mut Vec<u8>, seeds: &[Vec<u8>], rng: &mut Rng) {
    let at = rng.below(input.len() + 1);
    match rng.below(7) {
        0 if !input.is_empty() => {
            let i = at.min(input.len() - 1);
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            let bytes = EDGES[rng.below(EDGES.len())].to_le_bytes();
            let end = (at + width).min(input.len());
            input.splice(at..end, bytes[..width].iter().copied());
        }
        2 => input.truncate(at),
        3 if at < input.len() => {
            let end = (at + 1 + rng.below(64)).min(input.len());
            input.drain(at..end);
        }
        4 => {
            let from = rng.below(input.len() + 1);
            let end = (from + rng.below(32)).min(input.len());
            let chunk = input[from..end].to_vec();
            input.splice(at..at, chunk);
        }
        5 => {
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len() + 1);
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            const BYTES: &[u8] = b"{}[]\":,0-9eE.\\u\x00\xff";
            input.insert(at.min(input.len()), BYTES[rng.below(BYTES.len())]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI version of the fuzzing: each target on 20,000 mutated inputs (`scripts/fuzz` runs
    /// libFuzzer for millions).
    #[test]
    fn every_target_survives_a_short_mutation_run() {
        for target in TARGETS {
            mutate(target, 20_000, 0x5eed);
        }
    }

    #[test]
    fn the_seeds_are_accepted_where_they_are_well_formed() {
        assert!(GgufHeader::from_bytes(&gguf_seeds()[0]).is_ok());
        for seed in kv_seeds() {
            let stack: KvStack = serde_json::from_slice(&seed).expect("a stack");
            assert!(stack.prediction_config().is_ok() && stack.load_config(LoadConfig::default()).is_ok());
        }
    }

    /// The text targets check contracts: a matcher that released a stop string would fail them.
    #[test]
    fn text_targets_check_their_contracts() {
        stop_strings(b"|ab|cd|xxa|bzz");
        utf8_decoder(b"|a\xc3|\xa9b");
    }
}
