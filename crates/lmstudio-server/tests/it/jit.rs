//! Issue 14, item 5: loads on demand (JIT) as a server does them: one load for many concurrent
//! requests, and each JIT load evicting the previous JIT instance, never an explicit one.

use std::path::Path;

use lmstudio as lms;

/// A store with two model keys: the default model and its `llama-3.2-1b-instruct` alias.
fn two_model_store(dir: &Path) -> lms::ModelStore {
    let default = lms::ModelStore::from_env().resolve(lms::DEFAULT_MODEL_KEY).expect("the default model").path;
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
    lms::ModelStore::new(dir)
}

#[test]
fn concurrent_jit_requests_load_once_and_jit_loads_evict_each_other() {
    crate::lms_client(1); // the default model, fetched if missing
    let dir = tempfile::tempdir().expect("tempdir");
    let load = lms::LoadConfig { parallel: 2, context_length: Some(512), ..Default::default() };
    let client = lms::Client::with_load_config(two_model_store(dir.path()), load);
    client.set_auto_evict(true).expect("embedded");

    // 8 requests at once for a model that is not loaded: one instance serves them all.
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let llm = client.llm("gemma-3-270m").expect("loads on demand");
                    llm.complete("1, 2,", lms::Config { max_tokens: Some(2), ..Default::default() })
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
        .load("gemma-3-270m", &lms::LoadConfig { identifier: Some("pinned".into()), ..Default::default() })
        .expect("loads");
    client.llm("llama-3.2-1b-instruct").expect("loads on demand");
    let mut loaded: Vec<String> =
        client.list_loaded().expect("lists").into_iter().filter_map(|i| i.identifier).collect();
    loaded.sort();
    assert_eq!(loaded, ["llama-3.2-1b-instruct", "pinned"]);
}
