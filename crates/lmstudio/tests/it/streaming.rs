//! `complete_stream`: fragments, `result()`, callbacks, cancel and drop, blocking and async.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lmstudio as lms;

use crate::{greedy, model, own_model};

#[test]
fn fragments_add_up_to_the_result() {
    let mut stream = model().complete_stream("1, 2, 3, 4,", greedy(16)).expect("starts");
    let mut text = String::new();
    let mut tokens = 0;
    for fragment in &mut stream {
        let fragment = fragment.expect("fragment");
        assert!(!fragment.content.is_empty());
        text += &fragment.content;
        tokens += fragment.tokens_count;
    }
    let result = stream.result().expect("finished");
    assert_eq!(text, result.content);
    assert_eq!(u64::from(tokens), result.stats.predicted_tokens_count.expect("counted"));
    assert_eq!(result.content, model().complete("1, 2, 3, 4,", greedy(16)).expect("completes").content);
}

#[test]
fn result_never_blocks_and_errs_while_running() {
    let long = "word ".repeat(1500);
    let stream = model().complete_stream(&long, greedy(64)).expect("starts");
    assert!(matches!(stream.result(), Err(lms::Error::NotFinished)));
    let done = stream.wait_for_result().expect("finishes");
    assert_eq!(done.stats.predicted_tokens_count, Some(64));
}

#[derive(Debug, PartialEq)]
enum Seen {
    Progress(f32),
    FirstToken,
    Fragment(String),
    Message(String),
}

#[test]
fn callbacks_run_in_order_with_real_progress() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = |s: &Arc<Mutex<Vec<Seen>>>| Arc::clone(s);
    // About 1,500 tokens: at least three chunks of prompt processing, so progress has steps between 0 and 1.
    let prompt = format!("{}Count: 1, 2, 3,", "apple banana cherry ".repeat(500));
    let (a, b, c, d) = (log(&seen), log(&seen), log(&seen), log(&seen));
    let result = model()
        .complete_stream(&prompt, greedy(8))
        .expect("starts")
        .on_prompt_processing_progress(move |p| a.lock().expect("lock").push(Seen::Progress(p)))
        .on_first_token(move || b.lock().expect("lock").push(Seen::FirstToken))
        .on_prediction_fragment(move |f| c.lock().expect("lock").push(Seen::Fragment(f.content.clone())))
        .on_message(move |m| d.lock().expect("lock").push(Seen::Message(m.content.clone())))
        .wait_for_result()
        .expect("completes");
    let seen = seen.lock().expect("lock");
    let progress: Vec<f32> =
        seen.iter().filter_map(|s| if let Seen::Progress(p) = s { Some(*p) } else { None }).collect();
    assert_eq!(progress.first(), Some(&0.0));
    assert_eq!(progress.last(), Some(&1.0));
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert!(progress.len() >= 4, "a long prompt reports progress per chunk: {progress:?}");
    let first = seen.iter().position(|s| *s == Seen::FirstToken).expect("first token");
    let last_progress = seen.iter().rposition(|s| matches!(s, Seen::Progress(_))).expect("progress");
    assert!(last_progress < first);
    assert_eq!(seen.iter().filter(|s| **s == Seen::FirstToken).count(), 1);
    let fragments: String =
        seen.iter().filter_map(|s| if let Seen::Fragment(f) = s { Some(f.as_str()) } else { None }).collect();
    assert_eq!(fragments, result.content);
    assert_eq!(seen.last(), Some(&Seen::Message(result.content.clone())));
}

#[test]
fn cancel_stops_with_user_stopped() {
    let mut stream = model().complete_stream("Once upon a time", greedy(400)).expect("starts");
    let first = stream.next().expect("a fragment").expect("ok");
    assert!(!first.content.is_empty());
    stream.cancel();
    let result = stream.wait_for_result().expect("a result");
    assert_eq!(result.stats.stop_reason, lms::StopReason::UserStopped);
    assert!(result.stats.predicted_tokens_count.is_some_and(|n| n < 400));
}

#[test]
fn dropping_a_stream_frees_its_slot_at_once() {
    let model = own_model(lms::LoadConfig { parallel: 1, ..Default::default() });
    // Unlimited: left alone, it would run until the 4,096-token context is full (over a minute).
    let endless = lms::Config { max_tokens: None, ..greedy(1) };
    let mut abandoned = model.complete_stream("Once upon a time", endless).expect("starts");
    abandoned.next().expect("a fragment").expect("ok");
    drop(abandoned);
    // With one slot, this request waits for the abandoned one unless dropping stopped it. The
    // bound is a liveness check with a wide margin, not a speed measurement.
    let started = Instant::now();
    let next = model.complete("1, 2, 3,", greedy(4)).expect("completes");
    assert_eq!(next.stats.predicted_tokens_count, Some(4));
    assert!(started.elapsed() < Duration::from_secs(45), "the abandoned prediction kept running");
}

#[test]
fn concurrent_predictions_interleave() {
    let m = model();
    let mut long = m.complete_stream("Once upon a time", greedy(200)).expect("starts");
    long.next().expect("a fragment").expect("ok");
    // While the long one is running, a short one completes.
    let short = m.complete("1, 2, 3,", greedy(3)).expect("completes");
    assert_eq!(short.stats.predicted_tokens_count, Some(3));
    assert!(matches!(long.result(), Err(lms::Error::NotFinished)));
    let done = long.wait_for_result().expect("finishes");
    assert_eq!(done.stats.predicted_tokens_count, Some(200));
}

#[test]
fn async_api_streams_and_completes() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = lms::Client::with_store(crate::store().clone());
        let llm = client.llm_async(lms::DEFAULT_MODEL_KEY).await.expect("loads");
        let whole = llm.complete_async("1, 2, 3, 4,", greedy(8)).await.expect("completes");
        let mut stream = llm.complete_stream_async("1, 2, 3, 4,", greedy(8)).expect("starts");
        let mut text = String::new();
        while let Some(fragment) = stream.next().await {
            text += &fragment.expect("ok").content;
        }
        assert_eq!(text, whole.content);
        assert_eq!(stream.result().expect("done").content, whole.content);
    });
}
