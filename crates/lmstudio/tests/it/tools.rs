//! Tool calls on the real model (issue 28). The default model is a 270M base model whose template
//! has no tool syntax, so tools take the generic form: the answer is JSON the engine constrains.
//! A required or named call then always parses and its arguments validate against the tool's
//! schema, whatever the seed; what the model chooses with `auto` is not judged, only that its
//! answer is a call or text, never call syntax shown as text.

use lmstudio as lms;
use serde_json::Value;

use crate::model;

fn weather() -> lms::Tool {
    // Every length bounded, so a call never outruns `maxTokens` below.
    let parameters = serde_json::from_str(
        r#"{"type": "object", "properties": {
            "city": {"type": "string", "minLength": 1, "maxLength": 20},
            "unit": {"enum": ["C", "F"]}},
            "required": ["city", "unit"], "additionalProperties": false}"#,
    )
    .expect("schema");
    lms::Tool::new("get_weather", "The weather now in a city", parameters)
}

fn clock() -> lms::Tool {
    let parameters = serde_json::from_str(
        r#"{"type": "object", "properties": {"zone": {"type": "string", "maxLength": 12}}, "required": ["zone"]}"#,
    )
    .expect("schema");
    lms::Tool::new("get_time", "The time now in a time zone", parameters)
}

fn chat() -> lms::Chat {
    let mut chat = lms::Chat::with_system_prompt("You help with the weather.");
    chat.add_user_message("What is the weather in Oslo?");
    chat
}

fn config(choice: lms::ToolChoice, seed: u32) -> lms::Config {
    lms::Config {
        tools: vec![weather(), clock()],
        tool_choice: Some(choice),
        parallel_tool_calls: Some(false),
        seed: Some(seed),
        max_tokens: Some(200),
        ..Default::default()
    }
}

fn validates(call: &lms::ToolCall, tool: &lms::Tool) {
    let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|e| panic!("{e}: {call:?}"));
    let validator = jsonschema::validator_for(&tool.parameters).expect("a valid schema");
    let errors: Vec<String> = validator.iter_errors(&arguments).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{call:?}: {errors:?}");
}

#[test]
fn a_named_call_is_made_with_arguments_that_validate() {
    for seed in 1..=3 {
        let r =
            model().respond(&chat(), config(lms::ToolChoice::Function("get_weather".into()), seed)).expect("responds");
        assert_eq!(r.stats.stop_reason, lms::StopReason::ToolCalls, "seed {seed}: {r:?}");
        assert_eq!(r.tool_calls.len(), 1, "seed {seed}: one call when not parallel");
        let call = &r.tool_calls[0];
        assert_eq!(call.name, "get_weather");
        assert!(call.id.starts_with("call_"), "{call:?}");
        validates(call, &weather());
        assert_eq!(r.content, "", "no call syntax as text");
    }
}

#[test]
fn a_required_call_streams_no_text_and_the_round_trip_goes_on() {
    let mut stream = model().respond_stream(&chat(), config(lms::ToolChoice::Required, 7)).expect("starts");
    let shown: String = stream.by_ref().map(|f| f.expect("a fragment").content).collect();
    let r = stream.result().expect("responds");
    assert_eq!(shown, "", "call syntax is never a fragment");
    assert_eq!(r.stats.stop_reason, lms::StopReason::ToolCalls);
    let call = r.tool_calls[0].clone();
    let tool = if call.name == "get_weather" { weather() } else { clock() };
    validates(&call, &tool);
    // The call and its result go back; the model answers as it chooses (a call or text).
    let mut chat = chat();
    chat.push(lms::ChatMessage::tool_calls("", vec![call.clone()]));
    chat.push(lms::ChatMessage::tool_result(&call.id, r#"{"temperature": 21}"#));
    let auto = lms::Config {
        tool_choice: Some(lms::ToolChoice::Auto),
        max_tokens: Some(60),
        ..config(lms::ToolChoice::Auto, 8)
    };
    let answer = model().respond(&chat, auto).expect("responds");
    match answer.stats.stop_reason {
        lms::StopReason::ToolCalls => answer.tool_calls.iter().for_each(|c| {
            serde_json::from_str::<Value>(&c.arguments).expect("JSON arguments");
        }),
        _ => assert!(!answer.content.contains("tool_calls"), "call syntax shown as text: {}", answer.content),
    }
}

#[test]
fn tools_are_checked_before_anything_runs() {
    let bad = |c: lms::Config| match model().respond(&chat(), c) {
        Err(lms::Error::InvalidConfig(m)) => m,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    assert!(bad(config(lms::ToolChoice::Function("nope".into()), 1)).contains("nope"));
    let twice = lms::Config { tools: vec![weather(), weather()], ..config(lms::ToolChoice::Auto, 1) };
    assert!(bad(twice).contains("get_weather"));
    let no_tools = lms::Config { tools: vec![], ..config(lms::ToolChoice::Required, 1) };
    assert!(bad(no_tools).contains("required"));
    let raw = model().complete("1, 2, 3,", config(lms::ToolChoice::Required, 1));
    assert!(matches!(raw, Err(lms::Error::InvalidConfig(m)) if m.contains("chat")));
    let both = lms::Config {
        structured: Some(lms::Structured::Json(Value::Object(Default::default()))),
        ..config(lms::ToolChoice::Auto, 1)
    };
    assert!(bad(both).contains("exclude"));
}

/// `act`: the first round's call is forced (named), the tool runs as a Rust function, its result
/// goes back, and the rounds end when the model answers without a call or the limit is reached.
#[test]
fn act_runs_the_calls_and_puts_their_results_back() {
    #[derive(serde::Deserialize)]
    struct Where {
        city: String,
        unit: String,
    }
    let ran = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&ran);
    let weather_fn = lms::FunctionTool::typed(weather(), move |w: Where| {
        seen.lock().expect("log").push((w.city.clone(), w.unit.clone()));
        Ok(format!("21 degrees {} in {}", w.unit, w.city))
    });
    let failing = lms::FunctionTool::new(clock(), |_| Err("the clock is broken".into()));
    let (mut messages, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    let config = lms::Config {
        tool_choice: Some(lms::ToolChoice::Function("get_weather".into())),
        ..config(lms::ToolChoice::Auto, 5)
    };
    let result = model()
        .act(&chat(), vec![weather_fn, failing])
        .config(config)
        .max_rounds(2)
        .on_message(|m| messages.push(m.clone()))
        .on_round_start(|r| starts.push(r))
        .on_round_end(|r| ends.push(r))
        .run()
        .expect("acts");
    assert!((1..=2).contains(&result.rounds), "{result:?}");
    assert_eq!(starts, (0..result.rounds).collect::<Vec<_>>());
    assert_eq!(ends, starts);
    let calls = ran.lock().expect("log").clone();
    assert!(!calls.is_empty(), "the forced call ran");
    assert!(calls.iter().all(|(city, unit)| !city.is_empty() && (unit == "C" || unit == "F")), "{calls:?}");
    // The chat holds what the rounds added, in order: the model's calls, then their results.
    let added = &result.chat.messages()[chat().messages().len()..];
    assert_eq!(added, &messages[..]);
    assert_eq!(added[0].role, "assistant");
    assert_eq!(added[0].tool_calls[0].name, "get_weather");
    assert_eq!(added[1].tool_call_id.as_deref(), Some(added[0].tool_calls[0].id.as_str()));
    assert!(added[1].content.starts_with("21 degrees"), "{:?}", added[1]);
    // A tool that fails tells the model why; one that is not there too.
    for m in added.iter().filter(|m| m.role == "tool") {
        let answered = added.iter().flat_map(|a| &a.tool_calls).find(|c| Some(&c.id) == m.tool_call_id.as_ref());
        match answered.map(|c| c.name.as_str()) {
            Some("get_time") => assert_eq!(m.content, "Error: the clock is broken"),
            Some("get_weather") => assert!(m.content.starts_with("21 degrees")),
            other => panic!("a result of no call: {other:?}"),
        }
    }
    assert!(matches!(model().act(&chat(), vec![]).run(), Err(lms::Error::InvalidConfig(_))));
}
