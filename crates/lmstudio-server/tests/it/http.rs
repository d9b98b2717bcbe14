//! The router without sockets (`tower::ServiceExt::oneshot`): shapes, errors and auth.

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lmstudio_server::{router, AppState};
use serde_json::{json, Value};
use tower::ServiceExt;

fn state() -> AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| AppState::new(crate::lms_client(4), None)).clone()
}

pub(crate) async fn call(state: AppState, req: Request<Body>) -> (StatusCode, String) {
    let res = router(state).oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri).header("content-type", "application/json").body(body.into()).expect("request")
}

pub(crate) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

pub(crate) fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn greeting_health_and_models() {
    let (status, body) = call(state(), get("/lmstudio-greeting")).await;
    assert_eq!((status, json_of(&body)), (StatusCode::OK, json!({"lmstudio": true})));
    let (status, _) = call(state(), get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(state(), get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v["object"], "list");
    assert!(v["data"].as_array().expect("data").iter().any(|m| m["id"] == "gemma-3-270m"));
    let (status, body) = call(state(), get("/api/v0/models/gemma-3-270m")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(json_of(&body)["arch"], "gemma3");
    let (status, body) = call(state(), get("/api/v0/models/nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn completion_shapes() {
    let req =
        json!({"model": "gemma-3-270m", "prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0, "repeat_penalty": 1});
    let (status, body) = call(state(), post("/v1/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], " 4, 5,");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let usage = &v["usage"];
    assert_eq!(
        (&usage["prompt_tokens"], &usage["completion_tokens"], &usage["total_tokens"]),
        (&json!(9), &json!(6), &json!(15))
    );
    assert!(usage["prompt_tokens_details"]["cached_tokens"].as_u64().is_some_and(|c| c <= 9), "{usage}");
    let (status, body) = call(state(), post("/api/v0/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["stats"]["stop_reason"], "maxPredictedTokensReached");
    assert!(v["stats"]["tokens_per_second"].is_number());
    assert!(v["stats"]["time_to_first_token"].is_number());
    assert!(v["stats"]["generation_time"].is_number());
    assert_eq!(v["model_info"]["arch"], "gemma3");
    assert_eq!(v["runtime"]["supported_formats"], json!(["gguf"]));
    // Speculation (our field): the same text, and the drafts in the stats.
    let cycle = json!({"model": "gemma-3-270m", "prompt": "1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4,", "max_tokens": 12,
        "temperature": 0, "repeat_penalty": 1});
    let mut fast = cycle.clone();
    fast["speculation"] = json!("ngram");
    let (_, plain) = call(state(), post("/api/v0/completions", cycle.to_string())).await;
    let (status, body) = call(state(), post("/api/v0/completions", fast.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["choices"][0]["text"], json_of(&plain)["choices"][0]["text"]);
    assert_eq!(v["stats"]["used_draft_model_key"], "ngram", "{v}");
    assert!(v["stats"]["accepted_draft_tokens_count"].as_u64().is_some_and(|n| n > 0), "{v}");
    // LM Studio's draft_model: the model as its own draft; one of another vocabulary is a 400.
    let mut drafted = cycle.clone();
    drafted["draft_model"] = json!("gemma-3-270m");
    let (status, body) = call(state(), post("/api/v0/completions", drafted.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["choices"][0]["text"], json_of(&plain)["choices"][0]["text"]);
    assert_eq!(v["stats"]["used_draft_model_key"], "gemma-3-270m", "{v}");
    drafted["speculation"] = json!("ngram");
    let (status, body) = call(state(), post("/v1/completions", drafted.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("exclude each other"), "{body}");
    fast["speculation"] = json!("medusa");
    let (status, body) = call(state(), post("/v1/completions", fast.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn chat_streams_server_sent_events() {
    // ignore_eos: this base model's answer would otherwise decide whether it runs to max_tokens.
    let req = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0,
        "stream": true, "ignore_eos": true});
    let (status, body) = call(state(), post("/v1/chat/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| json_of(e)).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let last = chunks.last().expect("a final chunk");
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    assert_eq!(last["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn bad_requests_get_json_4xx() {
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (post("/v1/completions", "{not json"), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"prompt": 5}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"prompt": "x", "temperature": "hot"}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"prompt": "x", "temperature": -3}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"prompt": "x", "max_tokens": 0}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"prompt": ""}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{}"#), StatusCode::BAD_REQUEST),
        (post("/v1/chat/completions", r#"{"messages": []}"#), StatusCode::BAD_REQUEST),
        (post("/v1/completions", r#"{"model": "nope", "prompt": "x"}"#), StatusCode::NOT_FOUND),
        (post("/v1/completions", vec![b' '; lmstudio_server::MAX_BODY_BYTES + 1]), StatusCode::PAYLOAD_TOO_LARGE),
        (get("/v2/nothing"), StatusCode::NOT_FOUND),
        (get("/llm"), StatusCode::BAD_REQUEST),
    ];
    for (req, expected) in cases {
        let uri = req.uri().clone();
        let (status, body) = call(state(), req).await;
        assert_eq!(status, expected, "{uri}: {body}");
        if status != StatusCode::PAYLOAD_TOO_LARGE {
            assert!(json_of(&body)["error"]["message"].is_string(), "{uri}: {body}");
        }
    }
}

/// Issue 13, item 8: a field we do not act on is a 400 that names it, never silently ignored;
/// the values that ask for nothing (`n: 1`, `logprobs: null`, a text format) are taken.
#[tokio::test]
async fn unsupported_fields_are_refused_by_name() {
    let refused = [
        ("/v1/completions", r#"{"prompt": "x", "n": 2}"#, "`n`"),
        ("/v1/completions", r#"{"prompt": "x", "logprobs": true}"#, "`logprobs`"),
        ("/v1/completions", r#"{"prompt": "x", "logprobs": 50}"#, "logprobs"),
        ("/v1/completions", r#"{"prompt": "x", "frobnicate": true}"#, "`frobnicate`"),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}"#,
            "`response_format.type`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}}"#,
            "`response_format.json_schema.schema`",
        ),
        (
            "/v1/completions",
            r#"{"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}"#,
            "`tools`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#,
            "`function`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search", "function": {"name": "f"}}]}"#,
            "`web_search`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}"#,
            "`tool_choice`",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#,
            "`top_logprobs`",
        ),
        ("/api/v0/chat/completions", r#"{"messages": [{"role": "user", "content": "x", "name": "bob"}]}"#, "`name`"),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#,
            "`image_url`",
        ),
    ];
    for (uri, body, names) in refused {
        let (status, text) = call(state(), post(uri, body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        let message = json_of(&text)["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains(names), "{body}: {message}");
    }
    let taken = r#"{"prompt": "1, 2, 3,", "max_tokens": 2, "temperature": 0, "n": 1, "logprobs": null, "user": "u1",
        "stream_options": {"include_usage": true}, "response_format": {"type": "text"}}"#;
    let (status, text) = call(state(), post("/v1/completions", taken)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
}

#[tokio::test]
async fn api_key_guards_every_http_endpoint() {
    let guarded = AppState::new(crate::lms_client(1), Some("sesame".into()));
    for uri in ["/v1/models", "/api/v0/models", "/metrics"] {
        let (status, _) = call(guarded.clone(), get(uri)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    let (status, _) = call(guarded.clone(), post("/v1/completions", r#"{"prompt":"x"}"#)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let ok = Request::get("/v1/models").header("authorization", "Bearer sesame").body(Body::empty()).expect("req");
    assert_eq!(call(guarded.clone(), ok).await.0, StatusCode::OK);
    // Issue 12, D6: the scheme is case-insensitive; near misses are refused.
    for (value, expected) in [
        ("bearer sesame", StatusCode::OK),
        ("BEARER sesame", StatusCode::OK),
        ("Bearer sesam", StatusCode::UNAUTHORIZED),
        ("Bearer sesamee", StatusCode::UNAUTHORIZED),
        ("Bearer ", StatusCode::UNAUTHORIZED),
        ("Basic sesame", StatusCode::UNAUTHORIZED),
        ("sesame", StatusCode::UNAUTHORIZED),
    ] {
        let req = Request::get("/v1/models").header("authorization", value).body(Body::empty()).expect("req");
        assert_eq!(call(guarded.clone(), req).await.0, expected, "{value:?}");
    }
}

/// A value of `/metrics` (`name value` on its line).
async fn metric_value(state: AppState, name: &str) -> f64 {
    let (_, body) = call(state, get("/metrics")).await;
    let value = body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok());
    value.unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Issue 30, item 4: what a router in front of replicas reads. OpenAI's
/// `usage.prompt_tokens_details.cached_tokens` says how much of a prompt was reused; `/metrics`
/// counts prompt tokens reused and evaluated, and has vLLM's gauges (running, waiting, KV cache
/// usage), which are non-zero while a prediction runs and zero once it is done.
#[tokio::test]
async fn routers_read_cached_tokens_and_vllm_gauges() {
    let client = crate::lms_client(1);
    let llm = client.llm_async("gemma-3-270m").await.expect("loads");
    let state = AppState::new(client.clone(), None);
    let system = "You are a careful assistant for a library. ".repeat(20);
    let req = json!({"model": "gemma-3-270m", "messages": [{"role": "system", "content": system},
        {"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0});
    let mut cached = Vec::new();
    for _ in 0..2 {
        let (status, body) = call(state.clone(), post("/v1/chat/completions", req.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let usage = json_of(&body)["usage"].clone();
        let prompt = usage["prompt_tokens"].as_u64().expect("prompt tokens");
        let reused = usage["prompt_tokens_details"]["cached_tokens"].as_u64().expect("cached tokens");
        assert!(reused <= prompt, "{usage}");
        cached.push((prompt, reused));
    }
    assert_eq!(cached[0].1, 0, "a first prompt on a fresh instance is evaluated whole");
    assert!(cached[1].1 > cached[1].0 / 2, "the same prompt again is mostly reused: {cached:?}");
    let (prompt, reused) = (cached[0].0 + cached[1].0, cached[1].1);
    assert_eq!(metric_value(state.clone(), "lms_prompt_tokens_cached_total").await, reused as f64);
    assert_eq!(metric_value(state.clone(), "lms_prompt_tokens_evaluated_total").await, (prompt - reused) as f64);
    assert_eq!(metric_value(state.clone(), "vllm:prefix_cache_hits_total").await, reused as f64);
    assert_eq!(metric_value(state.clone(), "vllm:prefix_cache_queries_total").await, prompt as f64);

    // While a prediction runs: one running, its tokens a share of the KV cache.
    let long = json!({"model": "gemma-3-270m", "prompt": "Once upon a time", "max_tokens": 1500,
        "temperature": 0, "ignore_eos": true});
    let request = tokio::spawn(call(state.clone(), post("/v1/completions", long.to_string())));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let running = metric_value(state.clone(), "vllm:num_requests_running").await;
        let usage = metric_value(state.clone(), "vllm:kv_cache_usage_perc").await;
        if running == 1.0 && usage > 0.0 {
            assert!(usage <= 1.0, "{usage}");
            assert_eq!(metric_value(state.clone(), "vllm:num_requests_waiting").await, 0.0);
            break;
        }
        assert!(!request.is_finished(), "the prediction ended before the gauges showed it running");
        assert!(std::time::Instant::now() < deadline, "never seen running");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, body) = request.await.expect("joins");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(llm.activity().expect("embedded").running, 0);
    assert_eq!(metric_value(state.clone(), "vllm:num_requests_running").await, 0.0);
    assert_eq!(metric_value(state, "vllm:kv_cache_usage_perc").await, 0.0);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (status, body) = call(state(), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("# TYPE lms_predicted_tokens_total counter"), "{body}");
}

/// Issue 12, D8: a stream cut by unloading the model ends with an error event, not with a
/// `finish_reason` a client would take for a complete answer.
#[tokio::test]
async fn a_stream_cut_by_unloading_ends_with_an_error() {
    let client = crate::lms_client(1);
    let llm = client.llm_async("gemma-3-270m").await.expect("loads");
    let state = AppState::new(client.clone(), None);
    let req = json!({"model": "gemma-3-270m", "prompt": "Once upon a time", "max_tokens": 2000,
        "temperature": 0, "ignore_eos": true, "stream": true});
    let request = tokio::spawn(call(state, post("/v1/completions", req.to_string())));
    // Wait for the prediction to hold its slot (an event, not a time), then unload under it.
    while llm.activity().expect("embedded").running == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    client.unload_async("gemma-3-270m").await.expect("unloads");
    let (status, body) = request.await.expect("joins");
    assert_eq!(status, StatusCode::OK, "the stream had started");
    let events: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    let last = events.iter().rev().find(|e| **e != "[DONE]").map(|e| json_of(e)).expect("events");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("unloaded")), "{last}");
    assert!(events.iter().all(|e| !e.contains(r#""finish_reason":"stop""#)), "{body}");
}

/// Issue 12, D4: a web page on another origin cannot drive the server (HTTP or the SDK's
/// websocket), a hostile name for 127.0.0.1 (DNS rebinding) is refused, loopback pages are served,
/// and only listed origins get CORS headers.
#[tokio::test]
async fn web_pages_of_other_origins_are_refused() {
    let with = |uri: &str, headers: &[(&str, &str)]| {
        let mut req = Request::get(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(Body::empty()).expect("request")
    };
    let upgrade = [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let evil = ("origin", "https://evil.example");
    let cases: Vec<(Request<Body>, StatusCode)> = vec![
        (with("/v1/models", &[evil]), StatusCode::FORBIDDEN),
        (with("/llm", &[&upgrade[..], &[evil]].concat()), StatusCode::FORBIDDEN),
        (with("/v1/models", &[("host", "evil.example:1234")]), StatusCode::FORBIDDEN),
        (with("/v1/models", &[("origin", "http://localhost:3000"), ("host", "localhost:1234")]), StatusCode::OK),
        (with("/v1/models", &[("host", "127.0.0.1:1234")]), StatusCode::OK),
    ];
    for (req, expected) in cases {
        let what = format!("{:?}", req.headers());
        let res = router(state()).oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), expected, "{what}");
        assert!(res.headers().get("access-control-allow-origin").is_none(), "{what}");
    }
    let listed = AppState::with_policy(crate::lms_client(1), None, vec!["https://app.example".into()], true);
    let app = ("origin", "https://app.example");
    let res = router(listed.clone()).oneshot(with("/health", &[app])).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["access-control-allow-origin"], "https://app.example");
    let preflight = Request::options("/v1/completions").header(app.0, app.1).body(Body::empty()).expect("req");
    let res = router(listed).oneshot(preflight).await.expect("infallible");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.headers()["access-control-allow-headers"].to_str().is_ok_and(|h| h.contains("authorization")));
}

/// Issue 13, item 6: OpenAI log probabilities on both endpoints, streamed and not: one entry per
/// predicted token, greedy tokens are their step's most likely, alternatives sorted, probabilities
/// that sum to at most 1.
#[tokio::test]
async fn logprobs_come_in_openai_shapes() {
    let body = r#"{"prompt": "1, 2, 3,", "max_tokens": 6, "temperature": 0, "repeat_penalty": 1, "logprobs": 3}"#;
    let (status, text) = call(state(), post("/v1/completions", body)).await;
    assert_eq!(status, StatusCode::OK, "{}", &text[..text.len().min(500)]);
    let v = json_of(&text);
    let lp = &v["choices"][0]["logprobs"];
    let tokens = lp["tokens"].as_array().expect("tokens");
    assert_eq!(tokens.len(), 6);
    let joined: String = tokens.iter().filter_map(Value::as_str).collect();
    assert_eq!(joined, v["choices"][0]["text"].as_str().expect("text"));
    for (i, top) in lp["top_logprobs"].as_array().expect("top").iter().enumerate() {
        let top = top.as_object().expect("an object per token");
        assert!(top.len() <= 3 && !top.is_empty());
        let best = top.values().filter_map(Value::as_f64).fold(f64::NEG_INFINITY, f64::max);
        let own = lp["token_logprobs"][i].as_f64().expect("logprob");
        assert!((own - best).abs() < 1e-6, "greedy token {i} is not its step's most likely: {own} vs {best}");
        assert!(top.values().filter_map(Value::as_f64).map(f64::exp).sum::<f64>() <= 1.0 + 1e-4);
    }
    let chat = r#"{"messages": [{"role": "user", "content": "Count: 1, 2, 3,"}], "max_tokens": 5, "temperature": 0,
        "logprobs": true, "top_logprobs": 2, "stream": true}"#;
    let (status, text) = call(state(), post("/v1/chat/completions", chat)).await;
    assert_eq!(status, StatusCode::OK, "{}", &text[..text.len().min(500)]);
    let mut entries = Vec::new();
    let mut content = String::new();
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let chunk = json_of(data);
        content += chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default();
        if let Some(c) = chunk["choices"][0]["logprobs"]["content"].as_array() {
            entries.extend(c.iter().cloned());
        }
    }
    assert!(!entries.is_empty() && entries.len() <= 5, "{} entries", entries.len());
    for e in &entries {
        let top = e["top_logprobs"].as_array().expect("top");
        assert_eq!(top.len(), 2);
        assert_eq!(top[0]["token"], e["token"], "greedy picks the most likely");
        assert!(top[0]["logprob"].as_f64() >= top[1]["logprob"].as_f64());
        let bytes: Vec<u8> =
            e["bytes"].as_array().expect("bytes").iter().filter_map(Value::as_u64).map(|b| b as u8).collect();
        assert_eq!(String::from_utf8_lossy(&bytes), e["token"].as_str().expect("token"));
    }
    let streamed: String = entries.iter().filter_map(|e| e["token"].as_str()).collect();
    assert_eq!(streamed, content, "the streamed tokens are the streamed text");
}

/// Issue 14, item 4: LM Studio's REST API v1 for models, with its field names.
#[tokio::test]
async fn rest_v1_lists_loads_and_unloads_models() {
    let own = AppState::new(crate::lms_client(1), None);
    let (status, body) = call(
        own.clone(),
        post("/api/v1/models/load", r#"{"model": "gemma-3-270m", "config": {"context_length": 512}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let loaded = json_of(&body);
    let id = loaded["model_instance_id"].as_str().expect("an instance id").to_owned();
    assert_eq!(loaded["config"]["context_length"], 512, "{body}");
    assert!(loaded["load_time_seconds"].as_f64().is_some_and(|s| s >= 0.0), "{body}");

    // The later docs' shape: settings beside `model`, `instance_id` and `status` in the reply.
    let (status, body) = call(
        own.clone(),
        post("/api/v1/models/load", r#"{"model": "gemma-3-270m", "context_length": 256, "echo_load_config": true}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = json_of(&body);
    assert_eq!((&second["type"], &second["status"]), (&json!("llm"), &json!("loaded")), "{body}");
    assert_eq!(second["load_config"]["context_length"], 256, "{body}");
    assert_eq!(second["instance_id"], second["model_instance_id"], "{body}");
    let unload = json!({"instance_id": second["instance_id"]}).to_string();
    assert_eq!(call(own.clone(), post("/api/v1/models/unload", unload)).await.0, StatusCode::OK);

    let (status, body) = call(own.clone(), get("/api/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    let models = json_of(&body);
    let gemma = models["models"].as_array().and_then(|m| m.iter().find(|m| m["key"] == "gemma-3-270m")).cloned();
    let gemma = gemma.unwrap_or_else(|| panic!("no gemma in {body}"));
    assert_eq!((gemma["type"].as_str(), gemma["format"].as_str()), (Some("llm"), Some("gguf")));
    assert_eq!(gemma["quantization"]["name"], "Q4_K_M");
    assert_eq!(gemma["loaded_instances"][0]["id"], id.as_str(), "{gemma}");

    // What we do not act on is refused by name; an unknown instance is a 404.
    let (status, body) = call(
        own.clone(),
        post("/api/v1/models/load", r#"{"model": "gemma-3-270m", "config": {"eval_batch_size": 256}}"#),
    )
    .await;
    assert!(status == StatusCode::BAD_REQUEST && body.contains("eval_batch_size"), "{status} {body}");
    let unload = format!(r#"{{"instance_id": "{id}"}}"#);
    let (status, body) = call(own.clone(), post("/api/v1/models/unload", unload.clone())).await;
    assert_eq!((status, json_of(&body)["instance_id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (status, _) = call(own, post("/api/v1/models/unload", unload)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Issue 27, item 2: the SSE body of a greedy completion, event by event, as a snapshot.
#[tokio::test]
async fn a_streamed_completion_snapshot() {
    let req = json!({"model": "gemma-3-270m", "prompt": "1, 2, 3, 4,", "max_tokens": 4, "temperature": 0,
        "repeat_penalty": 1, "stream": true});
    let (status, body) = call(state(), post("/v1/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    insta::assert_json_snapshot!(crate::sse_events(&body));
}

/// Issue 27, item 2: the SSE body of a chat completion, as a snapshot. The answer's words are
/// the chat template's and the model's business, so they are left out; the shape is the point.
#[tokio::test]
async fn a_streamed_chat_completion_snapshot() {
    let req = json!({"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3,
        "temperature": 0, "ignore_eos": true, "stream": true, "stream_options": {"include_usage": true}});
    let (status, body) = call(state(), post("/v1/chat/completions", req.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut events = crate::sse_events(&body);
    for event in &mut events {
        let choices = event.get_mut("choices").and_then(serde_json::Value::as_array_mut);
        for choice in choices.into_iter().flatten() {
            if choice["delta"]["content"].is_string() {
                choice["delta"]["content"] = json!("[text]");
            }
        }
    }
    insta::assert_json_snapshot!(events);
}

/// Issue 28: a forced call's bodies, as snapshots, whole and streamed. Its tool's one argument
/// has one value and one call is allowed, so the grammar's language is finite and the call the
/// same on any machine (1,000 tokens hold its longest spacing); ids and the completion's token
/// count (how the model spaced its JSON) are left out.
#[tokio::test]
async fn a_tool_call_snapshot() {
    let tool = json!({"type": "function", "function": {"name": "set_unit", "description": "Sets the unit",
        "parameters": {"type": "object", "properties": {"unit": {"enum": ["C"]}}, "required": ["unit"],
        "additionalProperties": false}}});
    let mut bodies = Vec::new();
    for stream in [false, true] {
        let req = json!({"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Use Celsius."}],
            "tools": [tool], "tool_choice": {"type": "function", "function": {"name": "set_unit"}},
            "parallel_tool_calls": false, "max_tokens": 1000, "temperature": 0, "stream": stream,
            "stream_options": {"include_usage": true}});
        let (status, body) = call(state(), post("/v1/chat/completions", req.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut events = if stream { crate::sse_events(&body) } else { vec![json_of(&body)] };
        for event in &mut events {
            crate::scrub(event);
            if let Some(usage) = event.get_mut("usage").filter(|u| u.is_object()) {
                usage["completion_tokens"] = json!("[n]");
                usage["total_tokens"] = json!("[n]");
            }
        }
        bodies.push(events);
    }
    insta::assert_json_snapshot!(bodies);
}

/// The shape of each API's stream where a model reasons (a grammar holds the default model to
/// `<think>ab</think>cd`), and of LM Studio's native chat loading a model: the events in order,
/// runs of deltas as one, and the final body.
#[tokio::test]
async fn reasoning_and_native_chat_stream_snapshot() {
    let grammar = r#"root ::= "<think>" "ab" "</think>" "cd""#;
    let kinds = |events: &[Value], kind_of: &dyn Fn(&Value) -> String| {
        let mut kinds: Vec<String> = events.iter().map(kind_of).collect();
        kinds.dedup();
        kinds
    };
    let responses = json!({"model": "gemma-3-270m", "input": "Sky?", "max_output_tokens": 20, "temperature": 0,
        "grammar": grammar, "stream": true});
    let (status, body) = call(state(), post("/v1/responses", responses.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = crate::sse_events(&body);
    let responses_kinds = kinds(&events, &|e| e["type"].as_str().unwrap_or_default().to_owned());
    let mut completed = events.last().map(|e| e["response"]["output"].clone()).unwrap_or_default();
    crate::scrub(&mut completed);

    let messages = json!({"model": "gemma-3-270m", "max_tokens": 20, "temperature": 0, "grammar": grammar,
        "stream": true, "messages": [{"role": "user", "content": "Sky?"}]});
    let (status, body) = call(state(), post("/v1/messages", messages.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = crate::sse_events(&body);
    let block = |e: &Value| {
        let detail = e["content_block"]["type"].as_str().or(e["delta"]["type"].as_str()).unwrap_or_default();
        format!("{} {detail}", e["type"].as_str().unwrap_or_default()).trim_end().to_owned()
    };
    let messages_kinds = kinds(&events, &block);

    let native = json!({"model": "gemma-3-270m", "input": "Hi", "max_output_tokens": 3, "temperature": 0,
        "stream": true});
    let own = AppState::new(crate::lms_client(1), None);
    let (status, body) = call(own, post("/api/v1/chat", native.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = crate::sse_events(&body);
    let native_kinds = kinds(&events, &|e| e["type"].as_str().unwrap_or_default().to_owned());
    let mut end = events.last().map(|e| e["result"].clone()).unwrap_or_default();
    end["output"][0]["content"] = json!("[text]");
    end["stats"]["total_output_tokens"] = json!("[n]");
    insta::assert_json_snapshot!(json!({
        "responses": responses_kinds, "responses_output": completed,
        "messages": messages_kinds,
        "native_chat": native_kinds, "native_chat_end": end,
    }));
}

/// llama-server's `/tokenize` and `/detokenize` (issue 29, item 3), against the library's own
/// tokenizer on the same model.
#[tokio::test]
async fn tokenize_and_detokenize_as_llama_server_does() {
    let text = "Hello world, héllo <start_of_turn>";
    let with_bos = crate::lms_client(1).llm("gemma-3-270m").expect("loads").tokenize(text).expect("tokenizes");
    let ask = |body: Value| async move {
        let (status, reply) = call(state(), post("/tokenize", body.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        json_of(&reply)["tokens"].clone()
    };
    let plain = ask(json!({"model": "gemma-3-270m", "content": text})).await;
    assert_eq!(plain, json!(with_bos[1..]), "no BOS unless asked, as llama-server");
    let special = ask(json!({"model": "gemma-3-270m", "content": text, "add_special": true})).await;
    assert_eq!(special, json!(with_bos));
    let literal = ask(json!({"model": "gemma-3-270m", "content": text, "parse_special": false})).await;
    assert!(literal.as_array().map(Vec::len) > plain.as_array().map(Vec::len), "the marker as text is more tokens");
    let pieces = ask(json!({"model": "gemma-3-270m", "content": text, "with_pieces": true})).await;
    let joined: String = pieces.as_array().into_iter().flatten().filter_map(|t| t["piece"].as_str()).collect();
    assert_eq!(joined, text, "{pieces}");
    assert_eq!(pieces[0]["id"], plain[0]);

    let (status, reply) =
        call(state(), post("/detokenize", json!({"model": "gemma-3-270m", "tokens": plain}).to_string())).await;
    assert_eq!((status, json_of(&reply)["content"].as_str()), (StatusCode::OK, Some(text)), "{reply}");
    for (path, body, names) in [
        ("/detokenize", json!({"model": "gemma-3-270m", "tokens": [-1]}), "-1"),
        ("/detokenize", json!({"model": "gemma-3-270m", "tokens": [1], "extra": 1}), "extra"),
        ("/tokenize", json!({"model": "gemma-3-270m", "content": "x", "n_probs": 1}), "n_probs"),
    ] {
        let (status, reply) = call(state(), post(path, body.to_string())).await;
        assert!(status == StatusCode::BAD_REQUEST && reply.contains(names), "{path} {body}: {status} {reply}");
    }
    let (status, _) =
        call(state(), post("/tokenize", json!({"model": "no-such-model", "content": "x"}).to_string())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Issue 31 (the web app's progress bar): asked for, a stream reports prompt processing as
/// `prompt_progress` events, strictly rising to 1.0, all before the first text; not asked for, it
/// has none (OpenAI's clients never see them).
#[tokio::test]
async fn streams_report_prompt_progress_when_asked() {
    let prompt = "The lighthouse keeper counted the steps. ".repeat(150); // more than one batch
    let body = |progress: bool| {
        json!({"model": "gemma-3-270m", "prompt": prompt, "max_tokens": 2, "stream": true,
            "prompt_progress": progress})
        .to_string()
    };
    let (status, text) = call(state(), post("/api/v0/completions", body(true))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // Each event: its `event:` name (none for the completion's own chunks) and its data.
    let events: Vec<(Option<&str>, &str)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: "));
            (name, e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or(""))
        })
        .collect();
    let leading = events.iter().take_while(|(name, _)| *name == Some("prompt_progress")).count();
    let progress: Vec<f64> =
        events[..leading].iter().map(|(_, data)| json_of(data)["progress"].as_f64().expect("a number")).collect();
    assert!(progress.len() >= 2, "{text}");
    assert!(progress.windows(2).all(|w| w[0] < w[1]) && progress.last() == Some(&1.0), "{progress:?}");
    assert!(events[leading..].iter().all(|(name, _)| name.is_none()), "progress after the text: {text}");
    let (_, plain) = call(state(), post("/api/v0/completions", body(false))).await;
    assert!(!plain.contains("prompt_progress") && plain.contains("data: [DONE]"), "{plain}");
}

/// Issue 31 (the chat's load progress): asked for, a stream whose model is not loaded opens at
/// once and reports the load as `load_progress` events (rising, the last 1.0 with the load's time)
/// before the prediction; once loaded, a stream has none. A model that does not exist is still a
/// 404 before any stream, and clients that do not ask never see the events.
#[tokio::test]
async fn streams_report_their_models_load_when_asked() {
    let state = AppState::new(crate::lms_client(1), None); // its own client: nothing loaded
    let body = |model: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
            "stream": true, "load_progress": true})
        .to_string()
    };
    let (status, text) = call(state.clone(), post("/v1/chat/completions", body("gemma-3-270m"))).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let events: Vec<(Option<&str>, Value)> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty() && !e.contains("[DONE]"))
        .map(|e| {
            (
                e.lines().find_map(|l| l.strip_prefix("event: ")),
                json_of(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("")),
            )
        })
        .collect();
    let leading = events.iter().take_while(|(name, _)| *name == Some("load_progress")).count();
    let progress: Vec<f64> = events[..leading].iter().map(|(_, d)| d["progress"].as_f64().expect("a number")).collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]) && progress.last() == Some(&1.0), "{progress:?}");
    let took = events[leading - 1].1["load_time_seconds"].as_f64().expect("the load's time");
    assert!(took > 0.0, "{text}");
    let chunks = &events[leading..];
    assert!(chunks.iter().all(|(name, d)| name.is_none() && d["object"] == "chat.completion.chunk"), "{text}");
    assert!(chunks.last().is_some_and(|(_, d)| d["choices"][0]["finish_reason"].is_string()), "{text}");

    let (_, again) = call(state.clone(), post("/v1/chat/completions", body("gemma-3-270m"))).await;
    assert!(!again.contains("load_progress") && again.contains("data: [DONE]"), "{again}");
    let (status, missing) = call(state, post("/v1/chat/completions", body("no-such-model"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
}
