//! Issue 14, item 6 and issue 27, item 8: the memory estimate against what real loads take, in
//! terms that hold on any host. Its own test binary, so that no other test's load moves this
//! process's RSS while it measures, and so that it can be the one tracing subscriber that hears
//! llama.cpp's own account of its buffers.

#![cfg(feature = "embedded")]

use std::sync::{Arc, Mutex};

use lmstudio as lms;
use tracing_subscriber::layer::SubscriberExt;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// Every message logged, llama.cpp's among them.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Heard {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "message" {
                    self.0 = value.to_owned();
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0.lock().expect("log").push(m.0);
    }
}

impl Heard {
    /// What was logged since the last call.
    fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("log"))
    }
}

/// The MiB of the buffers llama.cpp reported in `lines` as `<device> <what> buffer size = <n> MiB`,
/// summed.
fn buffers(lines: &[String], what: &str) -> f64 {
    let needle = format!("{what} buffer size =");
    lines
        .iter()
        .filter(|l| l.contains(&needle))
        .map(|l| {
            let mib = l.split('=').nth(1).and_then(|v| v.trim().strip_suffix("MiB")?.trim().parse::<f64>().ok());
            mib.unwrap_or_else(|| panic!("llama.cpp's line changed form: {l}"))
        })
        .sum()
}

/// Loads at three context sizes (one slot and more), each after the last was unloaded, after a
/// first load that pays what a process pays once (the backend, its threads). The estimate's parts
/// are what llama.cpp allocates: its KV cache is llama.cpp's KV buffers (to the MiB), its weights
/// the model buffers and the file's header. What it adds for compute and the rest of a context,
/// llama.cpp cannot name (its compute buffer is reserved for a whole batch of logits and mostly
/// never touched on a CPU), so the whole is checked against this run's own memory: a load's
/// resident growth is never more than 10% over the estimate, and holds at least llama.cpp's
/// buffers (less 20% for what the allocator keeps from the last load).
#[test]
fn the_estimate_is_what_llama_cpp_allocates() {
    let heard = Heard::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(heard.clone()))
        .expect("the only subscriber");
    let store = lms::ModelStore::from_env();
    store.ensure_default_model(&mut |l| eprintln!("{l}")).expect("the default model");
    let client = lms::Client::with_store(store);
    let config = |context, parallel| lms::LoadConfig {
        context_length: Some(context),
        parallel: Some(parallel),
        prompt_cache_mib: 0,
        ..Default::default()
    };
    let load = |config: &lms::LoadConfig| {
        let before = rss_mib();
        let llm = client.load(lms::DEFAULT_MODEL_KEY, config).expect("loads");
        llm.complete("1, 2, 3,", lms::Config { max_tokens: Some(4), ..Default::default() }).expect("completes");
        let grown = rss_mib() - before;
        client.unload(llm.identifier()).expect("unloads");
        grown
    };
    load(&config(1024, 1));
    for (context, parallel) in [(1024, 1), (4096, 4), (16384, 2)] {
        let config = config(context, parallel);
        let (estimate, _) = client.estimate(lms::DEFAULT_MODEL_KEY, &config).expect("estimates");
        heard.drain();
        let grown = load(&config);
        let lines = heard.drain();
        let (model, kv) = (buffers(&lines, "model"), buffers(&lines, "KV"));
        let report = format!("ctx {context} x {parallel}: {estimate:?}; llama.cpp's buffers: model {model:.1} MiB, KV {kv:.1} MiB; resident growth {grown:.0} MiB");
        eprintln!("{report}");
        assert!(model > 0.0 && kv > 0.0, "llama.cpp said nothing of its buffers: {report}");
        assert!((estimate.kv_cache_mib as f64 - kv).abs() <= 1.0, "KV cache: {report}");
        let weights = estimate.weights_mib as f64;
        assert!(model <= weights + 1.0 && weights <= model * 1.05 + 1.0, "weights: {report}");
        assert!(grown <= estimate.total_mib as f64 * 1.1, "under-counted: {report}");
        assert!(grown >= (model + kv) * 0.8, "the measurement misses the load: {report}");
    }

    // An embedding model (an encoder: no KV cache, its trained context), through a request that
    // fills its context.
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("test/nomic-embed-GGUF/nomic-embed.f16.gguf");
    lms_test_support::random_gguf("nomic-bert", &file, &[]);
    let client = lms::Client::with_store(lms::ModelStore::new(dir.path()));
    let config = lms::LoadConfig { prompt_cache_mib: 0, ..client.embedding_load_config() };
    let (estimate, _) = client.estimate("nomic-embed", &config).expect("estimates");
    heard.drain();
    let before = rss_mib();
    let embedder = lms::EmbeddingModel::from(client.load("nomic-embed", &config).expect("loads"));
    let text = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(8);
    let inputs = vec![text.as_str(); 40];
    let embedded = embedder.embed(&inputs).expect("embeds");
    let grown = rss_mib() - before;
    let lines = heard.drain();
    let model = buffers(&lines, "model");
    let report = format!(
        "nomic-bert: {estimate:?}; llama.cpp's model buffers {model:.1} MiB, compute {:.1} MiB, output {:.1} MiB; {} tokens; resident growth {grown:.0} MiB",
        buffers(&lines, "compute"),
        buffers(&lines, "output"),
        embedded.prompt_tokens
    );
    eprintln!("{report}");
    assert_eq!((estimate.kv_cache_mib, buffers(&lines, "KV")), (0, 0.0), "no KV cache: {report}");
    assert!(embedded.prompt_tokens > 2000, "the inputs fill the context: {report}");
    assert!(grown <= estimate.total_mib as f64 * 1.1, "under-counted: {report}");
    assert!(grown >= model * 0.8, "the measurement misses the load: {report}");
}
