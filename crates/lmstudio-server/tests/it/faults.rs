//! Faults provoked through the `fault-injection` feature (`scripts/test` runs these in a build of
//! their own): what a router's or a supervisor's probe sees when an engine thread panics.

use axum::http::StatusCode;
use lmstudio_server::AppState;

use crate::http::{call, get, json_of};

/// Issue 30, item 4: `/health` is 503 while a loaded instance's engine has failed, and 200 again
/// once it is unloaded.
#[tokio::test]
async fn health_says_when_an_engine_failed() {
    let client = crate::lms_client(1);
    let llm = client.llm_async("gemma-3-270m").await.expect("loads");
    let state = AppState::new(client.clone(), None);
    let (status, body) = call(state.clone(), get("/health")).await;
    assert_eq!((status, json_of(&body)["status"].as_str()), (StatusCode::OK, Some("ok")), "{body}");
    let config = lmstudio::Config { max_tokens: Some(10), ..Default::default() };
    let failed = llm.complete_async(&format!("Hello{}", lmstudio::FAULT_PANIC), config).await;
    assert!(matches!(&failed, Err(lmstudio::Error::Engine(m)) if m.contains("panicked")), "{failed:?}");
    let (status, body) = call(state.clone(), get("/health")).await;
    assert_eq!((status, json_of(&body)["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("failed")));
    client.unload_async("gemma-3-270m").await.expect("unloads");
    let (status, _) = call(state, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}
