//! LM Studio's native chat, `POST /api/v1/chat` (issue 28, item 7), on the router: streamed with
//! LM Studio's events (the model loaded on demand, with its load's events), whole, stateful by
//! `previous_response_id`, and its errors in LM Studio's shape.

use axum::http::StatusCode;
use lmstudio_server::AppState;
use serde_json::{json, Value};

use crate::http::{call, json_of, post};

/// The named events of a stream: `event:` names with their `data`.
fn named_events(body: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut name = None;
    for line in body.lines() {
        if let Some(n) = line.strip_prefix("event: ") {
            name = Some(n.to_owned());
        } else if let Some(data) = line.strip_prefix("data: ") {
            events.push((name.take().unwrap_or_default(), json_of(data)));
        }
    }
    events
}

async fn chat(state: &AppState, body: Value) -> (StatusCode, Value) {
    let (status, text) = call(state.clone(), post("/api/v1/chat", body.to_string())).await;
    (status, json_of(&text))
}

#[tokio::test]
async fn native_chat_streams_loads_and_keeps_state() {
    // A server of its own, nothing loaded: the first request loads the model; one slot, greedy,
    // so that the same ask answers the same.
    let state = AppState::new(crate::lms_client(1), None);
    let ask = json!({"model": "gemma-3-270m", "input": "Name three colours.", "system_prompt": "Be brief.",
                     "temperature": 0, "max_output_tokens": 12, "context_length": 1024});
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let (status, text) = call(state.clone(), post("/api/v1/chat", streamed.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = named_events(&text);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "each event's type is its name");
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let order = [
        "chat.start",
        "model_load.start",
        "model_load.end",
        "prompt_processing.start",
        "prompt_processing.end",
        "message.start",
        "message.delta",
        "message.end",
        "chat.end",
    ];
    let mut at = 0;
    for want in order {
        at += names[at..].iter().position(|n| *n == want).unwrap_or_else(|| panic!("no {want} after {at}: {names:?}"));
    }
    assert_eq!(names.first(), Some(&"chat.start"));
    assert_eq!(names.last(), Some(&"chat.end"));
    assert!(names.contains(&"model_load.progress"), "{names:?}");
    assert!(!names.contains(&"reasoning.start"), "the default model does not reason");
    let deltas: String =
        events.iter().filter(|(n, _)| n == "message.delta").filter_map(|(_, d)| d["content"].as_str()).collect();
    let first = events.last().map(|(_, d)| d["result"].clone()).expect("chat.end");
    assert_eq!(first["output"], json!([{"type": "message", "content": deltas}]), "{first}");
    assert!(first["stats"]["model_load_time_seconds"].as_f64().is_some(), "this request loaded it: {first}");
    assert_eq!(first["model_instance_id"], "gemma-3-270m");
    let id = first["response_id"].as_str().expect("kept by default").to_owned();

    // Whole: the same answer, no load this time.
    let (status, whole) = chat(&state, ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{whole}");
    assert_eq!(whole["output"], first["output"], "{whole}");
    assert_eq!(whole["stats"]["input_tokens"], first["stats"]["input_tokens"]);
    assert!(whole["stats"].get("model_load_time_seconds").is_none(), "{whole}");
    assert!(whole["stats"]["total_output_tokens"].as_u64().is_some_and(|n| n > 0), "{whole}");

    // Stateful: the model sees the kept turns before the new input.
    // (`reasoning: "off"` is the template's `enable_thinking`: Gemma's has none, nothing changes.)
    let (status, next) = chat(
        &state,
        json!({"model": "gemma-3-270m", "input": "And three more.", "previous_response_id": id, "max_output_tokens": 4,
               "store": false, "reasoning": "off"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let (before, said) = (first["stats"]["input_tokens"].as_u64(), first["stats"]["total_output_tokens"].as_u64());
    let now = next["stats"]["input_tokens"].as_u64();
    assert!(now > before.zip(said).map(|(b, s)| b + s), "{next} after {first}");
    assert!(next.get("response_id").is_none(), "store: false keeps nothing: {next}");
    // Kept for this endpoint only: `GET /v1/responses/{id}` serves its own responses.
    let (status, _) = call(state.clone(), crate::http::get(&format!("/v1/responses/{id}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn native_chat_errors_are_lm_studios() {
    let state = AppState::new(crate::lms_client(1), None);
    let cases = [
        (json!({"input": "Hi"}), StatusCode::BAD_REQUEST, "invalid_request", "model"),
        (json!({"model": "gemma-3-270m"}), StatusCode::BAD_REQUEST, "invalid_request", "input"),
        (json!({"model": "no-such-model", "input": "Hi"}), StatusCode::NOT_FOUND, "model_not_found", "no-such-model"),
        (
            json!({"model": "gemma-3-270m", "input": "Hi", "integrations": ["mcp/playwright"]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "integrations",
        ),
        (
            json!({"model": "gemma-3-270m", "input": "Hi", "reasoning": "high"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reasoning",
        ),
        (
            json!({"model": "gemma-3-270m", "input": "Hi", "temperature": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "emperature",
        ),
        (
            json!({"model": "gemma-3-270m", "input": "Hi", "previous_response_id": "resp_nope"}),
            StatusCode::NOT_FOUND,
            "invalid_request",
            "resp_nope",
        ),
        (
            json!({"model": "gemma-3-270m", "input": [{"type": "image", "data_url": "x"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "image",
        ),
    ];
    // Streamed, a failure is an `error` event, and the stream still ends with `chat.end`.
    let ask = json!({"model": "no-such-model", "input": "Hi", "stream": true});
    let (status, text) = call(state.clone(), post("/api/v1/chat", ask.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events = named_events(&text);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["error", "chat.end"], "{text}");
    assert_eq!(events[0].1["error"]["type"], "model_not_found", "{text}");
    assert_eq!(events[1].1["result"]["output"], json!([]), "{text}");
    for (body, status, kind, names) in cases {
        let (got, reply) = chat(&state, body.clone()).await;
        assert_eq!(got, status, "{body} -> {reply}");
        assert_eq!(reply["error"]["type"], kind, "{body} -> {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{body} -> {reply}");
    }
}
