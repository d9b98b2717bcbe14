//! `lms-dev bench-embeddings`: embeddings per second and tokens per second for a batch of inputs
//! of about 100 tokens, through `/v1/embeddings`, ours beside llama.cpp's `llama-server
//! --embeddings` on the same model file and threads (bench/embeddings.md). The two servers take
//! turns, each round, so that a change in the host's speed hits both alike.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::load::{llama_server, ours, prompts, Server};
use super::loadgen::post_json;

/// Options of `lms-dev bench-embeddings`.
#[derive(Args)]
pub struct EmbeddingsArgs {
    /// The models, as the store names them (default: the default model).
    #[arg(long, short)]
    model: Vec<String>,
    /// CPU threads, for both servers.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Inputs in the request.
    #[arg(long, default_value_t = 256)]
    inputs: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// llama-server's slots (inputs it evaluates together).
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// The folder with llama.cpp's `llama-server` (`scripts/build-llama-tools server`).
    #[arg(long, default_value = "target/llama-tools/bin")]
    llama_tools: PathBuf,
    /// Write the table to this markdown file (e.g. `bench/embeddings.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

struct Row {
    model: String,
    server: &'static str,
    seconds: f64,
    tokens: u64,
    peak_rss_mib: f64,
}

/// Texts of about 100 tokens, each its own.
fn texts(n: usize) -> Vec<String> {
    prompts(2 * n).chunks(2).map(|pair| pair.concat()).collect()
}

/// One timed request of all `inputs`: seconds, prompt tokens.
fn measure(server: &Server, key: &str, inputs: &[String]) -> Result<(f64, u64)> {
    let started = Instant::now();
    let reply = post_json(
        server.addr(),
        "/v1/embeddings",
        &json!({"model": key, "input": inputs, "encoding_format": "float"}),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let vectors = reply["data"].as_array().context("no data")?.len();
    anyhow::ensure!(vectors == inputs.len(), "{vectors} vectors for {} inputs", inputs.len());
    Ok((seconds, reply["usage"]["prompt_tokens"].as_u64().unwrap_or(0)))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_model(query: &str, args: &EmbeddingsArgs, tool: &Path) -> Result<Vec<Row>> {
    let stored = lmstudio::ModelStore::from_env().resolve(query)?;
    let (path, key) = (stored.path.clone(), stored.key.clone());
    let us = ours(&path, &key, 1, args.threads, &[])?;
    // A decoder LLM names no pooling: mean, as ours pools it.
    let decoder = !stored.info.as_ref().is_ok_and(lmstudio::ModelInfo::is_embedding);
    let mut extra = vec![std::ffi::OsStr::new("--embeddings")];
    if decoder {
        extra.extend([std::ffi::OsStr::new("--pooling"), std::ffi::OsStr::new("mean")]);
    }
    let them = llama_server(tool, &path, &key, args.slots, args.threads, &extra)?;
    let inputs = texts(args.inputs);
    // A warm-up each: the weights paged in, the embedding context made.
    measure(&us, &key, &inputs[..4])?;
    measure(&them, &key, &inputs[..4])?;
    let (mut ours_s, mut theirs_s, mut tokens) = (Vec::new(), Vec::new(), (0, 0));
    for round in 0..args.repetitions {
        let fresh = texts(args.inputs); // new texts each round: no server keeps a cache of them
        let (s, t) = measure(&us, &key, &fresh)?;
        ours_s.push(s);
        tokens.0 = t;
        let (s, t) = measure(&them, &key, &fresh)?;
        theirs_s.push(s);
        tokens.1 = t;
        eprintln!("{key} round {round}: ours {:.2} s, llama-server {s:.2} s", ours_s[round]);
    }
    Ok(vec![
        Row {
            model: key.clone(),
            server: "lmstudio-rs",
            seconds: median(ours_s),
            tokens: tokens.0,
            peak_rss_mib: us.stop(),
        },
        Row {
            model: key,
            server: "llama-server",
            seconds: median(theirs_s),
            tokens: tokens.1,
            peak_rss_mib: them.stop(),
        },
    ])
}

/// Runs the bench and prints (and writes) the table.
pub fn run(args: &EmbeddingsArgs) -> Result<()> {
    let tool = args.llama_tools.join("llama-server");
    anyhow::ensure!(tool.exists(), "{} is missing: run scripts/build-llama-tools server", tool.display());
    let models = if args.model.is_empty() { vec![lmstudio::DEFAULT_MODEL_KEY.to_owned()] } else { args.model.clone() };
    let mut rows = Vec::new();
    for model in &models {
        rows.extend(bench_model(model, args, &tool)?);
    }
    let mut md = format!(
        "\n| model | server | {n} inputs, s (median of {r}) | embeddings/s | tokens/s | vs llama-server | peak RSS MiB |\n|---|---|---|---|---|---|---|\n",
        n = args.inputs,
        r = args.repetitions
    );
    for row in &rows {
        let theirs =
            rows.iter().find(|r| r.model == row.model && r.server == "llama-server").map_or(f64::NAN, |r| r.seconds);
        md += &format!(
            "| {} | {} | {:.2} | {:.1} | {:.0} | {:.2}x | {:.0} |\n",
            row.model,
            row.server,
            row.seconds,
            args.inputs as f64 / row.seconds,
            row.tokens as f64 / row.seconds,
            theirs / row.seconds,
            row.peak_rss_mib
        );
    }
    print!("{md}");
    if let Some(out) = &args.out {
        let head = format!(
            "# Embeddings: lmstudio-rs beside llama-server\n\n`lms-dev bench-embeddings` ({} threads each; llama-server with {} slots, `--embeddings`, mean pooling for a decoder; one `/v1/embeddings` request of {} inputs of about 100 tokens, new texts each round, the servers taking turns). `vs llama-server`: its time over ours (above 1: we are faster).\n",
            args.threads, args.slots, args.inputs
        );
        std::fs::write(out, head + &md)?;
    }
    Ok(())
}
