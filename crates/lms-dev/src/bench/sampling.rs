//! `lms-dev bench-sampling`: what choosing a token costs per token, ours beside llama.cpp's sampler
//! chain, on a real model's logits at Qwen2.5's vocabulary (152,064) and Gemma 3's (262,144):
//! host time that a GPU waits through on every token (bench/sampling.md).

use anyhow::{Context, Result};
use clap::Args;
use lmstudio::benching;

use super::loadgen::percentile;

/// Options of `lms-dev bench-sampling`.
#[derive(Args)]
pub struct SamplingArgs {
    /// The model whose logits are sampled (default: the default model, 262,144 entries).
    #[arg(long, short)]
    model: Option<String>,
    /// Tokens sampled per measurement.
    #[arg(long, default_value_t = 2000)]
    rounds: usize,
    /// Measurements; medians are reported.
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
    /// A decode time per token to relate the cost to, in ms (default: 4.13, a 7B model at
    /// Q4_K_M on an H100, 242 tok/s).
    #[arg(long, default_value_t = 4.13)]
    decode_ms: f64,
    /// Write the table to this markdown file (e.g. `bench/sampling.md`).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// Qwen2.5's vocabulary: the rows are cut to it for the second size.
const QWEN_VOCAB: usize = 152_064;

const PROMPT: &str = "The history of the harbour town begins with the fishermen who settled by the river mouth. \
    Over the centuries the town grew, traders arrived from the south, and a market was held every week in the \
    square before the church. In the winter of the great storm";

pub fn run(args: SamplingArgs) -> Result<()> {
    anyhow::ensure!(args.rounds >= 1 && args.repetitions >= 1, "--rounds and --repetitions must be at least 1");
    let store = lmstudio::ModelStore::from_env();
    let name = match &args.model {
        Some(m) => m.clone(),
        None => {
            store.ensure_default_model(&mut |l| eprintln!("{l}"))?;
            lmstudio::DEFAULT_MODEL_KEY.into()
        }
    };
    let stored = store.resolve(&name)?;
    let rows = benching::real_logits(&stored.path, PROMPT)?;
    let full = rows.first().map_or(0, Vec::len);
    anyhow::ensure!(full > 0, "the model gave no logits");
    let mut sizes = vec![full];
    if full > QWEN_VOCAB {
        sizes.insert(0, QWEN_VOCAB);
    }
    let mut md = format!(
        "# Sampling cost per token\n\nWritten by `lms-dev bench-sampling --out bench/sampling.md`: the next-token logits \
         of {n} positions of a prompt on {model} (vocabulary {full}), cut to the first {QWEN_VOCAB} entries for \
         Qwen2.5's size; {rounds} tokens per measurement, medians of {reps}, microseconds per token, one thread. \
         Ours reads the logits once and keeps the top-k (`engine/sampler.rs`); llama.cpp's chain (what \
         llama-server and `llama_sampler_sample` run) builds a candidate for every vocabulary entry, then \
         penalties, top-k, top-p, min-p, temperature and the draw. \"copy\" is one host copy of the row, the least \
         any sampler that reads it all pays. \"decode share\" is ours over a {decode} ms decode (`--decode-ms`): \
         the speed a GPU keeps while the host samples, were nothing overlapped.\n\n",
        n = rows.len(),
        model = stored.key,
        rounds = args.rounds,
        reps = args.repetitions,
        decode = args.decode_ms,
    );
    md += "| setting | vocabulary | ours µs | llama.cpp chain µs | copy µs | llama.cpp / ours | decode share |\n\
           |---|---|---|---|---|---|---|\n";
    for &vocab in &sizes {
        let mut runs = Vec::new();
        for rep in 0..args.repetitions {
            eprintln!("vocabulary {vocab}, measurement {}/{}", rep + 1, args.repetitions);
            runs.push(benching::measure(&rows, vocab, args.rounds)?);
        }
        for (i, first) in runs[0].iter().enumerate() {
            let median = |f: fn(&benching::Row) -> f64| percentile(runs.iter().map(|r| f(&r[i])).collect(), 0.5);
            let (ours, llama, copy) = (median(|r| r.ours_us), median(|r| r.llama_us), median(|r| r.copy_us));
            let share = args.decode_ms / (args.decode_ms + ours / 1e3);
            md += &format!(
                "| {} | {} | {ours:.1} | {llama:.1} | {copy:.1} | {:.1} | {share:.3} |\n",
                first.setting,
                first.vocab,
                llama / ours
            );
        }
    }
    println!("{md}");
    if let Some(out) = args.out {
        std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
