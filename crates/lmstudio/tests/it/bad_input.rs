//! Bad input gets a clear typed error and the process goes on.

use std::io::{Read, Write};

use lmstudio as lms;

use crate::{greedy, model, store};

/// A store in a temp dir holding the given files (paths relative to its root).
fn temp_store(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, lms::Client) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, bytes) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::File::create(path).expect("create").write_all(bytes).expect("write");
    }
    let client = lms::Client::with_store(lms::ModelStore::new(dir.path()));
    (dir, client)
}

fn head_of_real_model(n: u64) -> Vec<u8> {
    let path = store().root().join(lms::store::DEFAULT_MODEL_PATH);
    let mut bytes = Vec::new();
    std::fs::File::open(path).expect("model").take(n).read_to_end(&mut bytes).expect("read");
    bytes
}

#[test]
fn unknown_model_lists_candidates() {
    match crate::client().llm("no-such-model") {
        Err(lms::Error::ModelNotFound { query, candidates }) => {
            assert_eq!(query, "no-such-model");
            assert!(candidates.contains(&"gemma-3-270m".to_owned()), "{candidates:?}");
        }
        other => panic!("expected ModelNotFound, got {:?}", other.map(|m| m.info().clone())),
    }
    let (_dir, empty) = temp_store(&[]);
    let err = empty.llm("gemma-3-270m").err().expect("nothing to find");
    assert!(err.to_string().contains("lms get"), "{err}");
}

#[test]
fn names_never_escape_the_models_directory() {
    let (_dir, client) = temp_store(&[]);
    for query in ["../../etc/passwd", "/etc/passwd", "..", "../", ""] {
        assert!(matches!(client.llm(query), Err(lms::Error::ModelNotFound { .. })), "{query}");
    }
}

#[test]
fn truncated_and_random_files_are_invalid_model_files() {
    let mut random = vec![0u8; 1 << 16];
    let mut x = 88172645463325252u64;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let mut fake_header = random.clone();
    fake_header[..4].copy_from_slice(b"GGUF");
    let (_dir, client) = temp_store(&[
        ("a/truncated/truncated-Q4_K_M.gguf", head_of_real_model(50 << 20)),
        ("a/random/random.gguf", random),
        ("a/fake/fake.gguf", fake_header),
        ("a/empty/empty.gguf", Vec::new()),
    ]);
    for name in ["truncated", "random", "fake", "empty"] {
        match client.llm(name) {
            Err(lms::Error::InvalidModelFile { reason, .. }) => assert!(!reason.is_empty()),
            other => panic!("{name}: expected InvalidModelFile, got {:?}", other.map(|m| m.info().clone())),
        }
    }
    let listed = client.list_downloaded().expect("lists");
    assert_eq!(listed.len(), 4);
    assert!(listed.iter().all(|m| m.info.is_err()));
}

/// Issue 12, D1: llama.cpp asserts (and aborts the process) on a layer count of 0 or above 512; such
/// a file, made here from the real model, is refused before llama.cpp sees it.
#[test]
fn a_layer_count_llama_cpp_aborts_on_is_an_invalid_model_file() {
    let real = std::fs::read(store().root().join(lms::store::DEFAULT_MODEL_PATH)).expect("model");
    let key = b"gemma3.block_count";
    let at = real.windows(key.len()).position(|w| w == key).expect("the key is in the header") + key.len();
    assert_eq!(real[at..at + 4], 4u32.to_le_bytes(), "stored as a u32");
    for layers in [0u32, 1000] {
        let mut bytes = real.clone();
        bytes[at + 4..at + 8].copy_from_slice(&layers.to_le_bytes());
        let (_dir, client) = temp_store(&[("a/layers/layers.gguf", bytes)]);
        match client.llm("layers") {
            Err(lms::Error::InvalidModelFile { reason, .. }) => assert!(reason.contains("block_count"), "{reason}"),
            other => panic!("{layers} layers: expected InvalidModelFile, got {:?}", other.map(|m| m.info().clone())),
        }
        let listed = client.list_downloaded().expect("lists");
        assert!(listed[0].info.is_err(), "listed as valid with {layers} layers");
    }
}

#[test]
fn ambiguous_names_list_the_matches() {
    let real = std::fs::read(store().root().join(lms::store::DEFAULT_MODEL_PATH)).expect("model");
    let (_dir, client) = temp_store(&[("x/gemma/one.gguf", real.clone()), ("y/gemma/two.gguf", real)]);
    match client.llm("gemma-3-270m") {
        Err(lms::Error::AmbiguousModel { candidates, .. }) => assert_eq!(candidates.len(), 2),
        other => panic!("expected AmbiguousModel, got {:?}", other.map(|m| m.info().clone())),
    }
    // A path inside the store picks one.
    let llm = client.load("x/gemma/one.gguf", &lms::LoadConfig { parallel: 1, ..Default::default() }).expect("loads");
    assert_eq!(llm.info().path, "x/gemma/one.gguf");
}

#[test]
fn empty_prompt_and_invalid_config_fail_before_any_work() {
    assert!(matches!(model().complete("", greedy(4)), Err(lms::Error::InvalidPrompt(_))));
    let bad = lms::Config { temperature: Some(-0.5), ..Default::default() };
    assert!(matches!(model().complete("Hi", bad), Err(lms::Error::InvalidConfig(_))));
    let bad = lms::Config { top_p: Some(2.0), ..Default::default() };
    assert!(matches!(model().complete_stream("Hi", bad), Err(lms::Error::InvalidConfig(_))));
    let bad = lms::LoadConfig { parallel: 0, ..Default::default() };
    assert!(matches!(crate::client().load("gemma-3-270m", &bad), Err(lms::Error::InvalidConfig(_))));
    // The model still works afterwards.
    assert!(model().complete("Hi", greedy(2)).is_ok());
}

#[test]
fn overload_is_a_typed_error() {
    let model = crate::own_model(lms::LoadConfig { parallel: 1, max_queued: 1, ..Default::default() });
    let _running = model.complete_stream("Once upon a time", crate::exactly(500)).expect("starts");
    // One may wait; past that, the queue is full. The engine may already have taken the first
    // queued one, so allow one more before expecting the error.
    let mut waiting = Vec::new();
    let err = (0..3).find_map(|_| match model.complete_stream("Hi", greedy(1)) {
        Ok(s) => {
            waiting.push(s);
            None
        }
        Err(e) => Some(e),
    });
    // Issue 12, D9: the count is the queue's capacity, not one more.
    assert!(matches!(err, Some(lms::Error::Overloaded { queued: 1 })), "{err:?}");
}
