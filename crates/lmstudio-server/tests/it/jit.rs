//! Issue 14, item 5: loads on demand (JIT) as a server does them: one load for many concurrent
//! requests, and each JIT load evicting the previous JIT instance, never an explicit one.

use std::path::Path;

/// A store with two model keys: the default model and its `llama-3.2-1b-instruct` alias.
fn two_model_store(dir: &Path) -> lmstudio::ModelStore {
    let default =
        lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY).expect("the default model").path;
    let alias = crate::lmstudio_suite::alias_models()
        .join("hugging-quants/Llama-3.2-1B-Instruct-GGUF/llama-3.2-1b-instruct-q4_k_m.gguf");
    for (from, to) in [
        (default, "ggml-org/gemma-3-270m-GGUF/gemma-3-270m-Q4_K_M.gguf"),
        (alias, "hq/llama-GGUF/llama-3.2-1b-instruct-q4_k_m.gguf"),
    ] {
        let to = dir.join(to);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::hard_link(&from, &to).or_else(|_| std::fs::copy(&from, &to).map(drop)).expect("link or copy");
    }
    lmstudio::ModelStore::new(dir)
}

#[test]
fn concurrent_jit_requests_load_once_and_jit_loads_evict_each_other() {
    crate::lms_client(1); // the default model, fetched if missing
    let dir = tempfile::tempdir().expect("tempdir");
    let load = lmstudio::LoadConfig { parallel: Some(2), context_length: Some(512), ..Default::default() };
    let client = lmstudio::Client::with_load_config(two_model_store(dir.path()), load);
    client.set_auto_evict(true).expect("embedded");

    // 8 requests at once for a model that is not loaded: one instance serves them all.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let llm = client.llm("gemma-3-270m").expect("loads on demand");
                    llm.complete("1, 2,", lmstudio::Config { max_tokens: Some(2), ..Default::default() })
                        .expect("completes");
                    llm.identifier().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(ids.iter().all(|id| id == "gemma-3-270m"), "{ids:?}");
    assert_eq!(client.list_loaded().expect("lists").len(), 1, "one load for 8 requests");

    // A JIT load of another model evicts the first JIT instance, not an explicit one.
    client
        .load("gemma-3-270m", &lmstudio::LoadConfig { identifier: Some("pinned".into()), ..Default::default() })
        .expect("loads");
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&events);
    let on_load: lmstudio::OnLoad = std::sync::Arc::new(move |e| seen.lock().expect("lock").push(e));
    client.get_or_load_with("llama-3.2-1b-instruct", &client.default_load_config(), &on_load).expect("loads on demand");
    let events = events.lock().expect("lock").clone();
    // It said which instance it unloaded, then how the load went: 0.0 first, 1.0 last, rising.
    match &events[..] {
        [lmstudio::LoadEvent::UnloadingOther(gone), progress @ ..] => {
            assert_eq!(gone.identifier.as_deref(), Some("gemma-3-270m"));
            let p: Vec<f32> = progress
                .iter()
                .map(|e| match e {
                    lmstudio::LoadEvent::Progress(p) => *p,
                    other => panic!("{other:?} after the progress began"),
                })
                .collect();
            assert!(p.first() == Some(&0.0) && p.last() == Some(&1.0), "{p:?}");
            assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
        }
        other => panic!("expected the eviction first: {other:?}"),
    }
    let mut loaded: Vec<String> =
        client.list_loaded().expect("lists").into_iter().filter_map(|i| i.identifier).collect();
    loaded.sort();
    assert_eq!(loaded, ["llama-3.2-1b-instruct", "pinned"]);
}

/// What LM Studio's Python SDK sees of a JIT load that evicts another: the eviction message it
/// logs ("Unloading other JIT model", with the model's key), and only the new instance loaded.
const JIT_EVICTION: &str = r#"
import logging, os
import lmstudio as lms

said = []
class Keep(logging.Handler):
    def emit(self, record):
        said.append(record.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger().setLevel(logging.INFO)

with lms.Client(os.environ["HOST"]) as client:
    client.llm.model("gemma-3-270m")
    client.llm.model("llama-3.2-1b-instruct")
    assert [m.identifier for m in client.llm.list_loaded()] == ["llama-3.2-1b-instruct"]
evictions = [m for m in said if "Unloading other JIT model" in m]
assert len(evictions) == 1 and "gemma-3-270m" in evictions[0], said
"#;

#[test]
fn python_sdk_is_told_of_a_jit_eviction() {
    crate::lms_client(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let load = lmstudio::LoadConfig { parallel: Some(1), context_length: Some(512), ..Default::default() };
    let client = lmstudio::Client::with_load_config(two_model_store(dir.path()), load);
    client.set_auto_evict(true).expect("embedded");
    crate::run_python(JIT_EVICTION, crate::start_server(client, None));
}
