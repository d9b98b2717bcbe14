//! Issue 15, n-gram speculation: drafts from the context are kept only where the model's own draw
//! produced them, so the text is the model's; the stats account for every drafted token.

use lmstudio as lms;

use crate::{exactly, greedy, model, own_model};

const PARAGRAPH: &str = "The quick brown fox jumps over the lazy dog near the river bank, while the old farmer \
                         watches from his porch and the children play in the golden field behind the red barn.";

fn ngram(config: lms::Config) -> lms::Config {
    lms::Config { speculation: Some(lms::Speculation::Ngram), ..config }
}

/// Every drafted token was accepted, rejected or ignored.
fn add_up(d: &lms::DraftStats) {
    assert_eq!(
        d.accepted_draft_tokens_count + d.rejected_draft_tokens_count + d.ignored_draft_tokens_count,
        d.total_draft_tokens_count,
        "{d:?}"
    );
}

#[test]
fn drafts_from_a_repeated_paragraph_are_accepted_and_counted() {
    let prompt = format!("Copy exactly: {PARAGRAPH}\nCopy: {PARAGRAPH}\nCopy:");
    let mut stream = model().complete_stream(&prompt, ngram(exactly(64))).expect("starts");
    let (mut text, mut tokens) = (String::new(), 0);
    for fragment in stream.by_ref() {
        let fragment = fragment.expect("a fragment");
        text += &fragment.content;
        tokens += fragment.tokens_count;
    }
    let r = stream.wait_for_result().expect("completes");
    // No token more than asked for, each delivered once, in the fragments as in the result.
    assert_eq!(r.stats.predicted_tokens_count, Some(64));
    assert_eq!((text.as_str(), tokens), (r.content.as_str(), 64));
    let d = r.stats.drafts.expect("draft stats");
    assert_eq!(d.used_draft_model_key, "ngram");
    add_up(&d);
    // The model copies what it was shown: most of what it writes was drafted and kept.
    assert!(d.accepted_draft_tokens_count >= 32, "{d:?}");
    let off = model().complete(&prompt, exactly(8)).expect("completes");
    assert!(off.stats.drafts.is_none(), "no speculation, no draft stats");
}

/// Where the model's choices are far apart, batch rounding cannot flip them: the same text with
/// and without drafts, whether the drafts were right (the cycles) or wrong (the count goes on past
/// 10 where the context went back to 1). Measured on the default model (greedy, 12 tokens): the
/// best token wins by at least 3.4, 1.7 and 3.1 logits; batch rounding moved a logit by 0.13 at
/// most in the cases measured (bench/speculation.md).
#[test]
fn greedy_text_is_the_same_with_and_without_drafts() {
    let counting = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,";
    for (prompt, drafts_right) in
        [("1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,", true), ("a, b, c, a, b, c, a, b, c,", true), (counting, false)]
    {
        let plain = model().complete(prompt, greedy(12)).expect("completes");
        let fast = model().complete(prompt, ngram(greedy(12))).expect("completes");
        assert_eq!(fast.content, plain.content, "{prompt}");
        let d = fast.stats.drafts.expect("draft stats");
        match drafts_right {
            true => assert!(d.accepted_draft_tokens_count > 0, "the cycle repeats: {d:?}"),
            false => assert!(d.rejected_draft_tokens_count > 0, "the context says 1 after 10: {d:?}"),
        }
        add_up(&d);
    }
}

/// Slots draft each their own, in one batch: both predictions get their tokens and their stats.
#[test]
fn slots_draft_side_by_side() {
    let model = own_model(lms::LoadConfig { parallel: Some(2), context_length: Some(1024), ..Default::default() });
    let prompt = format!("Copy exactly: {PARAGRAPH}\nCopy: {PARAGRAPH}\nCopy:");
    let a = model.complete_stream(&prompt, ngram(exactly(48))).expect("starts");
    let b = model.complete_stream("1, 2, 3, 4, 5, 6,", ngram(exactly(48))).expect("starts");
    for r in [a.wait_for_result().expect("completes"), b.wait_for_result().expect("completes")] {
        assert_eq!(r.stats.predicted_tokens_count, Some(48));
        add_up(&r.stats.drafts.expect("draft stats"));
    }
}

#[test]
fn speculation_is_refused_by_name_when_unknown() {
    let e = lms::Config::from_json(r#"{"speculation": "medusa"}"#).expect_err("unknown");
    assert!(e.to_string().contains("medusa"), "{e}");
    let c = lms::Config::from_json(r#"{"speculation": "ngram", "maxTokens": 3}"#).expect("known");
    assert_eq!(c.speculation, Some(lms::Speculation::Ngram));
}

fn drafting_with(key: &str, config: lms::Config) -> lms::Config {
    lms::Config { draft_model: Some(key.into()), ..config }
}

/// The model as its own draft model: its greedy drafts are its own greedy choices, so they are
/// kept, and where the choices are far apart (as in `greedy_text_is_the_same_with_and_without_drafts`)
/// the text is the same as without. The knobs change what is drafted.
#[test]
fn a_draft_model_drafts_and_the_model_checks() {
    let own = |c| drafting_with(lms::DEFAULT_MODEL_KEY, c);
    for prompt in ["1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,", "a, b, c, a, b, c, a, b, c,"] {
        let plain = model().complete(prompt, greedy(12)).expect("completes");
        let fast = model().complete(prompt, own(greedy(12))).expect("completes");
        assert_eq!(fast.content, plain.content, "{prompt}");
        let d = fast.stats.drafts.expect("draft stats");
        assert_eq!(d.used_draft_model_key, lms::DEFAULT_MODEL_KEY);
        assert!(d.accepted_draft_tokens_count > 0, "{d:?}");
        add_up(&d);
    }
    let prompt = format!("Copy exactly: {PARAGRAPH}\nCopy: {PARAGRAPH}\nCopy:");
    let exact = lms::Config { speculative_decoding_num_draft_tokens_exact: Some(3), ..own(exactly(24)) };
    let r = model().complete(&prompt, exact).expect("completes");
    assert_eq!(r.stats.predicted_tokens_count, Some(24));
    let d = r.stats.drafts.expect("draft stats");
    add_up(&d);
    // Drafts of three while room is left: a kept draft and its token make four.
    assert!(d.total_draft_tokens_count >= 15 && d.accepted_draft_tokens_count > 0, "{d:?}");
    // No draft is as long as 17 tokens (16 at most without `exact`): none is checked.
    let long = lms::Config { speculative_decoding_min_draft_length_to_consider: Some(17), ..own(exactly(8)) };
    let r = model().complete(&prompt, long).expect("completes");
    assert_eq!(r.stats.drafts.expect("draft stats").total_draft_tokens_count, 0);
}

/// A draft model whose tokens mean other text cannot draft: a typed error before anything runs,
/// naming the token; an unknown key is the usual unknown model. The model works on after both.
#[test]
fn a_draft_model_of_another_vocabulary_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let local = lms::ModelStore::new(dir.path());
    let main = crate::store().resolve(lms::DEFAULT_MODEL_KEY).expect("the default model");
    local.import(&main.path, Some("test"), lms::ImportMode::Symlink).expect("imports");
    // The same file with one letter of one token's text changed (`tokenizer.ggml.tokens`).
    let mut bytes = std::fs::read(&main.path).expect("reads");
    let (token, at) = token_letter(&bytes, 1000);
    bytes[at] = if bytes[at] == b'Q' { b'Z' } else { b'Q' };
    let other = dir.path().join("other-vocab.gguf");
    std::fs::write(&other, &bytes).expect("writes");
    drop(bytes);
    local.import(&other, Some("test"), lms::ImportMode::Move).expect("imports");
    let client = lms::Client::with_store(local);
    let config = lms::LoadConfig { context_length: Some(256), parallel: Some(1), ..Default::default() };
    // Both files are named gemma-3-270m inside: the main model by its path.
    let llm = client.load("test/gemma-3-270m-GGUF/gemma-3-270m-Q4_K_M.gguf", &config).expect("loads");
    match llm.complete("Hello", drafting_with("other-vocab", greedy(4))) {
        Err(lms::Error::IncompatibleDraftModel { path, reason, .. }) => {
            assert!(path.ends_with("other-vocab.gguf"), "{}", path.display());
            assert!(reason.contains(&format!("token {token} ")), "{reason}");
        }
        other => panic!("expected IncompatibleDraftModel, got {other:?}"),
    }
    let e = llm.complete("Hello", drafting_with("no-such-model", greedy(4))).expect_err("unknown");
    assert!(matches!(e, lms::Error::ModelNotFound { .. }), "{e}");
    let r = llm.complete("Hello", greedy(4)).expect("the model works on");
    assert!(r.stats.drafts.is_none());
}

/// The first token from `from` on whose text holds an ASCII letter, in a GGUF file's
/// `tokenizer.ggml.tokens` array, and where that letter is in the file.
fn token_letter(bytes: &[u8], from: usize) -> (usize, usize) {
    let key = b"tokenizer.ggml.tokens";
    let start = bytes.windows(key.len()).position(|w| w == key).expect("the file has a token list") + key.len();
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes")) as usize;
    // The value: array type (9), element type (string, 8), count, then length-prefixed strings.
    assert_eq!(&bytes[start..start + 8], &[9, 0, 0, 0, 8, 0, 0, 0]);
    let count = u64_at(start + 8);
    let mut at = start + 16;
    for token in 0..count {
        let len = u64_at(at);
        let text = &bytes[at + 8..at + 8 + len];
        if token >= from {
            if let Some(i) = text.iter().position(u8::is_ascii_alphabetic) {
                return (token, at + 8 + i);
            }
        }
        at += 8 + len;
    }
    panic!("no token with a letter from {from} on");
}

/// At temperature > 0 a kept draft token is one the model's own draw produced, so the text keeps
/// the model's distribution: the distribution of the token at each of 6 positions over many
/// seeds, with n-gram drafts and with a draft model, against without, by chi-square tests of
/// homogeneity (the seeds differ between the samples: a test of distributions, not of replays).
/// Coin flips make the drafts often wrong, so rejected drafts are put to the test too (what they
/// left in the KV cache would change every later token's odds).
#[test]
fn sampled_text_keeps_the_distribution_with_drafts() {
    const RUNS: u32 = 150;
    const POSITIONS: usize = 6;
    let prompt = "Coin flips: heads, tails, tails, heads, tails, heads, heads, tails, heads, tails, tails, heads,";
    let sampled = |seed: u32| lms::Config {
        temperature: Some(1.0),
        top_k: Some(40),
        top_p: Some(1.0),
        min_p: Some(0.0),
        repeat_penalty: Some(1.0),
        seed: Some(seed),
        logprobs: Some(0),
        ..exactly(POSITIONS as u32)
    };
    type Counts = Vec<std::collections::BTreeMap<String, u32>>;
    let sample = |first_seed: u32, drafts: &dyn Fn(lms::Config) -> lms::Config| -> (Counts, lms::DraftStats) {
        let mut counts = vec![std::collections::BTreeMap::new(); POSITIONS];
        let mut d = lms::DraftStats::default();
        for seed in first_seed..first_seed + RUNS {
            let r = model().complete(prompt, drafts(sampled(seed))).expect("completes");
            assert_eq!(r.logprobs.len(), POSITIONS);
            for (at, t) in r.logprobs.into_iter().enumerate() {
                *counts[at].entry(t.token).or_default() += 1;
            }
            if let Some(s) = r.stats.drafts {
                d.accepted_draft_tokens_count += s.accepted_draft_tokens_count;
                d.rejected_draft_tokens_count += s.rejected_draft_tokens_count;
            }
        }
        (counts, d)
    };
    let (plain, _) = sample(0, &|c| c);
    for (name, drafts) in [
        ("ngram", &ngram as &dyn Fn(lms::Config) -> lms::Config),
        ("draft model", &|c| drafting_with(lms::DEFAULT_MODEL_KEY, c)),
    ] {
        let (fast, d) = sample(RUNS, drafts);
        assert!(d.accepted_draft_tokens_count > 0 && d.rejected_draft_tokens_count > 0, "{name}: {d:?}");
        for at in 0..POSITIONS {
            let (chi2, df) = chi_square(&plain[at], &fast[at]);
            eprintln!("{name}, token {at}: chi2 {chi2:.1} on {df} degrees of freedom; {d:?}");
            // Each of the 6 tests at 0.001/8: all together below 0.001.
            assert!(chi2 <= chi_square_critical(df), "{name}, token {at}: {:?} vs {:?}", plain[at], fast[at]);
        }
        assert!(plain.iter().any(|c| c.len() >= 2), "the tokens vary");
    }
}

/// Pearson's chi-square statistic of two samples over the same categories (those seen fewer than
/// 10 times in both together pooled into one) and its degrees of freedom.
fn chi_square(
    a: &std::collections::BTreeMap<String, u32>,
    b: &std::collections::BTreeMap<String, u32>,
) -> (f64, usize) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let count = |m: &std::collections::BTreeMap<String, u32>, k: &String| f64::from(m.get(k).copied().unwrap_or(0));
    let mut rows: Vec<(f64, f64)> = Vec::new();
    let mut rest = (0.0, 0.0);
    for k in keys {
        let (x, y) = (count(a, k), count(b, k));
        if x + y >= 10.0 {
            rows.push((x, y));
        } else {
            rest = (rest.0 + x, rest.1 + y);
        }
    }
    if rest.0 + rest.1 > 0.0 {
        rows.push(rest);
    }
    let (na, nb) = rows.iter().fold((0.0, 0.0), |(s, t), (x, y)| (s + x, t + y));
    let n = na + nb;
    let chi2 = rows
        .iter()
        .map(|&(x, y)| {
            let (ea, eb) = ((x + y) * na / n, (x + y) * nb / n);
            (x - ea).powi(2) / ea + (y - eb).powi(2) / eb
        })
        .sum();
    (chi2, rows.len().saturating_sub(1))
}

/// The chi-square value that `df` degrees of freedom exceed with probability 0.001 / 8
/// (Wilson-Hilferty); 0 degrees of freedom (one category) leave nothing to test.
fn chi_square_critical(df: usize) -> f64 {
    if df == 0 {
        return 0.0;
    }
    let k = df as f64;
    let z = 3.66; // the normal quantile of 1 - 0.001 / 8
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}
