//! Faults provoked through the `fault-injection` feature (`scripts/test` runs these in a build of
//! their own): what a user sees when the engine thread panics.

use lmstudio as lms;

use crate::{exactly, greedy, store};

#[test]
fn an_engine_panic_fails_its_requests_and_the_instance_can_be_loaded_again() {
    let client = lms::Client::with_store(store().clone());
    let config = lms::LoadConfig { parallel: Some(2), identifier: Some("doomed".into()), ..Default::default() };
    let model = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
    let mut bystander = model.complete_stream("Once upon a time", exactly(400)).expect("starts");
    bystander.next().expect("a fragment").expect("ok");
    let faulty = model.complete(&format!("Hello{}", lms::FAULT_PANIC), exactly(10));
    let says_so = |r: &lms::Result<lms::PredictionResult>| matches!(r, Err(lms::Error::Engine(m)) if m.contains("panicked") && m.contains("fault injected"));
    assert!(says_so(&faulty), "{faulty:?}");
    // The prediction running beside it fails the same way.
    let rest: Vec<_> = (&mut bystander).collect();
    assert!(rest.last().is_some_and(Result::is_err), "{rest:?}");
    assert!(says_so(&bystander.result()), "{:?}", bystander.result());
    // The instance shows it, refuses new work with the same error, and nothing counts as running.
    let activity = model.activity().expect("embedded");
    assert!(activity.failure.as_deref().is_some_and(|f| f.contains("panicked")), "{activity:?}");
    assert_eq!((activity.running, activity.queued), (0, 0));
    assert!(says_so(&model.complete("1, 2, 3,", greedy(2))));
    // Unloaded and loaded again, it works.
    client.unload("doomed").expect("unloads");
    let model = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads again");
    assert_eq!(model.identifier(), "doomed");
    assert_eq!(model.complete("1, 2, 3,", greedy(6)).expect("completes").content, " 4, 5,");
    assert_eq!(model.activity().expect("embedded").failure, None);
}
