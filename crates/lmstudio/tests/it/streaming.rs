//! `complete_stream`: fragments, `result()`, callbacks, cancel and drop, blocking and async.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lmstudio as lms;

use crate::{exactly, greedy, model, own_model};

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
    let mut stream = model().complete_stream("Once upon a time", exactly(400)).expect("starts");
    stream.next().expect("a fragment").expect("ok");
    // A result() that waited for the end would return the finished prediction here.
    assert!(matches!(stream.result(), Err(lms::Error::NotFinished)));
    // It was still running: cancelling it now cuts it short.
    stream.cancel();
    let rest: Vec<_> = (&mut stream).collect();
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    let done = stream.result().expect("finished once the stream has ended");
    assert_eq!(done.stats.stop_reason, lms::StopReason::UserStopped);
    assert!(done.stats.predicted_tokens_count.is_some_and(|n| n < 400), "{:?}", done.stats);
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
    let model = own_model(lms::LoadConfig { parallel: Some(2), ..Default::default() });
    // Unlimited and unable to end by itself: left alone, it would fill its 4,096-token context.
    let endless = lms::Config { max_tokens: None, ..exactly(1) };
    let mut abandoned = model.complete_stream("Once upon a time", endless).expect("starts");
    abandoned.next().expect("a fragment").expect("ok");
    assert_eq!(model.activity().expect("embedded").running, 1);
    drop(abandoned);
    // The engine sees the drop at its next step, so by the time a request in the other slot is
    // done, nothing runs.
    let next = model.complete("1, 2, 3,", greedy(4)).expect("completes");
    assert_eq!(next.stats.predicted_tokens_count, Some(4));
    // Nothing held in the KV cache by a running prediction, of two slots of 4,096 tokens.
    let idle = lms::Activity { slots: 2, kv_capacity: 2 * 4096, ..Default::default() };
    let now = lms::Activity { prompt_cache_bytes: 0, ..model.activity().expect("embedded") };
    assert_eq!(now, idle, "the abandoned prediction kept its slot");
}

/// Two predictions run at once: the second one's first fragment arrives while the first is still
/// generating, as seen by two consumers logging into one list.
#[test]
fn concurrent_predictions_interleave() {
    let m = own_model(lms::LoadConfig { parallel: Some(2), ..Default::default() });
    let log = Mutex::new(Vec::new());
    let note = |what: &'static str| log.lock().expect("lock").push(what);
    let mut long = m.complete_stream("Once upon a time", exactly(200)).expect("starts");
    long.next().expect("a fragment").expect("ok");
    let mut short = m.complete_stream("1, 2, 3,", greedy(3)).expect("starts");
    let (long, short) = std::thread::scope(|s| {
        let long = s.spawn(move || {
            let done = long.wait_for_result().expect("finishes");
            note("long done");
            done
        });
        let short = s.spawn(move || {
            for fragment in &mut short {
                fragment.expect("ok");
                note("short fragment");
            }
            short.result().expect("finishes")
        });
        (long.join().expect("joins"), short.join().expect("joins"))
    });
    assert_eq!(long.stats.predicted_tokens_count, Some(200));
    assert_eq!(short.stats.predicted_tokens_count, Some(3));
    let log = log.into_inner().expect("lock");
    let first_short = log.iter().position(|e| *e == "short fragment").expect("the short one streamed");
    let long_done = log.iter().position(|e| *e == "long done").expect("logged");
    assert!(first_short < long_done, "the short prediction waited for the long one: {log:?}");
}

#[test]
fn async_api_streams_and_completes() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let client = lms::Client::with_store(crate::store().clone());
        let llm = client.llm_async(lms::DEFAULT_MODEL_KEY).await.expect("loads");
        let whole = llm.complete_async("1, 2, 3, 4,", greedy(8)).await.expect("completes");
        let mut stream = llm.complete_stream_async("1, 2, 3, 4,", greedy(8)).await.expect("starts");
        let mut text = String::new();
        while let Some(fragment) = stream.next().await {
            text += &fragment.expect("ok").content;
        }
        assert_eq!(text, whole.content);
        assert_eq!(stream.result().expect("done").content, whole.content);
    });
}

/// A future polled on this thread until it is ready: no async runtime at all.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn async_twins_work_outside_any_runtime() {
    let client = crate::client();
    block_on(async {
        let llm = client.llm_async(lms::DEFAULT_MODEL_KEY).await.expect("loaded");
        let (again, loaded_now) =
            client.get_or_load_async(lms::DEFAULT_MODEL_KEY, &lms::LoadConfig::default()).await.expect("found");
        assert_eq!((again.identifier(), loaded_now), (llm.identifier(), false));
        assert!(client
            .list_loaded_async()
            .await
            .expect("listed")
            .iter()
            .any(|i| i.identifier.as_deref() == Some(llm.identifier())));
        assert!(client
            .list_models_async()
            .await
            .expect("listed")
            .iter()
            .any(|m| m.info.model_key == lms::DEFAULT_MODEL_KEY));
        assert_eq!(client.resolve_async("gemma-3-270m").await.expect("resolves").model_key, lms::DEFAULT_MODEL_KEY);
        assert_eq!(llm.count_tokens_async("1, 2, 3,").await.expect("counts"), 9);
        assert_eq!(llm.tokenize_async("1, 2, 3,").await.expect("tokenizes").len(), 9);
        let chat = [lms::ChatMessage::new("user", "Hi")];
        assert!(llm.apply_prompt_template_async(&chat).await.expect("templated").contains("Hi"));
        let r = llm.complete_async("1, 2, 3, 4,", greedy(6)).await.expect("completes");
        assert_eq!(r.content, " 5, 6,");
        let mut stream = llm.complete_stream_async("1, 2, 3, 4,", greedy(6)).await.expect("starts");
        let mut text = String::new();
        while let Some(fragment) = stream.next().await {
            text += &fragment.expect("ok").content;
        }
        assert_eq!(text, r.content);
    });
    // Loading and unloading an instance of its own.
    block_on(async {
        let own = lms::LoadConfig { parallel: Some(1), identifier: Some("async-twin".into()), ..Default::default() };
        let llm = client.load_async(lms::DEFAULT_MODEL_KEY, &own).await.expect("loads");
        assert_eq!(llm.identifier(), "async-twin");
        assert!(client.get_loaded_async("async-twin").await.expect("looked up").is_some());
        client.unload_async("async-twin").await.expect("unloads");
        assert!(client.get_loaded_async("async-twin").await.expect("looked up").is_none());
    });
}

/// Issue 27: the async API never blocks its caller. On a single-threaded executor, a timer task
/// keeps ticking while a model loads and while a long prompt is tokenized and queued: with the
/// work done on the caller's thread, the timer could not run until it was over.
#[test]
fn async_calls_leave_a_single_threaded_executor_free() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    rt.block_on(async {
        let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = Arc::clone(&ticks);
            async move {
                let mut interval = tokio::time::interval(std::time::Duration::from_millis(1));
                loop {
                    interval.tick().await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let ticks_during = |before: usize| ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        // Let the ticker start.
        tokio::task::yield_now().await;

        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let client = lms::Client::with_store(crate::store().clone());
        let config = lms::LoadConfig { context_length: Some(1024), parallel: Some(1), ..Default::default() };
        let llm = client.load_async(lms::DEFAULT_MODEL_KEY, &config).await.expect("loads");
        // Read before anything else can yield: only ticks that ran during the load count.
        assert!(ticks_during(before) > 0, "the timer stood still while the model loaded");

        // About 100k tokens, cut to fit the context: tokenizing alone takes a while.
        let prompt = "one two three four five six seven eight nine ten ".repeat(10_000);
        let cut = lms::Config {
            context_overflow_policy: Some(lms::ContextOverflowPolicy::TruncateMiddle),
            ..crate::greedy(2)
        };
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let stream = llm.complete_stream_async(&prompt, cut).await.expect("starts");
        assert!(ticks_during(before) > 0, "the timer stood still while the prompt was tokenized");
        let result = stream.wait_for_result().await.expect("completes");
        assert_eq!(result.stats.predicted_tokens_count, Some(2));
        ticker.abort();
    });
}
