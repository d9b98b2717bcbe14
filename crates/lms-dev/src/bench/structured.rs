//! `lms-dev bench-structured`: decode speed with structured output against the same number of
//! tokens without, and what compiling a grammar costs on first use (bench/structured.md).

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::loadgen::percentile;

/// Options of `lms-dev bench-structured`.
#[derive(Args)]
pub struct StructuredArgs {
    /// The model (default: the default model).
    #[arg(long, short)]
    model: Option<String>,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Seeds per case; medians are reported.
    #[arg(long, default_value_t = 5)]
    repetitions: u32,
    /// Write the table to this markdown file (e.g. `bench/structured.md`).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

struct Case {
    name: &'static str,
    structured: lmstudio::Structured,
    config: lmstudio::Config,
}

fn cases() -> Vec<Case> {
    // A list of records: long enough to measure, every length bounded.
    let schema = json!({
        "type": "object",
        "properties": {"people": {"type": "array", "minItems": 3, "maxItems": 6, "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 30},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "city": {"enum": ["Paris", "Rome", "Berlin", "Madrid"]},
                "bio": {"type": "string", "maxLength": 80}
            },
            "required": ["name", "age", "city", "bio"], "additionalProperties": false
        }}},
        "required": ["people"], "additionalProperties": false
    });
    let grammar = "root ::= line{4,8}\nline ::= [A-Z] [a-z]{2,12} \",\" [0-9]{1,3} \",\" (\"yes\" | \"no\") \"\\n\"\n";
    let sampled = lmstudio::Config { max_tokens: Some(400), ..Default::default() };
    vec![
        Case {
            name: "JSON schema, default sampling",
            structured: lmstudio::Structured::Json(schema.clone()),
            config: sampled.clone(),
        },
        Case {
            name: "JSON schema, greedy",
            structured: lmstudio::Structured::Json(schema.clone()),
            config: lmstudio::Config { temperature: Some(0.0), ..sampled.clone() },
        },
        Case {
            name: "JSON schema, top-k off (whole vocabulary)",
            structured: lmstudio::Structured::Json(schema),
            config: lmstudio::Config { top_k: Some(0), ..sampled.clone() },
        },
        Case {
            name: "GBNF (CSV lines), default sampling",
            structured: lmstudio::Structured::Gbnf(grammar.into()),
            config: sampled,
        },
    ]
}

struct Row {
    name: &'static str,
    tokens: f64,
    constrained: f64,
    free: f64,
}

/// A forced call (issue 28): `respond` with a named tool, which the engine holds to the call's
/// grammar (the default model's template has no tool syntax: the generic JSON form), against the
/// same chat answered freely for as many tokens.
fn tool_call_row(model: &lmstudio::Llm, repetitions: u32) -> Result<Row> {
    let weather = lmstudio::Tool::new(
        "get_weather",
        "The weather now in a city",
        json!({"type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
            "unit": {"enum": ["C", "F"]}, "days": {"type": "integer", "minimum": 1, "maximum": 14}},
            "required": ["city", "unit", "days"], "additionalProperties": false}),
    );
    let mut chat = lmstudio::Chat::new();
    chat.add_user_message("What will the weather be in Oslo, Paris and Rome this week?");
    let (mut tokens, mut constrained, mut free) = (Vec::new(), Vec::new(), Vec::new());
    for seed in 1..=repetitions {
        let config = lmstudio::Config {
            seed: Some(seed),
            max_tokens: Some(400),
            tools: vec![weather.clone()],
            tool_choice: Some(lmstudio::ToolChoice::Function("get_weather".into())),
            ..Default::default()
        };
        let r = model.respond(&chat, config.clone())?;
        let n = r.stats.predicted_tokens_count.unwrap_or(0) as u32;
        let tps = r.stats.tokens_per_second.context("no tokens per second")?;
        let same = lmstudio::Config {
            tools: Vec::new(),
            tool_choice: None,
            max_tokens: Some(n.max(1)),
            ignore_eos: Some(true),
            ..config
        };
        let f = model.respond(&chat, same)?.stats.tokens_per_second.context("no tokens per second")?;
        eprintln!("forced tool call seed {seed}: {n} tokens ({} calls), {tps:.1} vs {f:.1} tok/s", r.tool_calls.len());
        tokens.push(f64::from(n));
        constrained.push(tps);
        free.push(f);
    }
    Ok(Row {
        name: "Forced tool call (respond, a named tool)",
        tokens: percentile(tokens, 0.5),
        constrained: percentile(constrained, 0.5),
        free: percentile(free, 0.5),
    })
}

pub fn run(args: StructuredArgs) -> Result<()> {
    let model = super::load_one_slot(&lmstudio::ModelStore::from_env(), args.model.as_deref(), args.threads, None)?;
    let prompt = "Here is the data, as requested:\n";

    // First use on a fresh model: the vocabulary's prefix tree and the grammar; then the cache.
    let first_case = &cases()[0];
    let config =
        lmstudio::Config { max_tokens: Some(1), structured: Some(first_case.structured.clone()), ..Default::default() };
    let submit_ms = |config: &lmstudio::Config| -> Result<f64> {
        let started = Instant::now();
        let stream = model.complete_stream(prompt, config.clone())?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        stream.wait_for_result()?;
        Ok(ms)
    };
    let first_use = submit_ms(&config)?;
    let cached = submit_ms(&config)?;
    let plain = submit_ms(&lmstudio::Config { structured: None, ..config.clone() })?;
    let fresh_schema =
        lmstudio::Structured::Json(json!({"type": "object", "properties": {"other": {"type": "number"}}}));
    let new_grammar = submit_ms(&lmstudio::Config { structured: Some(fresh_schema), ..config })?;

    let mut rows = Vec::new();
    for case in cases() {
        let (mut tokens, mut constrained, mut free) = (Vec::new(), Vec::new(), Vec::new());
        for seed in 1..=args.repetitions {
            let config =
                lmstudio::Config { seed: Some(seed), structured: Some(case.structured.clone()), ..case.config.clone() };
            let r = model.complete(prompt, config.clone())?;
            let n = r.stats.predicted_tokens_count.unwrap_or(0) as u32;
            let tps = r.stats.tokens_per_second.context("no tokens per second")?;
            // The same number of tokens, unconstrained (the end of text banned so that it runs).
            let same =
                lmstudio::Config { structured: None, max_tokens: Some(n.max(1)), ignore_eos: Some(true), ..config };
            let f = model.complete(prompt, same)?.stats.tokens_per_second.context("no tokens per second")?;
            eprintln!("{} seed {seed}: {n} tokens, {tps:.1} vs {f:.1} tok/s", case.name);
            tokens.push(f64::from(n));
            constrained.push(tps);
            free.push(f);
        }
        rows.push(Row {
            name: case.name,
            tokens: percentile(tokens, 0.5),
            constrained: percentile(constrained, 0.5),
            free: percentile(free, 0.5),
        });
    }

    rows.push(tool_call_row(&model, args.repetitions)?);

    let mut md = format!(
        "# Structured output speed\n\nWritten by `lms-dev bench-structured --repetitions {reps} --out bench/structured.md`: \
         model {model}, {threads} threads, the prompt {prompt:?}, medians of {reps} seeds. Each structured prediction \
         is followed by one of the same number of tokens without constraint (end of text banned), so that both \
         decode alike; the ratio is the target (>= 0.8).\n\n",
        reps = args.repetitions,
        model = model.info().model_key,
        threads = args.threads,
    );
    md += "| case | tokens (median) | tok/s constrained | tok/s same tokens, free | ratio |\n|---|---|---|---|---|\n";
    for r in &rows {
        md += &format!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.2} |\n",
            r.name,
            r.tokens,
            r.constrained,
            r.free,
            r.constrained / r.free
        );
    }
    md += &format!(
        "\nSubmitting a prediction (tokenize, compile, queue), ms: first structured use on a fresh model {first_use:.1} \
         (the vocabulary's prefix tree and the grammar), the same schema again {cached:.1} (cached), a new schema \
         {new_grammar:.1}, no schema {plain:.1}.\n"
    );
    println!("{md}");
    if let Some(out) = args.out {
        std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
