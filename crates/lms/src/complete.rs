//! `lms complete`: a raw prompt completed with a local model; the text streams to stdout, the
//! stats go to stderr (or the whole result as JSON).

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result};
use clap::Args;

use crate::loading::load_model;

#[derive(Args)]
pub struct CompleteArgs {
    /// The prompt; `-` reads it from stdin.
    prompt: String,
    /// The model (key, path or loaded identifier); default: the default model, fetched if missing.
    #[arg(long, short)]
    model: Option<String>,
    /// Most tokens to predict.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Top-k sampling.
    #[arg(long)]
    top_k: Option<u32>,
    /// Top-p sampling.
    #[arg(long)]
    top_p: Option<f32>,
    /// Min-p sampling.
    #[arg(long)]
    min_p: Option<f32>,
    /// Repeat penalty (1 = off).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Presence penalty.
    #[arg(long)]
    presence_penalty: Option<f32>,
    /// A preset (`lms preset ls`) filling in the settings not given here.
    #[arg(long)]
    preset: Option<String>,
    /// Frequency penalty.
    #[arg(long)]
    frequency_penalty: Option<f32>,
    /// Sampler seed.
    #[arg(long)]
    seed: Option<u32>,
    /// Speculative decoding: `ngram` drafts tokens from the prompt and the text so far (faster on
    /// text that repeats; the same text).
    #[arg(long, value_name = "ngram|off")]
    speculative: Option<lmstudio::Speculation>,
    /// Speculative decoding with a draft model: the key of a smaller model of the same family
    /// (the same tokenizer), loaded along (LM Studio's `draftModel`).
    #[arg(long, value_name = "KEY")]
    draft_model: Option<String>,
    /// Stop before this string (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Constrain the output to JSON valid under the JSON Schema in this file.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    schema: Option<std::path::PathBuf>,
    /// Constrain the output to the language of the GBNF grammar in this file (start rule `root`).
    #[arg(long, value_name = "FILE")]
    grammar: Option<std::path::PathBuf>,
    /// Context length to load the model with.
    #[arg(long)]
    context_length: Option<u32>,
    /// CPU threads.
    #[arg(long)]
    threads: Option<u32>,
    /// Put the model's layers on these llama.cpp RPC workers (`lms rpc-worker`; `host:port,...`).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    rpc: Vec<String>,
    /// Print the whole result as JSON (LM Studio's field names) instead of streaming text.
    #[arg(long)]
    json: bool,
}

/// `--schema FILE` (JSON) or `--grammar FILE` (GBNF) as structured output.
fn structured(
    schema: Option<&std::path::Path>,
    grammar: Option<&std::path::Path>,
) -> Result<Option<lmstudio::Structured>> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    if let Some(p) = schema {
        let schema = serde_json::from_str(&read(p)?).with_context(|| format!("{} is not JSON", p.display()))?;
        return Ok(Some(lmstudio::Structured::Json(schema)));
    }
    grammar.map(|p| Ok(lmstudio::Structured::Gbnf(read(p)?))).transpose()
}

/// Runs `lms complete`.
pub fn run(args: CompleteArgs) -> Result<()> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the prompt from stdin")?;
        s
    } else {
        args.prompt.clone()
    };
    let config = lmstudio::Config {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        stop_strings: args.stop.clone(),
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        seed: args.seed,
        speculation: args.speculative,
        draft_model: args.draft_model.clone(),
        preset: args.preset.clone(),
        structured: structured(args.schema.as_deref(), args.grammar.as_deref())?,
        ..Default::default()
    };
    config.validate()?;
    let load = lmstudio::LoadConfig {
        context_length: args.context_length,
        cpu_threads: args.threads,
        parallel: Some(1),
        rpc: args.rpc.clone(),
        ..Default::default()
    };
    let model = load_model(args.model.as_deref(), &load)?;
    let mut stream = model.complete_stream(&prompt, config)?;
    if std::io::stderr().is_terminal() && !args.json {
        let bar = indicatif::ProgressBar::new(1000).with_style(
            indicatif::ProgressStyle::with_template("processing prompt {bar:30} {percent}%").expect("valid template"),
        );
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        stream = stream.on_prompt_processing_progress(move |p| {
            bar.set_position((p * 1000.0) as u64);
            if p >= 1.0 {
                bar.finish_and_clear();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    for fragment in &mut stream {
        let fragment = fragment?;
        if !args.json {
            out.write_all(fragment.content.as_bytes())?;
            out.flush()?;
        }
    }
    let result = stream.result()?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
        return Ok(());
    }
    writeln!(out)?;
    let s = &result.stats;
    eprintln!(
        "model: {} | prompt tokens: {} | predicted tokens: {} | time to first token: {:.3}s | {:.1} tok/s | stop: {}{}",
        result.model_info.display_name,
        s.prompt_tokens_count.unwrap_or(0),
        s.predicted_tokens_count.unwrap_or(0),
        s.time_to_first_token_sec.unwrap_or(0.0),
        s.tokens_per_second.unwrap_or(0.0),
        s.stop_reason,
        s.stop_string.as_ref().map(|x| format!(" ({x:?})")).unwrap_or_default(),
    );
    if let Some(d) = &s.drafts {
        eprintln!(
            "drafts ({}): {} drafted, {} accepted, {} rejected, {} ignored",
            d.used_draft_model_key,
            d.total_draft_tokens_count,
            d.accepted_draft_tokens_count,
            d.rejected_draft_tokens_count,
            d.ignored_draft_tokens_count
        );
    }
    Ok(())
}
