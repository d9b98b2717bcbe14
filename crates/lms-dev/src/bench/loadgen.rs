//! A small load generator for `lms-dev bench`: N streaming clients on an OpenAI `/v1/completions`
//! endpoint, timing every token. The same code drives our server and llama.cpp's `llama-server`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// What one streaming request saw.
#[derive(Debug, Clone)]
pub struct StreamTiming {
    /// When the request was sent, relative to the start of the run.
    pub started: Duration,
    /// Arrival time of each token event, relative to the start of the run.
    pub tokens: Vec<Duration>,
}

impl StreamTiming {
    fn ttft(&self) -> Option<Duration> {
        self.tokens.first().map(|t| *t - self.started)
    }
}

/// Summary of one load level.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LoadSummary {
    /// Concurrent clients.
    pub clients: usize,
    /// All tokens of all streams over the wall time from first request to last token.
    pub aggregate_tok_s: f64,
    /// Median over streams of tokens / (last token - first token).
    pub per_stream_tok_s: f64,
    /// Median time to first token, seconds.
    pub ttft_median_s: f64,
    /// 90th percentile time to first token, seconds.
    pub ttft_p90_s: f64,
    /// Longest gap between two tokens of one stream, seconds.
    pub max_gap_s: f64,
    /// Median gap between consecutive tokens, seconds.
    pub median_gap_s: f64,
    /// Over streams, the largest ratio of a stream's longest gap to its own median gap.
    pub worst_stream_stall: f64,
}

/// Sends one streaming completion and records when each event arrives.
fn stream_one(addr: SocketAddr, body: &str, t0: Instant) -> Result<StreamTiming> {
    let started = t0.elapsed();
    let mut sock = TcpStream::connect(addr).context("connecting")?;
    sock.set_nodelay(true)?;
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reader = BufReader::new(sock);
    let mut line = String::new();
    let mut tokens = Vec::new();
    while reader.read_line(&mut line)? > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            if data == "[DONE]" {
                break;
            }
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(data) {
                let text = v["choices"][0]["text"].as_str().unwrap_or_default();
                if !text.is_empty() || v["choices"][0]["finish_reason"].is_null() {
                    tokens.push(t0.elapsed());
                }
            }
        }
        line.clear();
    }
    Ok(StreamTiming { started, tokens })
}

/// Sends `body` as a JSON POST to `path` and returns the JSON answer (a body of known length).
pub(crate) fn post_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Result<serde_json::Value> {
    let body = body.to_string();
    let mut sock = TcpStream::connect(addr).context("connecting")?;
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    sock.read_to_string(&mut answer)?;
    let (head, rest) = answer.split_once("\r\n\r\n").context("no HTTP body")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    serde_json::from_str(rest).with_context(|| format!("{path}: not JSON: {rest}"))
}

/// Runs `clients` streams, the i-th starting `stagger * i` after the first, with the i-th of
/// `prompts` and of `max_tokens` (each taken round).
pub fn run(
    addr: SocketAddr,
    model: &str,
    prompts: &[String],
    max_tokens: &[u32],
    clients: usize,
    stagger: Duration,
) -> Result<Vec<StreamTiming>> {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|i| {
            let body = serde_json::json!({
                "model": model, "prompt": prompts[i % prompts.len()],
                "max_tokens": max_tokens[i % max_tokens.len()],
                "stream": true, "temperature": 0.8, "seed": i, "ignore_eos": true,
            })
            .to_string();
            std::thread::spawn(move || {
                std::thread::sleep(stagger * i as u32);
                stream_one(addr, &body, t0)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().map_err(|_| anyhow::anyhow!("client thread panicked"))?).collect()
}

/// The `p`-quantile of `v` (an element of it, no interpolation; NaN when empty).
pub(crate) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Figure by figure, the median of several runs' summaries.
pub fn median(runs: &[LoadSummary]) -> LoadSummary {
    let m = |f: fn(&LoadSummary) -> f64| percentile(runs.iter().map(f).collect(), 0.5);
    LoadSummary {
        clients: runs.first().map_or(0, |r| r.clients),
        aggregate_tok_s: m(|r| r.aggregate_tok_s),
        per_stream_tok_s: m(|r| r.per_stream_tok_s),
        ttft_median_s: m(|r| r.ttft_median_s),
        ttft_p90_s: m(|r| r.ttft_p90_s),
        max_gap_s: m(|r| r.max_gap_s),
        median_gap_s: m(|r| r.median_gap_s),
        worst_stream_stall: m(|r| r.worst_stream_stall),
    }
}

/// Aggregates the timings of one run.
pub fn summarize(runs: &[StreamTiming]) -> LoadSummary {
    let total: usize = runs.iter().map(|r| r.tokens.len()).sum();
    let first = runs.iter().map(|r| r.started).min().unwrap_or_default();
    let last = runs.iter().filter_map(|r| r.tokens.last()).max().copied().unwrap_or_default();
    let per_stream: Vec<f64> = runs
        .iter()
        .filter(|r| r.tokens.len() > 1)
        .map(|r| (r.tokens.len() - 1) as f64 / (r.tokens[r.tokens.len() - 1] - r.tokens[0]).as_secs_f64())
        .collect();
    let ttfts: Vec<f64> = runs.iter().filter_map(StreamTiming::ttft).map(|d| d.as_secs_f64()).collect();
    let gaps_of = |r: &StreamTiming| -> Vec<f64> { r.tokens.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect() };
    let worst_stream_stall = runs
        .iter()
        .map(gaps_of)
        .filter(|g| !g.is_empty())
        .map(|g| g.iter().copied().fold(0.0, f64::max) / percentile(g, 0.5))
        .fold(0.0, f64::max);
    let gaps: Vec<f64> = runs.iter().flat_map(gaps_of).collect();
    LoadSummary {
        clients: runs.len(),
        aggregate_tok_s: total as f64 / (last - first).as_secs_f64(),
        per_stream_tok_s: percentile(per_stream, 0.5),
        ttft_median_s: percentile(ttfts.clone(), 0.5),
        ttft_p90_s: percentile(ttfts, 0.9),
        max_gap_s: gaps.iter().copied().fold(0.0, f64::max),
        median_gap_s: percentile(gaps, 0.5),
        worst_stream_stall,
    }
}
