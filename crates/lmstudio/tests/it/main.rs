//! Integration tests of the library against the real default model (fetched on first use): the
//! embedded engine by default; built without the `embedded` feature, the remote client alone
//! against a real `lms server` (`remote_only`).
//!
//! Greedy sampling or fixed seeds keep them deterministic. Timings are never asserted.

#![cfg_attr(not(feature = "embedded"), allow(dead_code, unused_imports))]

mod backends;
#[cfg(feature = "embedded")]
mod bad_input;
#[cfg(feature = "embedded")]
mod completion;
#[cfg(feature = "embedded")]
mod embeddings;
#[cfg(feature = "fault-injection")]
mod faults;
#[cfg(feature = "embedded")]
mod gguf_corpus;
#[cfg(any(feature = "cuda", feature = "vulkan"))]
mod gpu;
#[cfg(feature = "embedded")]
mod reasoning;
mod remote_client;
#[cfg(not(feature = "embedded"))]
mod remote_only;
#[cfg(feature = "embedded")]
mod speculation;
#[cfg(feature = "embedded")]
mod streaming;
#[cfg(feature = "embedded")]
mod structured;
#[cfg(feature = "embedded")]
mod tool_families;
#[cfg(feature = "embedded")]
mod tools;

use std::sync::OnceLock;

use lmstudio as lms;

#[cfg(feature = "embedded")]
#[test]
fn embedded_backend_passes_the_shared_checks() {
    let client = lms::Client::with_load_config(
        store().clone(),
        lms::LoadConfig { parallel: Some(2), context_length: Some(2048), ..Default::default() },
    );
    backends::completes_alike("embedded", &client);
    backends::calls_tools_alike("embedded", &client);
    backends::embeds_alike("embedded", &client);
}

/// A store holding the real default model, fetched if missing.
pub fn store() -> &'static lms::ModelStore {
    static STORE: OnceLock<lms::ModelStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let store = lms::ModelStore::from_env();
        store.ensure_default_model(&mut |line| eprintln!("{line}")).expect("the default model can be fetched");
        store
    })
}

/// A client shared by the tests, with the default model loaded once (4 slots).
#[cfg(feature = "embedded")]
pub fn client() -> &'static lms::Client {
    static CLIENT: OnceLock<lms::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let client = lms::Client::with_store(store().clone());
        let config = lms::LoadConfig { context_length: Some(2048), ..Default::default() };
        client.load(lms::DEFAULT_MODEL_KEY, &config).expect("the default model loads");
        client
    })
}

/// The shared loaded default model.
#[cfg(feature = "embedded")]
pub fn model() -> lms::Llm {
    client().llm(lms::DEFAULT_MODEL_KEY).expect("loaded")
}

/// A private instance, for tests that need the engine to themselves.
#[cfg(feature = "embedded")]
pub fn own_model(config: lms::LoadConfig) -> lms::Llm {
    lms::Client::with_store(store().clone()).load(lms::DEFAULT_MODEL_KEY, &config).expect("the default model loads")
}

/// Greedy decoding of at most `n` tokens, with no repeat penalty: fully deterministic.
pub fn greedy(n: u32) -> lms::Config {
    lms::Config { max_tokens: Some(n), temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() }
}

/// Greedy decoding of exactly `n` tokens: the end-of-text token is banned, so a prediction that a
/// test needs to be still running cannot end early on a machine whose rounding favours it.
pub fn exactly(n: u32) -> lms::Config {
    lms::Config { ignore_eos: Some(true), ..greedy(n) }
}
