//! The sampler's cost per token beside llama.cpp's sampler chain (what llama-server and
//! `llama_sampler_sample` run), on logits of a real model: the host work every generated token
//! waits for, which on a GPU is time the device sits idle (`lms-dev bench-sampling`).
//!
//! Not part of the API: compiled with the `benching` feature only.

use std::path::Path;
use std::time::Instant;

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::sampler::{Sampler, PENALTY_LAST_N};
use crate::types::config::{Config, ValidConfig};
use crate::types::error::{Error, Result};

/// Settings a row is measured with: its name and the config.
struct Setting {
    name: &'static str,
    config: Config,
}

/// The settings measured: greedy, LM Studio's defaults, top-k off (the whole vocabulary), and
/// min-p alone (a common recipe for llama.cpp).
fn settings() -> Vec<Setting> {
    vec![
        Setting {
            name: "greedy",
            config: Config { temperature: Some(0.0), repeat_penalty: Some(1.0), ..Default::default() },
        },
        Setting {
            name: "defaults (temp 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat 1.1)",
            config: Config::default(),
        },
        Setting {
            name: "top-k off (temp 0.8, top-p 0.95, min-p 0.05, repeat 1.1)",
            config: Config { top_k: Some(0), ..Default::default() },
        },
        Setting {
            name: "min-p alone (top-k off, top-p 1, min-p 0.05, temp 0.8)",
            config: Config { top_k: Some(0), top_p: Some(1.0), repeat_penalty: Some(1.0), ..Default::default() },
        },
    ]
}

/// One measurement: microseconds per token, the mean over the rounds.
pub struct Row {
    /// The setting's name.
    pub setting: &'static str,
    /// Vocabulary entries per token.
    pub vocab: usize,
    /// Ours: one pass over the logits, the rest on the top-k.
    pub ours_us: f64,
    /// llama.cpp's chain: a candidate entry per vocabulary entry, then penalties, top-k, top-p,
    /// min-p, temperature and the draw (or greedy).
    pub llama_us: f64,
    /// Copying the logits once on the host (the least any sampler that reads them all pays).
    pub copy_us: f64,
}

/// Rows of logits: the model's next-token logits after each position of `prompt`, computed on the
/// CPU.
pub fn real_logits(model_path: &Path, prompt: &str) -> Result<Vec<Vec<f32>>> {
    let backend = super::backend::backend()?;
    let params = LlamaModelParams::default().with_n_gpu_layers(0);
    let model = LlamaModel::load_from_file(backend, model_path, &params).map_err(|e| Error::Engine(e.to_string()))?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    // At most one batch, evaluated in one decode, in the engine's context shape.
    let n = tokens.len().min(super::rules::BATCH as usize);
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get() as u32);
    // Flash attention as the engine's default on the CPU.
    let attention = super::backend::Attention { flash: true, offload_kv_cache: true };
    let ctx_params = super::backend::context_params(n as u32 + 8, 1, threads, attention);
    let mut ctx = model.new_context(backend, ctx_params).map_err(|e| Error::Engine(e.to_string()))?;
    let mut batch = LlamaBatch::new(n, 1);
    for (i, &t) in tokens[..n].iter().enumerate() {
        batch.add(t, i as i32, &[0], true).map_err(|e| Error::Engine(e.to_string()))?;
    }
    super::compute::decode(&mut ctx, &mut batch).map_err(|e| Error::Engine(e.to_string()))?;
    Ok((0..n as i32).map(|i| ctx.get_logits_ith(i).to_vec()).collect())
}

/// Times each sampler over `rounds` tokens of every setting, on `rows` cut to `vocab` entries.
pub fn measure(rows: &[Vec<f32>], vocab: usize, rounds: usize) -> Result<Vec<Row>> {
    let rows: Vec<&[f32]> = rows.iter().map(|r| &r[..vocab.min(r.len())]).collect();
    let row = |i: usize| rows[i % rows.len()];
    let mut out = Vec::new();
    for setting in settings() {
        let c = setting.config.validate()?;
        let mut ours = Sampler::new(&c);
        let t = Instant::now();
        for i in 0..rounds {
            std::hint::black_box(ours.sample(row(i)));
        }
        let ours_us = per_token(t, rounds);
        let mut chain = llama_chain(&c, vocab);
        let mut data = Vec::with_capacity(vocab);
        let t = Instant::now();
        for i in 0..rounds {
            // As `llama_sampler_sample` does: a candidate array of the whole row, then the chain.
            data.clear();
            data.extend(row(i).iter().enumerate().map(|(id, &l)| LlamaTokenData::new(LlamaToken(id as i32), l, 0.0)));
            let mut array = LlamaTokenDataArray::new(std::mem::take(&mut data), false);
            array.apply_sampler(&mut chain);
            let token =
                array.selected_token().ok_or_else(|| Error::Engine("llama.cpp's chain chose nothing".into()))?;
            chain.accept(token);
            data = array.data;
            std::hint::black_box(token);
        }
        let llama_us = per_token(t, rounds);
        let mut copy = vec![0f32; vocab];
        let t = Instant::now();
        for i in 0..rounds {
            copy[..row(i).len()].copy_from_slice(row(i));
            std::hint::black_box(&copy);
        }
        let copy_us = per_token(t, rounds);
        out.push(Row { setting: setting.name, vocab: rows[0].len(), ours_us, llama_us, copy_us });
    }
    Ok(out)
}

/// llama.cpp's chain for `c`, in the order llama-server builds it.
fn llama_chain(c: &ValidConfig, vocab: usize) -> LlamaSampler {
    if c.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::penalties(
            vocab as i32,
            PENALTY_LAST_N,
            c.repeat_penalty,
            c.frequency_penalty,
            c.presence_penalty,
        ),
        LlamaSampler::top_k(c.top_k as i32),
        LlamaSampler::top_p(c.top_p, 1),
        LlamaSampler::min_p(c.min_p, 1),
        LlamaSampler::temp(c.temperature),
        LlamaSampler::dist(c.seed.unwrap_or(1)),
    ])
}

fn per_token(started: Instant, rounds: usize) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / rounds.max(1) as f64
}
