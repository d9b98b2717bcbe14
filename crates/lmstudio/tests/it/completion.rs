//! `complete`: text, model info, stats, stop reasons, stop strings, sampling and the prefix cache.

use lmstudio as lms;

use crate::{exactly, greedy, model, own_model};

#[test]
fn complete_returns_text_info_and_stats() {
    let result = model().complete("My name is", exactly(12)).expect("completes");
    assert!(!result.content.trim().is_empty());
    assert_eq!(result.to_string(), result.content, "Display prints the text");
    let info = &result.model_info;
    assert_eq!(info.model_key, "gemma-3-270m");
    assert_eq!(info.display_name, "Gemma 3 270m");
    assert_eq!(info.architecture.as_deref(), Some("gemma3"));
    assert_eq!(info.size_bytes, 253_113_024);
    assert_eq!(info.max_context_length, 32768);
    assert_eq!(info.context_length, Some(2048));
    let stats = &result.stats;
    assert_eq!(stats.stop_reason, lms::StopReason::MaxPredictedTokensReached);
    assert_eq!(stats.predicted_tokens_count, Some(12));
    assert_eq!(stats.prompt_tokens_count, Some(4), "<bos> My name is");
    assert_eq!(stats.total_tokens_count, Some(16));
    assert!(stats.time_to_first_token_sec.is_some_and(|t| t > 0.0));
    assert!(stats.tokens_per_second.is_some_and(|t| t > 0.0));
}

#[test]
fn greedy_completion_is_deterministic_and_known() {
    let a = model().complete("1, 2, 3, 4,", greedy(10)).expect("completes");
    let b = model().complete("1, 2, 3, 4,", greedy(10)).expect("completes");
    assert_eq!(a.content, b.content);
    assert!(a.content.starts_with(" 5, 6, 7"), "{:?}", a.content);
}

#[test]
fn seeded_sampling_repeats_and_seeds_differ() {
    // A private instance: next to other tests' predictions, batch composition could change the
    // last bits of the logits, and at temperature 1 that can change a draw.
    let model = own_model(lms::LoadConfig { parallel: Some(1), ..Default::default() });
    let config =
        |seed| lms::Config { max_tokens: Some(24), seed: Some(seed), temperature: Some(1.0), ..Default::default() };
    let a = model.complete("Once upon a time", config(7)).expect("completes");
    let b = model.complete("Once upon a time", config(7)).expect("completes");
    assert_eq!(a.content, b.content, "same seed, same text");
    let others: Vec<String> =
        (8..12).map(|s| model.complete("Once upon a time", config(s)).expect("completes").content).collect();
    assert!(others.iter().any(|o| *o != a.content), "different seeds all gave {:?}", a.content);
}

#[test]
fn stop_string_across_tokens_ends_the_text_before_it() {
    let free = model().complete("1, 2, 3, 4,", greedy(12)).expect("completes").content;
    // " 7, 8" spans several tokens; the text must end right before it.
    let at = free.find(" 7, 8").expect("the count goes on");
    let config = lms::Config { stop_strings: vec!["nope".into(), " 7, 8".into()], ..greedy(12) };
    let result = model().complete("1, 2, 3, 4,", config).expect("completes");
    assert_eq!(result.content, free[..at]);
    assert_eq!(result.stats.stop_reason, lms::StopReason::StopStringFound);
    assert_eq!(result.stats.stop_string.as_deref(), Some(" 7, 8"));
}

#[test]
fn eos_stops_with_eos_found() {
    // A complete C file but for its closing brace: the model closes the function and ends the file.
    // Each of the three greedy choices ("}", "\n", end of text) wins by more than 5 logits on the
    // default model, far beyond what another CPU's rounding can move.
    let program = "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n";
    let r = model().complete(program, greedy(50)).expect("completes");
    assert_eq!(r.stats.stop_reason, lms::StopReason::EosFound);
    assert_eq!(r.content, "}\n");
    assert_eq!(r.stats.predicted_tokens_count, Some(2), "the end-of-text token is not counted");
    // With ignore_eos the same prediction runs to maxTokens.
    let r = model().complete(program, exactly(50)).expect("completes");
    assert_eq!(r.stats.stop_reason, lms::StopReason::MaxPredictedTokensReached);
    assert_eq!(r.stats.predicted_tokens_count, Some(50));
    assert!(r.content.starts_with("}\n"), "{:?}", r.content);
}

#[test]
fn prefix_cache_is_used_and_changes_nothing() {
    let model = own_model(lms::LoadConfig { parallel: Some(1), context_length: Some(1024), ..Default::default() });
    let prefix = "The following is a list of fruits: apple, banana, cherry, date, elderberry, fig, grape. ".repeat(8);
    let prompt = format!("{prefix}My favourite is");
    let cold = model.complete(&prompt, greedy(16)).expect("completes");
    assert_eq!(cold.stats.cached_prompt_tokens_count, Some(0));
    let warm = model.complete(&prompt, greedy(16)).expect("completes");
    let prompt_tokens = warm.stats.prompt_tokens_count.expect("counted");
    let cached = warm.stats.cached_prompt_tokens_count.expect("counted");
    // The same prompt again evaluates nothing: its cells and its last row's logits are kept.
    assert_eq!(cached, prompt_tokens, "{cached} of {prompt_tokens} reused");
    assert_eq!(warm.content, cold.content, "a cache hit gives the same text");
    // A prompt that shares only the prefix reuses the prefix, and evaluates at least its last 64
    // tokens again (the prefix cache's rule).
    let other = model.complete(&format!("{prefix}The best is"), greedy(4)).expect("completes");
    let (other_tokens, other_cached) = (other.stats.prompt_tokens_count, other.stats.cached_prompt_tokens_count);
    assert!(other_cached.is_some_and(|c| c > 100 && other_tokens.is_some_and(|t| c + 64 <= t)), "{:?}", other.stats);
    // After it, the first prompt is no longer whole in the slot: its last tokens are evaluated again.
    let back = model.complete(&prompt, greedy(16)).expect("completes");
    let back_cached = back.stats.cached_prompt_tokens_count.expect("counted");
    assert!(back_cached + 68 > prompt_tokens && back_cached < prompt_tokens, "{back_cached} of {prompt_tokens}");
    assert_eq!(back.content, cold.content, "the same text again");
}

/// The same prompt gives the same text whether it is computed cold, served from the cache, built on
/// a prefix another prompt left, or run in another slot.
#[test]
fn results_do_not_depend_on_cache_or_slot() {
    // Without host memory for prompts, so that a prompt pushed out of the slots is computed cold.
    let fresh = || {
        own_model(lms::LoadConfig {
            parallel: Some(2),
            context_length: Some(1024),
            prompt_cache_mib: 0,
            ..Default::default()
        })
    };
    let story = "In the old harbour town the lighthouse keeper kept a logbook of every ship that passed. ";
    let prompt = format!("{}On the last page he wrote", story.repeat(8));
    let run = |m: &lms::Llm, p: &str| {
        let r = m.complete(p, greedy(24)).expect("completes");
        (r.content, r.stats.cached_prompt_tokens_count.expect("counted"))
    };
    let model = fresh();
    let (cold, cached) = run(&model, &prompt);
    assert_eq!(cached, 0);
    let (warm, cached) = run(&model, &prompt);
    assert!(cached > 50, "the cache is hit ({cached})");
    assert_eq!(warm, cold, "cold and from the cache");
    // Fill both slots with other prompts (the longer one evicts this prompt), then run it again:
    // it is computed cold in the other slot.
    run(&model, &"A recipe for bread needs flour, water, salt and yeast. ".repeat(12));
    run(&model, &"The committee met on Tuesday to discuss the budget for next year. ".repeat(15));
    let (other_slot, cached) = run(&model, &prompt);
    assert!(cached < 4, "computed cold ({cached} cached)");
    assert_eq!(other_slot, cold, "cold in another slot");
    // A prompt built on a prefix that another prompt left in the cache, against the same prompt on
    // a fresh model.
    let sibling = format!("{}At dawn the fog", story.repeat(8));
    let model = fresh();
    let (fresh_text, _) = run(&model, &sibling);
    let model = fresh();
    run(&model, &prompt);
    let (on_prefix, cached) = run(&model, &sibling);
    assert!(cached > 50, "the shared prefix is reused ({cached})");
    assert_eq!(on_prefix, fresh_text, "on a cached prefix and fresh");
}

/// A prompt whose prefix another slot holds takes it from there, even while that slot generates,
/// and gives the same first token as computed cold. (Later tokens are decoded in one batch with the
/// other prediction's and may differ: see ARCHITECTURE.md.)
#[test]
fn a_prefix_in_a_busy_slot_is_shared() {
    let fresh = || own_model(lms::LoadConfig { parallel: Some(2), context_length: Some(1024), ..Default::default() });
    let story = "In the old harbour town the lighthouse keeper kept a logbook of every ship that passed. ";
    let sibling = format!("{}At dawn the fog", story.repeat(8));
    let cold = fresh().complete(&sibling, greedy(1)).expect("completes");
    assert_eq!(cold.stats.cached_prompt_tokens_count, Some(0));
    let model = fresh();
    let mut busy =
        model.complete_stream(&format!("{}On the last page he wrote", story.repeat(8)), exactly(400)).expect("starts");
    busy.next().expect("a fragment").expect("ok");
    let shared = model.complete(&sibling, greedy(1)).expect("completes");
    busy.cancel();
    let busy = busy.wait_for_result().expect("a result");
    assert_eq!(busy.stats.stop_reason, lms::StopReason::UserStopped, "the other slot was still generating");
    let cached = shared.stats.cached_prompt_tokens_count.expect("counted");
    assert!(cached > 50, "the shared prefix came from the busy slot ({cached})");
    assert_eq!(shared.content, cold.content);
}

/// A prompt pushed out of every slot by another conversation comes back from host memory, and gives
/// the same text as computed cold; with no host memory for prompts it is computed again.
#[test]
fn a_prompt_pushed_out_of_the_slots_is_restored_from_memory() {
    let with_cache = |mib| {
        own_model(lms::LoadConfig {
            parallel: Some(1),
            context_length: Some(1024),
            prompt_cache_mib: mib,
            ..Default::default()
        })
    };
    let story = "In the old harbour town the lighthouse keeper kept a logbook of every ship that passed. ";
    let first = format!("{}On the last page he wrote", story.repeat(8));
    let again = format!("{}At dawn the fog", story.repeat(8));
    let other = "A recipe for bread needs flour, water, salt and yeast. ".repeat(8);
    let cold = with_cache(0).complete(&again, greedy(16)).expect("completes");
    for mib in [512, 0] {
        let model = with_cache(mib);
        model.complete(&first, greedy(4)).expect("completes");
        model.complete(&other, greedy(4)).expect("takes the only slot");
        let r = model.complete(&again, greedy(16)).expect("completes");
        let cached = r.stats.cached_prompt_tokens_count.expect("counted");
        if mib > 0 {
            assert!(cached > 50, "restored from memory ({cached} cached)");
        } else {
            assert_eq!(cached, 0, "no host memory, computed again");
        }
        assert_eq!(r.content, cold.content, "{mib} MiB");
    }
}

/// A prediction that asks for another CPU thread count gets a new context, and what the slots had
/// cached comes along through host memory: the next prompt sharing it is not evaluated again.
#[test]
fn a_thread_count_change_keeps_the_cache() {
    let model = own_model(lms::LoadConfig {
        parallel: Some(1),
        context_length: Some(1024),
        cpu_threads: Some(2),
        ..Default::default()
    });
    let story = "In the old harbour town the lighthouse keeper kept a logbook of every ship that passed. ";
    let prompt = format!("{}On the last page he wrote", story.repeat(8));
    model.complete(&prompt, greedy(8)).expect("completes");
    // (The text is not compared: another thread count may split the work into other kernels.)
    let one_thread = lms::Config { cpu_threads: Some(1), ..greedy(8) };
    let r = model.complete(&prompt, one_thread).expect("completes");
    let cached = r.stats.cached_prompt_tokens_count.expect("counted");
    assert!(cached > 50, "the cached prompt survived the new context ({cached} cached)");
    assert_eq!(r.stats.predicted_tokens_count, Some(8));
}

/// Requests that arrive together with a long common prefix compute it once: one evaluates it, the
/// others copy it.
#[test]
fn concurrent_prompts_compute_a_shared_prefix_once() {
    let model = own_model(lms::LoadConfig { parallel: Some(3), context_length: Some(1024), ..Default::default() });
    let prefix =
        "The council of the northern valley met in the long hall to settle the matter of the bridge. ".repeat(8);
    let prompts: Vec<String> = ["First,", "Second,", "Third,"].iter().map(|e| format!("{prefix}{e}")).collect();
    let stats: Vec<lms::Stats> = std::thread::scope(|s| {
        let handles: Vec<_> =
            prompts.iter().map(|p| s.spawn(|| model.complete(p, greedy(1)).expect("completes").stats)).collect();
        handles.into_iter().map(|h| h.join().expect("joins")).collect()
    });
    let prompt_tokens = stats[0].prompt_tokens_count.expect("counted");
    let cached: u64 = stats.iter().map(|s| s.cached_prompt_tokens_count.expect("counted")).sum();
    // Each prompt ends with 64 to 67 tokens evaluated on its own (the prefix cache's rule).
    assert!(cached >= 2 * (prompt_tokens - 68), "{cached} of {prompt_tokens} x 3 came from the cache");
}

#[test]
fn context_overflow_policies() {
    let model = own_model(lms::LoadConfig { parallel: Some(1), context_length: Some(64), ..Default::default() });
    let long = "one two three four five six seven eight nine ten ".repeat(20);
    let strict = lms::Config { context_overflow_policy: Some(lms::ContextOverflowPolicy::StopAtLimit), ..greedy(8) };
    match model.complete(&long, strict) {
        Err(lms::Error::ContextOverflow { prompt_tokens, context_length: 64 }) => assert!(prompt_tokens > 64),
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    for policy in [lms::ContextOverflowPolicy::TruncateMiddle, lms::ContextOverflowPolicy::RollingWindow] {
        let config = lms::Config { context_overflow_policy: Some(policy), ..greedy(8) };
        let r = model.complete(&long, config).expect("a truncated prompt completes");
        assert!(r.stats.prompt_tokens_count.is_some_and(|n| n < 64), "{policy:?}");
    }
    // Generation that fills the context stops with contextLengthReached.
    let counting = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,";
    let r = model.complete(counting, lms::Config { max_tokens: None, ..exactly(1) }).expect("completes");
    assert_eq!(r.stats.stop_reason, lms::StopReason::ContextLengthReached);
    assert_eq!(r.stats.total_tokens_count, Some(64));
}

#[test]
fn default_llm_takes_a_loaded_model() {
    let client = crate::client();
    let llm = client.default_llm().expect("a model is loaded");
    assert_eq!(llm.info().model_key, "gemma-3-270m");
    assert!(client.list_loaded().expect("listed").iter().any(|i| i.identifier.as_deref() == Some(llm.identifier())));
}

#[test]
fn unicode_text_streams_without_replacement_characters() {
    let r = model().complete("日本の首都は東京です。中国の首都は", greedy(24)).expect("completes");
    assert!(!r.content.contains('\u{fffd}'), "{:?}", r.content);
    assert!(!r.content.is_ascii(), "{:?}", r.content);
}

#[test]
fn unloading_ends_handles() {
    let client = lms::Client::with_store(crate::store().clone());
    let llm = client
        .load(lms::DEFAULT_MODEL_KEY, &lms::LoadConfig { parallel: Some(1), ..Default::default() })
        .expect("loads");
    let id = llm.identifier().to_owned();
    client.unload(&id).expect("unloads");
    assert!(client.list_loaded().expect("listed").is_empty());
    assert!(matches!(llm.complete("Hi", greedy(2)), Err(lms::Error::ModelUnloaded)));
    assert!(matches!(client.unload(&id), Err(lms::Error::ModelNotFound { .. })));
}

/// Issue 13, item 5: instances as LM Studio names them. An identifier in use is refused; loads
/// without one become `key`, `key:2`; asking for the key finds any instance of it.
#[test]
fn instances_are_named_as_lm_studio_names_them() {
    let client = lms::Client::with_store(crate::store().clone());
    let small = lms::LoadConfig { parallel: Some(1), context_length: Some(512), ..Default::default() };
    let named = lms::LoadConfig { identifier: Some("mine".into()), ..small.clone() };
    assert_eq!(client.load(lms::DEFAULT_MODEL_KEY, &named).expect("loads").identifier(), "mine");
    match client.load(lms::DEFAULT_MODEL_KEY, &named) {
        Err(lms::Error::IdentifierInUse { identifier }) => assert_eq!(identifier, "mine"),
        other => panic!("expected IdentifierInUse, got {:?}", other.map(|m| m.identifier().to_owned())),
    }
    let first = client.load(lms::DEFAULT_MODEL_KEY, &small).expect("loads");
    let second = client.load(lms::DEFAULT_MODEL_KEY, &small).expect("loads");
    assert_eq!((first.identifier(), second.identifier()), ("gemma-3-270m", "gemma-3-270m:2"));
    client.unload("gemma-3-270m").expect("unloads");
    client.unload("mine").expect("unloads");
    let (found, loaded_now) = client.get_or_load(lms::DEFAULT_MODEL_KEY, &small).expect("finds");
    assert!(!loaded_now, "a new instance was loaded while gemma-3-270m:2 was there");
    assert_eq!(found.identifier(), "gemma-3-270m:2");
    assert_eq!(client.llm(lms::DEFAULT_MODEL_KEY).expect("finds").identifier(), "gemma-3-270m:2");
    assert_eq!(client.list_loaded().expect("lists").len(), 1);
}

/// Issue 13, item 6: log probabilities in the Rust API, per fragment and in the result: one per
/// predicted token, greedy tokens are the most likely of their step, alternatives sorted, the
/// tokens' bytes are the text.
#[test]
fn logprobs_describe_every_predicted_token() {
    let config = lms::Config { logprobs: Some(4), ..greedy(8) };
    let mut stream = model().complete_stream("1, 2, 3,", config).expect("starts");
    let mut from_fragments = Vec::new();
    for fragment in &mut stream {
        let fragment = fragment.expect("ok");
        assert_eq!(fragment.logprobs.len(), fragment.tokens_count as usize);
        from_fragments.extend(fragment.logprobs);
    }
    let result = stream.result().expect("done");
    assert_eq!(result.logprobs.len() as u64, result.stats.predicted_tokens_count.expect("count"));
    assert_eq!(result.logprobs, from_fragments);
    let bytes: Vec<u8> = result.logprobs.iter().flat_map(|t| t.bytes.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), result.content);
    for t in &result.logprobs {
        assert_eq!(t.top.len(), 4);
        assert_eq!(
            (t.top[0].token.as_str(), t.top[0].logprob),
            (t.token.as_str(), t.logprob),
            "greedy takes the argmax"
        );
        assert!(t.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
        assert!(t.logprob <= 0.0);
        assert!(t.top.iter().map(|a| f64::from(a.logprob).exp()).sum::<f64>() <= 1.0 + 1e-4);
    }
    let off = model().complete("1, 2, 3,", greedy(8)).expect("completes");
    assert!(off.logprobs.is_empty(), "computed without being asked");
    assert_eq!(off.content, result.content, "asking for log probabilities changed the text");
}

/// Issue 14, TTL: an instance idle for its TTL is unloaded; one that is predicting is not, however
/// long the prediction takes; named again, it comes back as it was loaded, not with the defaults.
/// (The waits below are deadlines, not timing assertions.)
#[test]
fn an_idle_instance_unloads_when_its_ttl_runs_out() {
    let client = lms::Client::with_store(crate::store().clone());
    let config = lms::LoadConfig {
        ttl: Some(1),
        parallel: Some(1),
        context_length: Some(1024),
        identifier: Some("short-lived".into()),
        ..Default::default()
    };
    assert_ne!(client.default_load_config().context_length, config.context_length, "the test needs a difference");
    let model = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
    // Longer than the TTL on any machine: 300 tokens, the end of text banned.
    let r = model.complete("Once upon a time", crate::exactly(300)).expect("the TTL waits for a running prediction");
    assert_eq!(r.stats.stop_reason, lms::StopReason::MaxPredictedTokensReached);
    let gone = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Looking it up (as a metrics scrape does) is not using it: the TTL runs on.
        while client.get_loaded("short-lived").expect("looks up").is_some() {
            assert!(std::time::Instant::now() < deadline, "still loaded a minute after its 1 s TTL");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    gone();
    assert!(matches!(model.complete("x", crate::exactly(1)), Err(lms::Error::ModelUnloaded)));
    // A request that names it again: the same identifier, context and TTL (it unloads again).
    let again = client.llm("short-lived").expect("reloads on demand");
    assert_eq!(again.identifier(), "short-lived");
    assert_eq!(again.info().context_length, Some(1024));
    gone();
    assert!(matches!(
        client.load("x", &lms::LoadConfig { ttl: Some(0), ..Default::default() }),
        Err(lms::Error::InvalidConfig(_))
    ));
}

/// Issue 15, item 5: the host prompt cache is written at unload and read back by the next load of
/// the same file, so a prompt that was warm is warm again with the same text; a cache file that is
/// not what was written is ignored (the prompt is evaluated again, the text is the same).
#[test]
fn the_prompt_cache_survives_a_reload_and_ignores_a_corrupted_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = lms::LoadConfig {
        parallel: Some(1),
        context_length: Some(1024),
        prompt_cache_dir: Some(dir.path().to_owned()),
        ..Default::default()
    };
    // One prompt within Gemma 3's 512-token window, one past it (saved where the same prompt
    // continues, see rules::Chunks::save_point); one slot, so the second pushes the first to host memory.
    let prompts = [
        "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(12) + "The fox",
        "A small red boat sails across the calm blue sea at dawn. ".repeat(50) + "The boat",
    ];
    let client = lms::Client::with_store(crate::store().clone());
    let run = || {
        let llm = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
        let results: Vec<(String, u64)> = prompts
            .iter()
            .map(|p| {
                let r = llm.complete(p, crate::greedy(8)).expect("completes");
                (r.content, r.stats.cached_prompt_tokens_count.unwrap_or(0))
            })
            .collect();
        client.unload(llm.identifier()).expect("unloads");
        results
    };
    let cold = run();
    assert!(cold.iter().all(|(_, cached)| *cached == 0), "nothing cached before the first load: {cold:?}");
    let states = || {
        let files = std::fs::read_dir(dir.path()).expect("the model's folder").flatten().next().expect("one folder");
        std::fs::read_dir(files.path())
            .expect("reads")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "state"))
            .collect::<Vec<_>>()
    };
    assert_eq!(states().len(), 2, "one state for each prompt written at unload");
    let warm = run();
    for ((text, _), (again, cached)) in cold.iter().zip(&warm) {
        assert_eq!(again, text, "a restored prefix changed the text");
        assert!(*cached >= 64, "the prompt was not restored: {cached} tokens cached");
    }
    assert!(warm[1].1 > 512, "the long prompt was restored past the window: {warm:?}");
    for file in states() {
        let mut bytes = std::fs::read(&file).expect("reads");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&file, bytes).expect("writes");
    }
    let again = run();
    assert_eq!(again, cold, "a corrupted file was used");
}

/// Prompts reach the disk cache while the model stays loaded, once the engine has been idle a
/// moment: the folder as a crash would leave it (copied while loaded) warms a new load.
#[test]
fn the_prompt_cache_is_written_through_while_loaded() {
    let (dir, after_crash) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let config = |d: &std::path::Path| lms::LoadConfig {
        parallel: Some(1),
        context_length: Some(1024),
        prompt_cache_dir: Some(d.to_owned()),
        ..Default::default()
    };
    let prompt = "Rain fell on the old stone bridge while the town slept. ".repeat(12) + "The bridge";
    let client = lms::Client::with_store(crate::store().clone());
    let llm = client.load(lms::DEFAULT_MODEL_KEY, &config(dir.path())).expect("loads");
    let cold = llm.complete(&prompt, crate::greedy(8)).expect("completes");
    let listed = || {
        let folder = std::fs::read_dir(dir.path()).ok()?.flatten().next()?;
        let manifest = std::fs::read_to_string(folder.path().join("manifest")).ok()?;
        (!manifest.is_empty()).then_some(folder.path())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let folder = loop {
        match listed() {
            Some(folder) => break folder,
            None if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(200)),
            None => panic!("nothing was written to the disk cache while loaded"),
        }
    };
    let copy = after_crash.path().join(folder.file_name().expect("a folder name"));
    std::fs::create_dir_all(&copy).expect("creates");
    for file in std::fs::read_dir(&folder).expect("reads").flatten() {
        std::fs::copy(file.path(), copy.join(file.file_name())).expect("copies");
    }
    // Writing it cut the slot's cache below the prompt; the slot evaluated the prompt's end again
    // after, so the same prompt again still evaluates nothing.
    let again = llm.complete(&prompt, crate::greedy(8)).expect("completes");
    assert_eq!(again.content, cold.content, "the prompt completed again changed the text");
    assert_eq!(again.stats.cached_prompt_tokens_count, again.stats.prompt_tokens_count, "{:?}", again.stats);
    client.unload(llm.identifier()).expect("unloads");
    let llm = client.load(lms::DEFAULT_MODEL_KEY, &config(after_crash.path())).expect("loads");
    let warm = llm.complete(&prompt, crate::greedy(8)).expect("completes");
    assert_eq!(warm.content, cold.content, "a restored prefix changed the text");
    assert!(warm.stats.cached_prompt_tokens_count.unwrap_or(0) >= 64, "not restored: {:?}", warm.stats);
    client.unload(llm.identifier()).expect("unloads");
}

/// A sliding-window model's prompt restored past the window holds zero cells before the window's
/// (`engine/seq_state.rs`), which llama.cpp counts as held: a prompt that shares less of it than
/// the whole (an edited earlier turn) starts over instead of continuing from cells that are not
/// keys and values, and gets the cold text.
#[test]
fn a_prompt_restored_past_the_window_is_not_continued_from_its_zero_cells() {
    let config = || lms::LoadConfig { parallel: Some(1), context_length: Some(2048), ..Default::default() };
    let llm = own_model(config());
    let words = ["harbour", "lantern", "orchard", "meadow", "copper", "violet", "thunder", "pebble"];
    let lines: Vec<String> = (0..64)
        .map(|i| format!("Entry {i}: the {} near the {} was moved on day {}.", words[i % 8], words[i * 3 % 8], i % 31))
        .collect();
    let long = lines.join("\n");
    let edited = format!("{}\nEntry 44: nothing was moved that day, and the", lines[..44].join("\n"));
    let tokens = |text: &str| llm.tokenize(text).expect("tokenizes").len();
    let (whole, shared) = (tokens(&long), tokens(&lines[..44].join("\n")));
    assert!(shared > 512 + 128 && whole > shared + 128, "{shared} of {whole}");
    // Cold on an instance of its own, whose cache this test does not touch.
    let cold = own_model(config()).complete(&edited, crate::greedy(8)).expect("completes");
    llm.complete(&long, crate::greedy(4)).expect("completes");
    // Another prompt takes the only slot: the long one goes to host memory, then comes back.
    llm.complete(&"A small red boat sails across the calm blue sea. ".repeat(12), crate::greedy(4)).expect("completes");
    let restored = llm.complete(&long, crate::greedy(4)).expect("completes");
    assert!(
        restored.stats.cached_prompt_tokens_count.unwrap_or(0) > 512,
        "restored past the window: {:?}",
        restored.stats
    );
    let again = llm.complete(&edited, crate::greedy(8)).expect("completes");
    assert_eq!(again.stats.cached_prompt_tokens_count, Some(0), "continued from zero cells: {:?}", again.stats);
    assert_eq!(again.content, cold.content);
}

/// LM Studio's `flashAttention` is taken, on (the default on the CPU) and off: where the model is
/// sure of
/// the text, greedy text is the same either way, alone and two predictions at once, and either way
/// the same prompt again is reused from the cache (prompt chunks of 64 rows or more take its tiled
/// path, whose rows do not depend on the chunk: ARCHITECTURE.md) with the same text.
#[test]
fn flash_attention_is_taken_on_and_off_and_both_reuse_prompts() {
    let config = |fa| lms::LoadConfig {
        flash_attention: fa,
        parallel: Some(2),
        context_length: Some(512),
        ..Default::default()
    };
    let default = own_model(config(None));
    let off = own_model(config(Some(false)));
    let on = own_model(config(Some(true)));
    let prompt: String = (1..=40).map(|i| format!("{i}, ")).collect::<String>().trim_end().to_owned();
    let first = off.complete(&prompt, exactly(8)).expect("completes");
    assert!(first.content.starts_with(" 41, 42,"), "{:?}", first.content);
    for llm in [&default, &on, &off] {
        let cold = llm.complete(&prompt, exactly(8)).expect("completes");
        let again = llm.complete(&prompt, exactly(8)).expect("completes");
        assert_eq!((&cold.content, &again.content), (&first.content, &first.content));
        let cached = again.stats.cached_prompt_tokens_count.expect("counted");
        assert!(cached > 0, "cached {cached}");
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| default.complete(&prompt, exactly(8)).expect("completes"));
        let b = s.spawn(|| default.complete("A, B, C, D, E, F, G,", exactly(6)).expect("completes"));
        (a.join().expect("thread"), b.join().expect("thread"))
    });
    assert_eq!(a.content, first.content);
    assert!(b.content.starts_with(" H, I,"), "{:?}", b.content);
}
