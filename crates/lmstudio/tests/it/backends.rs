//! Checks that every backend must pass alike: the embedded engine, the remote client talking to
//! our server in-process, and the remote-only build (no llama.cpp) talking to `lms server`. The
//! server crate's tests include this file too.

use std::sync::{Arc, Mutex};

use lmstudio as lms;

fn greedy(n: u32) -> lms::Config {
    lms::Config { max_tokens: Some(n), temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() }
}

/// Completion, streaming, callbacks, cancel, tokens and the typed errors, through `client`, whose
/// models load with 2,048 tokens of context; `name` labels the failures.
pub fn completes_alike(name: &str, client: &lms::Client) {
    let model = client.llm("gemma-3-270m").unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.identifier(), "gemma-3-270m", "{name}");
    assert_eq!(model.info().display_name, "Gemma 3 270m", "{name}");
    assert_eq!(client.default_llm().expect("default").identifier(), model.identifier(), "{name}");

    let r = model.complete("1, 2, 3,", greedy(6)).expect("completes");
    assert_eq!(r.content, " 4, 5,", "{name}");
    assert_eq!(r.stats.predicted_tokens_count, Some(6), "{name}");
    assert_eq!(r.stats.stop_reason, lms::StopReason::MaxPredictedTokensReached, "{name}");
    assert_eq!(r.model_info.model_key, "gemma-3-270m", "{name}");

    let stop = lms::Config { stop_strings: vec![" 6".into()], ..greedy(12) };
    let r = model.complete("1, 2, 3, 4,", stop).expect("completes");
    assert_eq!((r.content.as_str(), r.stats.stop_reason), (" 5,", lms::StopReason::StopStringFound), "{name}");

    // Structured output: the schema travels with the request and constrains every token.
    let schema = serde_json::json!({"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"], "additionalProperties": false});
    let config = lms::Config { structured: Some(lms::Structured::Json(schema)), ..greedy(40) };
    let r = model.complete("Is the sky blue? As JSON:", config).expect("completes");
    let answer: serde_json::Value = serde_json::from_str(&r.content).unwrap_or_else(|e| panic!("{name}: {e}: {r}"));
    assert!(answer["answer"] == "yes" || answer["answer"] == "no", "{name}: {r}");
    let bad = lms::Config { structured: Some(lms::Structured::Gbnf("root ::= nowhere".into())), ..greedy(4) };
    assert!(matches!(model.complete("x", bad), Err(lms::Error::InvalidConfig(_))), "{name}");

    // A chat: the model's template renders it (on the server, for the remote backend); the reply
    // is what completing the rendered prompt gives, and `on_message` adds it to the chat.
    let mut chat = lms::Chat::with_system_prompt("You count.");
    chat.add_user_message("1, 2, 3,");
    let rendered = model.apply_prompt_template(chat.messages()).expect("renders");
    let expected = model.complete(&rendered, greedy(5)).expect("completes").content;
    let appended = Arc::new(Mutex::new(None));
    let sink = Arc::clone(&appended);
    let reply = model
        .respond_stream(&chat, greedy(5))
        .expect("starts")
        .on_message(move |m| *sink.lock().expect("lock") = Some(m.clone()))
        .wait_for_result()
        .expect("responds");
    assert_eq!(reply.content, expected, "{name}");
    chat.append(appended.lock().expect("lock").as_ref().expect("on_message ran"));
    assert_eq!(
        chat.messages().last().map(|m| (m.role.as_str(), m.content.as_str())),
        Some(("assistant", expected.as_str()))
    );
    assert!(matches!(model.respond(&lms::Chat::new(), greedy(2)), Err(lms::Error::InvalidPrompt(_))), "{name}");

    // Streaming and callbacks.
    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&progress);
    let mut stream = model
        .complete_stream("1, 2, 3,", greedy(6))
        .expect("starts")
        .on_prompt_processing_progress(move |p| seen.lock().expect("lock").push(p));
    let text: String = (&mut stream).map(|f| f.expect("fragment").content).collect();
    assert_eq!(text, " 4, 5,", "{name}");
    assert_eq!(stream.result().expect("done").content, text, "{name}");
    let progress = progress.lock().expect("lock").clone();
    assert_eq!((progress.first(), progress.last()), (Some(&0.0), Some(&1.0)), "{name}: {progress:?}");

    // result() while running, then cancel: the prediction was cut short, so it was running
    // when result() answered.
    let mut stream = model.complete_stream("Once upon a time", greedy(500)).expect("starts");
    stream.next().expect("a fragment").expect("ok");
    assert!(matches!(stream.result(), Err(lms::Error::NotFinished)), "{name}");
    stream.cancel();
    let r = stream.wait_for_result().expect("a result");
    assert_eq!(r.stats.stop_reason, lms::StopReason::UserStopped, "{name}");
    assert!(r.stats.predicted_tokens_count.is_some_and(|n| n < 500), "{name}: {:?}", r.stats);

    // Tokens, errors.
    assert_eq!(model.count_tokens("1, 2, 3,").expect("counts"), 9, "{name}");
    assert_eq!(model.tokenize("1, 2, 3,").expect("tokenizes").len(), 9, "{name}");
    assert!(matches!(client.llm("no-such-model"), Err(lms::Error::ModelNotFound { .. })), "{name}");
    assert!(matches!(model.complete("", greedy(1)), Err(lms::Error::InvalidPrompt(_))), "{name}");
    let bad = lms::Config { temperature: Some(-1.0), ..Default::default() };
    assert!(matches!(model.complete("x", bad), Err(lms::Error::InvalidConfig(_))), "{name}");

    // ignore_eos reaches the engine: a C file that ends after its closing brace runs on.
    let program = "#include <stdio.h>\n\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n";
    let ends = model.complete(program, greedy(20)).expect("completes");
    assert_eq!((ends.content.as_str(), ends.stats.stop_reason), ("}\n", lms::StopReason::EosFound), "{name}");
    let runs_on = model.complete(program, lms::Config { ignore_eos: Some(true), ..greedy(20) }).expect("completes");
    assert_eq!(runs_on.stats.predicted_tokens_count, Some(20), "{name}");

    // Errors keep their variant and fields across the wire.
    let strict = lms::Config { context_overflow_policy: Some(lms::ContextOverflowPolicy::StopAtLimit), ..greedy(4) };
    match model.complete(&"word ".repeat(3000), strict) {
        Err(lms::Error::ContextOverflow { prompt_tokens, context_length: 2048 }) => {
            assert!(prompt_tokens > 2048, "{name}: {prompt_tokens}")
        }
        other => panic!("{name}: expected ContextOverflow, got {other:?}"),
    }
    // A handle to an instance that was unloaded.
    let config = lms::LoadConfig { parallel: Some(1), identifier: Some("short-lived".into()), ..Default::default() };
    let short_lived = client.load(lms::DEFAULT_MODEL_KEY, &config).expect("loads");
    client.unload("short-lived").expect("unloads");
    let gone = short_lived.complete("1, 2, 3,", greedy(2));
    assert!(matches!(gone, Err(lms::Error::ModelUnloaded)), "{name}: {gone:?}");
    match client.llm("no-such-model") {
        Err(lms::Error::ModelNotFound { query, candidates }) => {
            assert_eq!(query, "no-such-model", "{name}");
            assert!(candidates.iter().any(|c| c == "gemma-3-270m"), "{name}: {candidates:?}");
        }
        other => panic!("{name}: expected ModelNotFound, got {:?}", other.map(|m| m.info().clone())),
    }
}

/// Tools through `client`: a named call (held to its schema by a grammar, so any seed gives one)
/// that streams no text, and `act` running it as a Rust function with the result put back.
pub fn calls_tools_alike(name: &str, client: &lms::Client) {
    let model = client.llm("gemma-3-270m").unwrap_or_else(|e| panic!("{name}: {e}"));
    let parameters = serde_json::json!({"type": "object", "properties": {
        "city": {"type": "string", "minLength": 1, "maxLength": 20}, "unit": {"enum": ["C", "F"]}},
        "required": ["city", "unit"], "additionalProperties": false});
    let weather = lms::Tool::new("get_weather", "The weather now in a city", parameters);
    let mut chat = lms::Chat::new();
    chat.add_user_message("What is the weather in Oslo?");
    let config = lms::Config {
        tools: vec![weather.clone()],
        tool_choice: Some(lms::ToolChoice::Function("get_weather".into())),
        parallel_tool_calls: Some(false),
        seed: Some(1),
        max_tokens: Some(200),
        ..Default::default()
    };
    let fits = |arguments: &str| {
        let v: serde_json::Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{name}: {e}"));
        let o = v.as_object().unwrap_or_else(|| panic!("{name}: not an object: {v}"));
        let city = o["city"].as_str().map_or(0, |c| c.chars().count());
        assert!(o.len() == 2 && (1..=20).contains(&city) && (o["unit"] == "C" || o["unit"] == "F"), "{name}: {v}");
    };
    let mut stream = model.respond_stream(&chat, config.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shown: String = stream.by_ref().map(|f| f.expect("a fragment").content).collect();
    let r = stream.result().unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!((shown.as_str(), r.content.as_str()), ("", ""), "{name}: call syntax shown as text");
    assert_eq!(r.stats.stop_reason, lms::StopReason::ToolCalls, "{name}");
    assert_eq!(r.tool_calls.len(), 1, "{name}: {:?}", r.tool_calls);
    assert_eq!(r.tool_calls[0].name, "get_weather", "{name}");
    assert!(!r.tool_calls[0].id.is_empty(), "{name}");
    fits(&r.tool_calls[0].arguments);

    // `act`: the forced first round calls, the function runs, its result goes back in order.
    let ran = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&ran);
    let tool = lms::FunctionTool::new(weather, move |arguments| {
        log.lock().expect("log").push(arguments.to_owned());
        Ok("21 degrees".into())
    });
    let result =
        model.act(&chat, vec![tool]).config(config).max_rounds(2).run().unwrap_or_else(|e| panic!("{name}: {e}"));
    let ran = ran.lock().expect("log").clone();
    assert!(!ran.is_empty(), "{name}: the forced call ran");
    ran.iter().for_each(|a| fits(a));
    let added = &result.chat.messages()[chat.messages().len()..];
    assert_eq!((added[0].role.as_str(), added[0].tool_calls.len()), ("assistant", 1), "{name}: {added:?}");
    assert_eq!(added[1].tool_call_id.as_ref(), Some(&added[0].tool_calls[0].id), "{name}: {added:?}");
    assert_eq!(added[1].content, "21 degrees", "{name}");
}

/// Embeddings through `client` (the default model, mean-pooled): unit vectors of one width, an
/// input's vector the same alone or in a list, its tokens counted; `name` labels the failures.
/// Over LM Studio's protocol each input is one `embedString` call on the `/embedding` socket.
pub fn embeds_alike(name: &str, client: &lms::Client) {
    let model = client.embedding_model("gemma-3-270m").unwrap_or_else(|e| panic!("{name}: {e}"));
    let texts = ["The cat sat on the mat.", "Quantum chromodynamics describes the strong force."];
    let both = model.embed(&texts).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(both.vectors.len(), 2, "{name}");
    for v in &both.vectors {
        let norm: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        assert!(v.len() == both.vectors[0].len() && (norm - 1.0).abs() < 1e-4, "{name}: a unit vector");
    }
    let alone = model.embed(&texts[1..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let gap = alone.vectors[0].iter().zip(&both.vectors[1]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "{name}: alone vs in a list: {gap}");
    let llm = client.llm("gemma-3-270m").unwrap_or_else(|e| panic!("{name}: {e}"));
    let tokens: usize = texts.iter().map(|t| llm.tokenize(t).expect("tokenizes").len()).sum();
    assert_eq!(both.prompt_tokens, tokens, "{name}");
}
