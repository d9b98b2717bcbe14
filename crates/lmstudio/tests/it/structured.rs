//! Structured output on the real model: whatever the seed, the text is in the language asked for
//! (a JSON schema's instances, checked with a JSON Schema validator; a GBNF grammar's sentences),
//! unless `maxTokens` cuts it, which the stop reason says.

use lmstudio as lms;
use serde_json::{json, Value};

use crate::{exactly, model};

fn person_schema() -> Value {
    // Every length bounded, so no instance outruns `maxTokens` below.
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 20},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "city": {"enum": ["Paris", "Rome", "Berlin"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
            "address": {
                "type": "object",
                "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                "required": ["zip"],
                "additionalProperties": false
            }
        },
        "required": ["name", "age", "city", "tags", "address"],
        "additionalProperties": false
    })
}

fn structured(s: lms::Structured, seed: u32, max_tokens: u32) -> lms::Config {
    lms::Config { structured: Some(s), seed: Some(seed), max_tokens: Some(max_tokens), ..Default::default() }
}

#[test]
fn json_output_validates_against_its_schema() {
    let schema = person_schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    for seed in 1..=4 {
        let config = structured(lms::Structured::Json(schema.clone()), seed, 1000);
        let r = model().complete("A person, as JSON:", config).expect("completes");
        assert_eq!(r.stats.stop_reason, lms::StopReason::EosFound, "seed {seed}: {}", r.content);
        let value: Value =
            serde_json::from_str(&r.content).unwrap_or_else(|e| panic!("seed {seed}: {e}: {}", r.content));
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "seed {seed}: {}: {errors:?}", r.content);
    }
}

#[test]
fn gbnf_output_is_a_sentence_of_the_grammar() {
    let grammar = "root ::= \"Colors: \" color (\", \" color){0,3} \".\"\ncolor ::= \"red\" | \"green\" | \"blue\"\n";
    for seed in 1..=4 {
        let r = model()
            .complete("My favourite colors.", structured(lms::Structured::Gbnf(grammar.into()), seed, 200))
            .expect("completes");
        let list = r.content.strip_prefix("Colors: ").and_then(|l| l.strip_suffix('.'));
        let colors: Vec<&str> = list.map(|l| l.split(", ").collect()).unwrap_or_default();
        assert!(
            (1..=4).contains(&colors.len()) && colors.iter().all(|c| ["red", "green", "blue"].contains(c)),
            "seed {seed}: {:?}",
            r.content
        );
        assert_eq!(r.stats.stop_reason, lms::StopReason::EosFound, "seed {seed}");
    }
}

/// With the end of text banned (`ignore_eos`), a finished sentence ends the prediction: the
/// grammar allows nothing more.
#[test]
fn a_finished_sentence_ends_the_prediction_even_without_an_end_token() {
    let config =
        lms::Config { structured: Some(lms::Structured::Gbnf("root ::= \"yes\" | \"no\"".into())), ..exactly(50) };
    let r = model().complete("Is the sky blue? Answer:", config).expect("completes");
    assert!(["yes", "no"].contains(&r.content.as_str()), "{:?}", r.content);
    assert_eq!(r.stats.stop_reason, lms::StopReason::EosFound);
}

#[test]
fn max_tokens_cuts_structured_output_and_says_so() {
    let r = model()
        .complete("A person, as JSON:", structured(lms::Structured::Json(person_schema()), 1, 3))
        .expect("completes");
    assert_eq!(r.stats.stop_reason, lms::StopReason::MaxPredictedTokensReached);
    assert!(r.content.starts_with('{') && serde_json::from_str::<Value>(&r.content).is_err(), "{:?}", r.content);
}

#[test]
fn bad_grammars_and_schemas_are_invalid_config() {
    let bad = [
        lms::Structured::Gbnf("root ::= undefined-rule".into()),
        lms::Structured::Gbnf("start ::= \"x\"".into()),
        lms::Structured::Gbnf("root ::= \"unclosed".into()),
        lms::Structured::Gbnf("   ".into()),
        lms::Structured::Json(json!({"$ref": "#/$defs/missing"})),
        lms::Structured::Json(json!("a string")),
        lms::Structured::Json(json!(false)),
    ];
    for s in bad {
        let config = lms::Config { structured: Some(s.clone()), ..exactly(5) };
        match model().complete("x", config) {
            Err(lms::Error::InvalidConfig(m)) => assert!(m.contains("structured"), "{s:?}: {m}"),
            other => panic!("{s:?}: expected InvalidConfig, got {other:?}"),
        }
    }
    // The model still serves.
    assert!(model().complete("1, 2,", exactly(2)).is_ok());
}
