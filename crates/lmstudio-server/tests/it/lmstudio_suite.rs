//! LM Studio's own Python SDK test suite, unmodified: the `tests/` folder of the `lmstudio` 1.5.0
//! sdist from PyPI, run with that sdist's own SDK source against the real server on LM Studio's
//! ports (1234, and the discovery port 41343 where the SDK's `Client()` looks).
//!
//! The suite wants `llama-3.2-1b-instruct` loaded (`tests/README.md`); we have no such model, so
//! the models directory of this test holds a copy of our default model with its name metadata
//! taken out, filed as `hugging-quants/Llama-3.2-1B-Instruct-GGUF/llama-3.2-1b-instruct-q4_k_m.gguf`:
//! its key (from the file name) is `llama-3.2-1b-instruct`, and `hugging-quants/llama-3.2-1b-instruct`
//! (the folder) names it too. Every live LLM test runs, except those in [`LEFT_OUT`].

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{python, start_server_with, test_config};

/// The sdist whose tests run (the SDK version the JS tests pin too).
const SDIST: &str = "lmstudio==1.5.0";

/// Test files with live LLM tests (those marked `lmstudio`); the rest of the suite needs no server.
const FILES: &[&str] = &[
    "sync/test_embedding_sync.py",
    "sync/test_inference_sync.py",
    "sync/test_llm_sync.py",
    "sync/test_model_catalog_sync.py",
    "sync/test_model_handles_sync.py",
    "sync/test_sdk_bypass_sync.py",
    "async/test_embedding_async.py",
    "async/test_inference_async.py",
    "async/test_llm_async.py",
    "async/test_model_catalog_async.py",
    "async/test_model_handles_async.py",
    "async/test_sdk_bypass_async.py",
    "test_convenience_api.py",
    "test_inference.py",
    "test_logging.py",
    "test_sessions.py",
    "test_session_errors.py",
    "test_timeouts.py",
];

/// Tests left out (a `-k` word of their names), and why: each needs a model we do not have. Not
/// in [`FILES`] at all: images (a vision model), repository (downloads from Hugging Face, which
/// this machine cannot reach: issue 14).
const LEFT_OUT: &[(&str, &str)] = &[
    // They run over our tools protocol (tried: the default model called `add` for 16 rounds and
    // then answered), but they judge the model: the answer must contain "3333" or explain a
    // division by zero, a round must hold text beside a call, and `act` has no round limit there
    // (a base model that keeps calling never ends). Tools through the SDK: clients.rs, js_sdk.rs.
    ("tool_using", "a tool-trained model's answers (qwen2.5-7b-instruct)"),
    ("respond_past_history", "an instruct model repeating its previous answer word for word"),
    ("connect_and_predict", "an instruct model's answer (it must contain '?')"),
    ("list_downloaded_models", "the embedding and vision models downloaded"),
    ("mobilevlm", "a vision model (MobileVLM)"),
    ("qwen2", "the tool model (qwen2.5-7b-instruct)"),
    ("prepare_file", "file uploads, for vision models"),
    ("prepare_image", "image uploads, for vision models"),
];

/// Structured output tests complete "Hello" with no token limit; a 270M base model now and then
/// writes a JSON string that never ends (1 prediction in 7 in one run, 7 in 25 in another, one
/// test failing 4 times in a row), and the suite's check fails on the cut text. These rerun up to
/// this many times; a config that is not honoured fails every run.
const STRUCTURED_RERUNS: &str = "8";

#[test]
fn lm_studios_own_python_sdk_suite_passes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/lmstudio-suite");
    let py = python();
    let plugins = ["pytest-asyncio==0.25.3", "pytest-subtests==0.14.1", "pytest-rerunfailures==15.1"];
    pip(&py, &[&["pytest==8.3.5", "gguf==0.19.0"][..], &plugins].concat());
    let sdist = sdist(&py, &dir);
    let models = alias_models();
    // 1,024 tokens of context: enough for every test, and a JSON string that runs away (below)
    // is cut there.
    let load = lmstudio::LoadConfig { context_length: Some(1024), ..Default::default() };
    let client = lmstudio::Client::with_load_config(lmstudio::ModelStore::new(models), load.clone());
    client.load("llama-3.2-1b-instruct", &load).expect("the suite's LLM loads");
    // The listing tests look for the suite's vision and tool models among the loaded instances;
    // models of those keys (our model again) stand in (the tests that use them as vision or tool
    // models are left out).
    for (key, _) in STAND_INS {
        client.load(key, &load).expect("a stand-in loads");
    }
    // The embedding model, with the context the suite expects.
    let embedding = lmstudio::LoadConfig { context_length: Some(2048), ..Default::default() };
    client.load("nomic-ai/nomic-embed-text-v1.5", &embedding).expect("the suite's embedding model loads");
    // As `lms server` (and LM Studio) has it: a model loaded on demand unloads the one loaded on
    // demand before it (the suite's `jit_unloading` tests check it across the namespaces).
    client.set_auto_evict(true).expect("auto-evict");
    let config = lmstudio_server::ServerConfig { port: 1234, discovery_port: true, ..test_config() };
    start_server_with(client, config);

    let left_out = LEFT_OUT.iter().map(|(word, _)| format!("not {word}")).collect::<Vec<_>>().join(" and ");
    let structured = run_pytest(&py, &sdist, &format!("structured and {left_out}"), &["--reruns", STRUCTURED_RERUNS]);
    let rest = run_pytest(&py, &sdist, &format!("not structured and {left_out}"), &[]);
    eprintln!("LM Studio's suite: structured output {structured}; the rest {rest}");
}

/// Runs the live tests of [`FILES`] that `filter` selects; panics with pytest's output unless all
/// pass. Returns pytest's summary line.
fn run_pytest(py: &Path, sdist: &Path, filter: &str, extra: &[&str]) -> String {
    let out = Command::new(py)
        .args(["-m", "pytest", "-m", "lmstudio", "-p", "no:cacheprovider", "-q", "-rfE", "-k", filter])
        .args(extra)
        .args(FILES.iter().map(|f| format!("tests/{f}")))
        .current_dir(sdist)
        .env("PYTHONPATH", sdist.join("src"))
        .output()
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "LM Studio's suite failed ({filter}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().rev().find(|l| l.contains("passed")).unwrap_or_default().trim_matches('=').trim().to_owned()
}

/// `pip install` into the tests' venv (pinned versions: nothing is fetched once they are there).
fn pip(py: &Path, packages: &[&str]) {
    let ok = Command::new(py)
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(packages)
        .status()
        .expect("pip runs")
        .success();
    assert!(ok, "pip install {packages:?} failed");
}

/// The sdist unpacked under `dir` (downloaded once); returns its root.
fn sdist(py: &Path, dir: &Path) -> PathBuf {
    let version = SDIST.split("==").nth(1).unwrap_or_default();
    let root = dir.join(format!("lmstudio-{version}"));
    if root.join("tests/support/__init__.py").exists() {
        return root;
    }
    let ok = Command::new(py)
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", SDIST, "-d"])
        .arg(dir)
        .status()
        .expect("pip runs")
        .success();
    assert!(ok, "pip download {SDIST} failed");
    let archive = dir.join(format!("lmstudio-{version}.tar.gz"));
    let unpack = format!("import tarfile; tarfile.open({:?}).extractall({:?}, filter='data')", archive, dir);
    assert!(Command::new(py).args(["-c", &unpack]).status().expect("python runs").success(), "unpacking failed");
    root
}

/// A models directory holding the default model as `llama-3.2-1b-instruct`, a second model key
/// (made once, for the suite and the JIT tests).
pub fn alias_models() -> PathBuf {
    static MADE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MADE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/lmstudio-suite/models");
        let py = python();
        pip(&py, &["gguf==0.19.0"]);
        make_alias(&py, &dir)
    })
    .clone()
}

/// The suite's vision and tool models by key, and where their stand-ins go: hard links of the
/// alias file, whose key comes from the file name.
const STAND_INS: &[(&str, &str)] = &[
    ("mobilevlm_v2-1.7b", "lmstudio-community/MobileVLM_V2-1.7B-GGUF/mobilevlm_v2-1.7b-Q4_K_M.gguf"),
    ("qwen2.5-7b-instruct-1m", "lmstudio-community/Qwen2.5-7B-Instruct-1M-GGUF/qwen2.5-7b-instruct-1m-Q4_K_M.gguf"),
];

/// The suite's small LLM (`SMALL_LLM_ID`), which it loads on demand: our model again, not loaded
/// before the suite runs.
const SMALL_LLM_FILE: &str = "lmstudio-community/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q4_K_M.gguf";

/// Named as LM Studio names its nomic model: its key (`text-embedding-nomic-embed-text-v1.5`, from
/// the file name) is the identifier the suite expects, and the suite's other name for it,
/// `nomic-ai/nomic-embed-text-v1.5`, is part of its path.
const EMBEDDING_FILE: &str = "nomic-ai/nomic-embed-text-v1.5-GGUF/text-embedding-nomic-embed-text-v1.5.f16.gguf";

fn make_alias(py: &Path, models: &Path) -> PathBuf {
    let folder = models.join("hugging-quants/Llama-3.2-1B-Instruct-GGUF");
    let file = folder.join("llama-3.2-1b-instruct-q4_k_m.gguf");
    if !file.exists() {
        write_alias(py, &folder, &file);
    }
    // The suite's embedding model: a nomic-bert of random weights, of nomic-embed-text-v1.5's
    // width (768) and context (2048), which the suite checks.
    let embedding = models.join(EMBEDDING_FILE);
    if !embedding.exists() {
        lms_test_support::random_gguf("nomic-bert", &embedding, &[]);
    }
    for path in STAND_INS.iter().map(|(_, path)| path).chain([&SMALL_LLM_FILE]) {
        let link = models.join(path);
        if !link.exists() {
            std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
            std::fs::hard_link(&file, &link).or_else(|_| std::fs::copy(&file, &link).map(drop)).expect("stand-in");
        }
    }
    models.to_owned()
}

fn write_alias(py: &Path, folder: &Path, file: &Path) {
    crate::lms_client(1); // fetches the default model if missing
    let source =
        lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("the default model is there").path;
    std::fs::create_dir_all(folder).expect("mkdir");
    let partial = folder.join("partial.gguf.tmp");
    // gguf-py is llama.cpp's own GGUF library; its `gguf_new_metadata` rewrites the header.
    let ok = Command::new(py)
        .args(["-m", "gguf.scripts.gguf_new_metadata", "--force", "--remove-metadata", "general.basename"])
        .args([
            "--remove-metadata",
            "general.size_label",
            "--general-name",
            "Llama 3.2 1B Instruct (Gemma 3 270M weights)",
        ])
        .arg(&source)
        .arg(&partial)
        .output()
        .expect("python runs")
        .status
        .success();
    assert!(ok, "gguf_new_metadata failed");
    std::fs::rename(&partial, file).expect("rename");
}
