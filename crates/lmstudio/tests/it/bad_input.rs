//! Bad input gets a clear typed error and the process goes on.

use std::io::{Read, Write};

use lmstudio as lms;

use crate::{greedy, model, store};

/// A store in a temp dir holding the given files (paths relative to its root).
fn temp_store(files: &[(impl AsRef<str>, Vec<u8>)]) -> (tempfile::TempDir, lms::Client) {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, bytes) in files {
        let path = dir.path().join(path.as_ref());
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
    let (_dir, empty) = temp_store(&[] as &[(&str, Vec<u8>)]);
    let err = empty.llm("gemma-3-270m").err().expect("nothing to find");
    assert!(err.to_string().contains("lms get"), "{err}");
}

#[test]
fn names_never_escape_the_models_directory() {
    let (_dir, client) = temp_store(&[] as &[(&str, Vec<u8>)]);
    for query in ["../../etc/passwd", "/etc/passwd", "..", "../", ""] {
        assert!(matches!(client.llm(query), Err(lms::Error::ModelNotFound { .. })), "{query}");
    }
}

/// Issue 12, item 6: a symlink inside the models directory that points outside it (to a real
/// model, here) is neither listed nor loadable by its path.
#[cfg(unix)]
#[test]
fn symlinks_never_lead_out_of_the_models_directory() {
    let outside = tempfile::tempdir().expect("temp dir");
    let real = store().root().join(lms::store::DEFAULT_MODEL_PATH);
    std::fs::copy(&real, outside.path().join("m.gguf")).expect("copies");
    let (dir, client) = temp_store(&[] as &[(&str, Vec<u8>)]);
    std::os::unix::fs::symlink(outside.path(), dir.path().join("a")).expect("dir link");
    // A linked folder is not walked, and no path through it resolves.
    assert!(client.list_downloaded().expect("lists").is_empty(), "a linked folder was walked");
    for query in ["a/m.gguf", "m", "../m.gguf"] {
        assert!(matches!(client.llm(query), Err(lms::Error::ModelNotFound { .. })), "{query}");
    }
    // A linked file is the user's own placing (`lms import --symlink`): listed at its place inside.
    std::fs::create_dir_all(dir.path().join("b/link")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path().join("m.gguf"), dir.path().join("b/link/m.gguf")).expect("file link");
    let listed = client.list_downloaded().expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, dir.path().join("b/link/m.gguf"));
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

/// Issue 12, item 2: every file of the malformed corpus (`gguf_corpus.rs`: truncations, lying
/// counts, sizes and offsets, absurd lengths, unknown types and architectures), loaded by path, is an
/// `InvalidModelFile` naming the file and the problem; llama.cpp never sees one (it would abort on
/// some). The well-formed file of the corpus passes our checks and llama.cpp refuses it (it lacks
/// most of a model's tensors) with an error, not an abort.
#[test]
fn every_malformed_file_of_the_corpus_is_an_invalid_model_file() {
    let cases = crate::gguf_corpus::malformed();
    let mut files: Vec<(String, Vec<u8>)> =
        cases.iter().map(|c| (format!("corpus/{0}/{0}.gguf", c.name), c.bytes.clone())).collect();
    files.push(("corpus/valid/valid.gguf".into(), crate::gguf_corpus::Gguf::valid().bytes()));
    let (_dir, client) = temp_store(&files);
    let one = lms::LoadConfig { parallel: Some(1), ..Default::default() };
    for case in &cases {
        let file = format!("corpus/{0}/{0}.gguf", case.name);
        match client.load(&file, &one) {
            Err(lms::Error::InvalidModelFile { path, reason }) => {
                assert!(path.ends_with(&file), "{}: names {path:?}", case.name);
                assert!(reason.contains(case.says), "{}: {reason}", case.name);
            }
            other => panic!("{}: expected InvalidModelFile, got {:?}", case.name, other.map(|m| m.info().clone())),
        }
    }
    let listed = client.list_downloaded().expect("lists");
    assert_eq!(listed.len(), cases.len() + 1);
    assert_eq!(listed.iter().filter(|m| m.info.is_ok()).count(), 1, "only the valid file reads as valid");
    let refused =
        client.load("corpus/valid/valid.gguf", &one).err().expect("llama.cpp refuses a model without its tensors");
    assert!(!matches!(refused, lms::Error::InvalidModelFile { .. }), "{refused}");
    // The process is still here, and the real model still answers.
    assert!(!model().complete("1, 2, 3,", greedy(2)).expect("completes").content.is_empty());
}

/// Issue 12, D2: a loaded model whose file is truncated, then removed, on disk goes on predicting
/// (it was read, not mapped: a mapped file would kill the process with SIGBUS here).
#[test]
fn a_model_file_truncated_or_removed_while_loaded_does_not_crash() {
    let real = std::fs::read(store().root().join(lms::store::DEFAULT_MODEL_PATH)).expect("model");
    let (dir, client) = temp_store(&[("a/copy/copy.gguf", real)]);
    let llm =
        client.load("a/copy/copy.gguf", &lms::LoadConfig { parallel: Some(1), ..Default::default() }).expect("loads");
    let before = llm.complete("1, 2, 3,", greedy(6)).expect("completes").content;
    let file = dir.path().join("a/copy/copy.gguf");
    std::fs::OpenOptions::new().write(true).open(&file).expect("opens").set_len(100 << 20).expect("truncates");
    assert_eq!(llm.complete("1, 2, 3,", greedy(6)).expect("completes after truncation").content, before);
    std::fs::remove_file(&file).expect("removes");
    assert_eq!(llm.complete("1, 2, 3,", greedy(6)).expect("completes after removal").content, before);
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
    let llm =
        client.load("x/gemma/one.gguf", &lms::LoadConfig { parallel: Some(1), ..Default::default() }).expect("loads");
    assert_eq!(llm.info().path, "x/gemma/one.gguf");
}

#[test]
fn empty_prompt_and_invalid_config_fail_before_any_work() {
    assert!(matches!(model().complete("", greedy(4)), Err(lms::Error::InvalidPrompt(_))));
    let bad = lms::Config { temperature: Some(-0.5), ..Default::default() };
    assert!(matches!(model().complete("Hi", bad), Err(lms::Error::InvalidConfig(_))));
    let bad = lms::Config { top_p: Some(2.0), ..Default::default() };
    assert!(matches!(model().complete_stream("Hi", bad), Err(lms::Error::InvalidConfig(_))));
    let bad = lms::LoadConfig { parallel: Some(0), ..Default::default() };
    assert!(matches!(crate::client().load("gemma-3-270m", &bad), Err(lms::Error::InvalidConfig(_))));
    // The model still works afterwards.
    assert!(model().complete("Hi", greedy(2)).is_ok());
}

#[test]
fn overload_is_a_typed_error() {
    let model = crate::own_model(lms::LoadConfig { parallel: Some(1), max_queued: 1, ..Default::default() });
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

/// GPU settings where no GPU device is found (this machine's build has none): `max` falls back
/// to the CPU and says so in the stats, a share above 0 and a missing main GPU are typed errors,
/// flash attention is refused by name. The error comes before any weights are read.
#[test]
fn gpu_settings_without_a_gpu() {
    if lms::devices().expect("devices").iter().any(lms::Device::is_gpu) {
        eprintln!("a GPU device is present: the fallback does not apply");
        return;
    }
    let client = lms::Client::with_store(crate::store().clone());
    let base = lms::LoadConfig { context_length: Some(256), parallel: Some(1), ..Default::default() };
    let llm = client
        .load(lms::DEFAULT_MODEL_KEY, &lms::LoadConfig { gpu: Some(lms::GpuOffload::Max), ..base.clone() })
        .expect("max runs on the CPU");
    let r = llm.complete("Hello", crate::greedy(2)).expect("completes");
    assert_eq!(r.stats.num_gpu_layers, Some(0.0));
    assert_eq!(llm.info().num_gpu_layers, Some(0), "the model info says so too");
    client.unload(llm.identifier()).expect("unloads");
    // Nothing is counted on a GPU that is not there.
    let max = lms::LoadConfig { gpu: Some(lms::GpuOffload::Max), ..base.clone() };
    let (estimate, _) = client.estimate(lms::DEFAULT_MODEL_KEY, &max).expect("estimates");
    assert_eq!(estimate.gpu_mib, 0, "{estimate}");
    assert!(estimate.total_mib >= estimate.weights_mib, "{estimate}");
    // The first GPU named as the main one (as an SDK's split config may say): the CPU runs it.
    let llm = client
        .load(lms::DEFAULT_MODEL_KEY, &lms::LoadConfig { main_gpu: Some(0), ..base.clone() })
        .expect("main GPU 0 without a GPU: the CPU");
    client.unload(llm.identifier()).expect("unloads");
    for (config, says) in [
        (lms::LoadConfig { gpu: Some(lms::GpuOffload::Ratio(0.5)), ..base.clone() }, "no GPU device"),
        (lms::LoadConfig { main_gpu: Some(1), ..base.clone() }, "mainGpu 1"),
    ] {
        match client.load(lms::DEFAULT_MODEL_KEY, &config) {
            Err(lms::Error::InvalidConfig(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{config:?}: expected InvalidConfig, got {:?}", other.map(|l| l.identifier().to_owned())),
        }
    }
}
