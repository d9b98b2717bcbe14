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
