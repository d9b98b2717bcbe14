//! Issue 14, item 6: the memory estimate against what real loads take. Its own test binary, so
//! that no other test's load moves this process's RSS while it measures.

#![cfg(feature = "embedded")]

use lmstudio as lms;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}

/// Loads at three context sizes (one slot and four), each after the last was unloaded: the RSS
/// growth of a load and a first prediction is within 10% of the estimate (prompt cache off).
#[test]
fn the_estimate_is_within_ten_percent_of_real_loads() {
    let store = lms::ModelStore::from_env();
    store.ensure_default_model(&mut |l| eprintln!("{l}")).expect("the default model");
    let client = lms::Client::with_store(store);
    let mut report = Vec::new();
    for (context, parallel) in [(1024, 1), (4096, 4), (16384, 2)] {
        let config = lms::LoadConfig {
            context_length: Some(context),
            parallel: Some(parallel),
            prompt_cache_mib: 0,
            ..Default::default()
        };
        let (estimate, _) = client.estimate(lms::DEFAULT_MODEL_KEY, &config).expect("estimates");
        let before = rss_mib();
        let llm = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
        llm.complete("1, 2, 3,", lms::Config { max_tokens: Some(4), ..Default::default() }).expect("completes");
        let grown = rss_mib() - before;
        client.unload(llm.identifier()).expect("unloads");
        report
            .push(format!("ctx {context} x {parallel}: estimate {} MiB, measured {grown:.0} MiB", estimate.total_mib));
        let ratio = estimate.total_mib as f64 / grown;
        assert!((0.9..=1.1).contains(&ratio), "{}", report.join("; "));
    }
    eprintln!("{}", report.join("; "));
}
