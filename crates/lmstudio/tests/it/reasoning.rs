//! Reasoning split from the answer (issue 28, item 8). The default model does not think, so a
//! grammar holds it to `<think>reasoning</think>answer`, as a thinking model writes; what is
//! judged is the split, not the words.

use lmstudio as lms;

use crate::model;

/// Reasoning, then an answer, each of a few letters (a letter first, so that neither is only
/// space).
const THINKS: &str = r#"root ::= "<think>" [a-z] [a-z ]{0,24} "</think>" [a-z] [a-z ]{0,24}"#;

fn thinking(seed: u32) -> lms::Config {
    lms::Config {
        structured: Some(lms::Structured::Gbnf(THINKS.into())),
        seed: Some(seed),
        max_tokens: Some(120),
        ..Default::default()
    }
}

fn chat() -> lms::Chat {
    let mut chat = lms::Chat::new();
    chat.add_user_message("Is the sky blue?");
    chat
}

#[test]
fn reasoning_streams_apart_from_the_answer() {
    for seed in 1..=2 {
        let mut stream = model().respond_stream(&chat(), thinking(seed)).expect("starts");
        let fragments: Vec<lms::Fragment> = stream.by_ref().map(|f| f.expect("a fragment")).collect();
        let r = stream.result().expect("responds");
        let of =
            |kind| fragments.iter().filter(|f| f.reasoning == kind).map(|f| f.content.as_str()).collect::<String>();
        assert!(!r.reasoning_content.is_empty() && !r.content.is_empty(), "seed {seed}: {r:?}");
        assert_eq!(of(lms::ReasoningType::Reasoning), r.reasoning_content, "seed {seed}");
        assert_eq!(of(lms::ReasoningType::None), r.content, "seed {seed}");
        assert_eq!(
            (of(lms::ReasoningType::StartTag), of(lms::ReasoningType::EndTag)),
            ("<think>".into(), "</think>".into())
        );
        assert!(!r.content.contains("think>") && !r.reasoning_content.contains("think>"), "{r:?}");
        let order: Vec<lms::ReasoningType> = fragments.iter().map(|f| f.reasoning).collect();
        assert!(order.windows(2).all(|w| rank(w[0]) <= rank(w[1])), "reasoning comes first: {order:?}");
        let tokens: u64 = fragments.iter().map(|f| u64::from(f.tokens_count)).sum();
        assert_eq!(Some(tokens), r.stats.predicted_tokens_count, "every token counted once");
    }
}

fn rank(kind: lms::ReasoningType) -> u8 {
    match kind {
        lms::ReasoningType::StartTag => 0,
        lms::ReasoningType::Reasoning => 1,
        lms::ReasoningType::EndTag => 2,
        lms::ReasoningType::None => 3,
    }
}

#[test]
fn reasoning_parsing_can_be_off_or_use_other_markers() {
    let off = lms::ReasoningParsing { enabled: false, ..Default::default() };
    let r = model().respond(&chat(), lms::Config { reasoning_parsing: Some(off), ..thinking(3) }).expect("responds");
    assert!(r.content.starts_with("<think>") && r.reasoning_content.is_empty(), "{r:?}");
    // Other markers: `<think>` is then answer text.
    let other =
        lms::ReasoningParsing { start_string: "<reason>".into(), end_string: "</reason>".into(), enabled: true };
    let r = model().respond(&chat(), lms::Config { reasoning_parsing: Some(other), ..thinking(3) }).expect("responds");
    assert!(r.content.starts_with("<think>") && r.reasoning_content.is_empty(), "{r:?}");
    // A raw completion is text: no chat template decided that the model thinks.
    let raw = model().complete("Q: Is the sky blue?\nA:", thinking(3)).expect("completes");
    assert!(raw.content.starts_with("<think>") && raw.reasoning_content.is_empty(), "{raw:?}");
    let empty = lms::ReasoningParsing { start_string: String::new(), ..Default::default() };
    let refused = model().respond(&chat(), lms::Config { reasoning_parsing: Some(empty), ..thinking(3) });
    assert!(matches!(refused, Err(lms::Error::InvalidConfig(_))), "{refused:?}");
}
