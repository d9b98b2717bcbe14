//! `lms-dev bench`, part two: many streaming clients against `lms server` and, side by side, against
//! llama.cpp's `llama-server` with the same slots, context and threads, driven by the same client
//! code; plus `llama-batched-bench`, the engine's ceiling without HTTP or sampling.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::loadgen::{self, LoadSummary};

/// Tokens of context per slot, as in the reference measurements.
const CTX_PER_SLOT: usize = 1024;
const MAX_TOKENS: u32 = 128;

/// What the clients of one measurement do.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// All start at once with distinct short prompts.
    Together,
    /// One starts every 0.5 s.
    Staggered,
    /// All start at once with prompts that share a long prefix (agents with one system prompt).
    SharedPrefix,
    /// All start at once and ask for answers of different lengths, so that streams end one by
    /// one while others go on.
    MixedLengths,
}

#[derive(Serialize, Clone)]
pub struct LoadRow {
    server: String,
    clients: usize,
    scenario: Scenario,
    summary: LoadSummary,
    peak_rss_mib: f64,
}

/// A server process under test; killed on drop.
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    /// What requests name as their model.
    model: String,
    rss: Option<std::thread::JoinHandle<f64>>,
}

impl Server {
    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What requests name as their model.
    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(mut self) -> f64 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.rss.take().and_then(|h| h.join().ok()).unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn wait_healthy(addr: SocketAddr, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("server exited early: {status}");
        }
        if let Ok(mut s) = TcpStream::connect(addr) {
            use std::io::{Read, Write};
            let _ = write!(s, "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("server did not become healthy")
}

pub(crate) fn start(mut cmd: Command, port: u16, model: &str) -> Result<Server> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting a server")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_healthy(addr, &mut child)?;
    let rss = Some(super::rss::watch_peak_rss(child.id()));
    Ok(Server { child, addr, model: model.to_owned(), rss })
}

/// Our server with the model at `model` loaded; it answers to `key`.
pub(crate) fn ours(model: &Path, key: &str, slots: usize, threads: u32, extra: &[String]) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(lms_bin()?);
    cmd.args(["server", "start", "--no-discovery-port", "--port", &port.to_string()])
        .args(["--parallel", &slots.to_string(), "--context-length", &CTX_PER_SLOT.to_string()])
        .args(["--threads", &threads.to_string()])
        // Prompts warm from an earlier run would be a head start llama-server does not get.
        .arg("--no-prompt-cache-dir")
        .args(extra)
        .arg("--model")
        .arg(model);
    start(cmd, port, key)
}

/// llama.cpp's `llama-server` with the model at `model` (answering to `key`), `slots` slots of
/// [`CTX_PER_SLOT`] tokens, and `extra` arguments.
pub(crate) fn llama_server(
    bin: &Path,
    model: &Path,
    key: &str,
    slots: usize,
    threads: u32,
    extra: &[&std::ffi::OsStr],
) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(extra);
    cmd.arg("-m").arg(model).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-webui"]).args([
        "-t",
        &threads.to_string(),
        "-np",
        &slots.to_string(),
        "-c",
        &(slots * CTX_PER_SLOT).to_string(),
    ]);
    start(cmd, port, key)
}

/// Distinct prompts of about 50 tokens, so no request shares more than a few tokens with another.
/// Each call gives new ones: a server's prompt cache (llama-server keeps past prompts in RAM and
/// restores them into any slot) must not turn a repeated measurement into a cache hit.
pub(crate) fn prompts(n: usize) -> Vec<String> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    (0..n)
        .map(|i| {
            format!(
                "Story {call}-{i}. The old lighthouse keeper climbed the stairs every evening, counting the steps \
                 and listening to the waves, until one night in the year {} he saw a light far out at sea that",
                1800 + i * 7 + call * 61
            )
        })
        .collect()
}

/// Prompts of about 750 tokens that share all but their last few, new for every call (as
/// [`prompts`] are).
fn shared_prefix_prompts(n: usize) -> Vec<String> {
    let prefix: String = prompts(16).concat();
    (0..n).map(|i| format!("{prefix} Question {i}: what did the keeper see?")).collect()
}

/// Tokens generated per request in the shared-prefix scenario: it measures prompt handling.
const SHARED_PREFIX_MAX_TOKENS: u32 = 16;

/// Answer lengths of the mixed-lengths scenario for `clients` clients: from [`MIXED_SHORTEST`] to
/// `2 * MAX_TOKENS - MIXED_SHORTEST` evenly, [`MAX_TOKENS`] on average, in an order in which
/// neighbours differ.
fn mixed_lengths(clients: usize) -> Vec<u32> {
    let spread = 2 * (MAX_TOKENS - MIXED_SHORTEST);
    let steps = clients.saturating_sub(1).max(1) as u32;
    (0..clients as u32).map(|i| MIXED_SHORTEST + spread * ((i * 5) % clients as u32) / steps).collect()
}

/// The shortest answer of the mixed-lengths scenario.
const MIXED_SHORTEST: u32 = 32;

fn measure(server: &Server, clients: usize, scenario: Scenario) -> Result<LoadSummary> {
    // One warm-up request, so that both servers have paged the weights in.
    loadgen::run(server.addr, &server.model, &prompts(1), &[8], 1, Duration::ZERO)?;
    let (prompts, max_tokens, stagger) = match scenario {
        Scenario::Together => (prompts(clients), vec![MAX_TOKENS], Duration::ZERO),
        Scenario::Staggered => (prompts(clients), vec![MAX_TOKENS], Duration::from_millis(500)),
        Scenario::SharedPrefix => (shared_prefix_prompts(clients), vec![SHARED_PREFIX_MAX_TOKENS], Duration::ZERO),
        Scenario::MixedLengths => (prompts(clients), mixed_lengths(clients), Duration::ZERO),
    };
    Ok(loadgen::summarize(&loadgen::run(server.addr, &server.model, &prompts, &max_tokens, clients, stagger)?))
}

/// Starts a server with the given number of slots.
type StartServer<'a> = dyn Fn(usize) -> Result<Server> + 'a;

/// One level: every server started with `clients` slots, then `rounds` rounds in which each server
/// is measured in turn, so that a change in the host's speed hits all of them alike. Reports the
/// median of each figure.
fn level(
    servers: &[(&str, &StartServer<'_>)],
    clients: usize,
    scenario: Scenario,
    rounds: usize,
) -> Result<Vec<LoadRow>> {
    let running = servers.iter().map(|(_, start)| start(clients)).collect::<Result<Vec<_>>>()?;
    let mut runs = vec![Vec::new(); running.len()];
    for _ in 0..rounds {
        for (server, runs) in running.iter().zip(&mut runs) {
            runs.push(measure(server, clients, scenario)?);
        }
    }
    Ok(running
        .into_iter()
        .zip(servers)
        .zip(runs)
        .map(|((server, (name, _)), runs)| LoadRow {
            server: name.to_string(),
            clients,
            scenario,
            summary: loadgen::median(&runs),
            peak_rss_mib: server.stop(),
        })
        .collect())
}

/// What `llama-batched-bench` measured at one batch size.
#[derive(Serialize, Clone, Copy)]
pub struct Ceiling {
    /// Parallel sequences.
    clients: usize,
    /// Decode tokens/s (S_TG): all sequences generating, no prompts.
    decode_tok_s: f64,
    /// Generated tokens over the time of prompts and generation: the load test's workload
    /// (prompts of [`CEILING_PROMPT`] tokens, [`MAX_TOKENS`] generated) without HTTP or sampling.
    workload_tok_s: f64,
}

/// Prompt tokens per sequence in the ceiling run: about the load test's prompts.
const CEILING_PROMPT: usize = 48;

/// Runs `llama-batched-bench` at each batch size.
fn batched_bench(bin: &Path, model: &Path, threads: u32, sizes: &[usize]) -> Result<Vec<Ceiling>> {
    let npl: Vec<String> = sizes.iter().map(usize::to_string).collect();
    let ctx = sizes.iter().max().copied().unwrap_or(1) * CTX_PER_SLOT;
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-t", &threads.to_string(), "-c", &ctx.to_string(), "-b", "2048", "-ub", "512"])
        .args(["-npp", &CEILING_PROMPT.to_string(), "-ntg", &MAX_TOKENS.to_string()])
        .args(["-npl", &npl.join(","), "--output-format", "jsonl"])
        .stderr(Stdio::null())
        .output()
        .context("running llama-batched-bench")?;
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let (Some(pl), Some(tg), Some(t)) = (v["pl"].as_u64(), v["speed_tg"].as_f64(), v["t"].as_f64()) {
                let workload_tok_s = pl as f64 * f64::from(MAX_TOKENS) / t;
                rows.push(Ceiling { clients: pl as usize, decode_tok_s: tg, workload_tok_s });
            }
        }
    }
    Ok(rows)
}

/// Everything the load tests measured.
#[derive(Serialize)]
pub struct LoadResults {
    rows: Vec<LoadRow>,
    ceiling: Vec<Ceiling>,
}

/// Runs the load tests; returns the markdown tables and the results.
pub fn run(
    model: &Path,
    key: &str,
    clients: &[usize],
    threads: u32,
    tools: Option<&Path>,
    rounds: usize,
    scenarios: &[Scenario],
) -> Result<(String, LoadResults)> {
    let rounds = rounds.max(1);
    let mut rows = Vec::new();
    let ours_start = |slots| ours(model, key, slots, threads, &[]);
    let no_fa = ["--flash-attention=off".to_owned()];
    let ours_no_fa_start = |slots| ours(model, key, slots, threads, &no_fa);
    let llama_start = |slots| match tools {
        Some(t) => llama_server(&t.join("llama-server"), model, key, slots, threads, &[]),
        None => bail!("no llama-server"),
    };
    let mut servers: Vec<(&str, &StartServer<'_>)> =
        vec![("lms server", &ours_start), ("lms server --flash-attention=off", &ours_no_fa_start)];
    if tools.is_some() {
        servers.push(("llama-server", &llama_start));
    }
    let most = clients.iter().max().copied().unwrap_or(8);
    let mut levels: Vec<(usize, Scenario)> = clients.iter().map(|&n| (n, Scenario::Together)).collect();
    levels.push((most, Scenario::Staggered));
    levels.push((most.min(4), Scenario::SharedPrefix));
    levels.push((most, Scenario::MixedLengths));
    levels.retain(|(_, scenario)| scenarios.contains(scenario));
    for (n, scenario) in levels {
        eprintln!("load: {n} clients, {}", serde_json::to_string(&scenario)?);
        rows.extend(level(&servers, n, scenario, rounds)?);
    }
    // The same llama.cpp as ours when scripts/build-llama-tools built it, else the tools' commit.
    let ceiling = match tools {
        Some(t) => {
            let same_commit = t.join("llama-batched-bench-crate");
            let bin = if same_commit.exists() { same_commit } else { t.join("llama-batched-bench") };
            batched_bench(&bin, model, threads, clients)?
        }
        None => Vec::new(),
    };
    Ok((tables(&rows, &ceiling), LoadResults { rows, ceiling }))
}

fn tables(rows: &[LoadRow], ceiling: &[Ceiling]) -> String {
    let of = |scenario| rows.iter().filter(move |r| r.scenario == scenario);
    // Row `r`'s `figure` over llama-server's at the same scenario and clients.
    let vs = |r: &LoadRow, figure: fn(&LoadSummary) -> f64| {
        rows.iter()
            .find(|o| o.scenario == r.scenario && o.clients == r.clients && o.server == "llama-server")
            .filter(|_| r.server != "llama-server")
            .map(|t| format!("{:.2}", figure(&r.summary) / figure(&t.summary)))
            .unwrap_or_default()
    };
    let mut s = String::new();
    // A scenario not run leaves its table out.
    let mut section = |head: String, body: String| {
        if !body.is_empty() {
            s += &head;
            s += &body;
        }
    };
    let head = "\n| server | clients | aggregate tok/s | per-stream tok/s | TTFT median s | TTFT p90 s | peak RSS MiB | vs llama-server | vs batched-bench: decode only | vs batched-bench: prompts + decode |\n|---|---|---|---|---|---|---|---|---|---|\n".to_owned();
    let mut body = String::new();
    for r in of(Scenario::Together) {
        let vs = vs(r, |m| m.aggregate_tok_s);
        let (decode, workload) = ceiling
            .iter()
            .find(|c| c.clients == r.clients)
            .map(|c| {
                let of = |ceil: f64| format!("{:.2} of {ceil:.0}", r.summary.aggregate_tok_s / ceil);
                (of(c.decode_tok_s), of(c.workload_tok_s))
            })
            .unwrap_or_default();
        let m = &r.summary;
        body += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.0} | {vs} | {decode} | {workload} |\n",
            r.server, r.clients, m.aggregate_tok_s, m.per_stream_tok_s, m.ttft_median_s, m.ttft_p90_s, r.peak_rss_mib
        );
    }
    section(head, std::mem::take(&mut body));
    let head = "\n| staggered arrivals (0.5 s apart) | clients | TTFT median s | TTFT p90 s | median token gap ms | longest token gap ms | longest / median | worst stream: longest / its median |\n|---|---|---|---|---|---|---|---|\n".to_owned();
    for r in of(Scenario::Staggered) {
        let m = &r.summary;
        body += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
            r.server,
            r.clients,
            m.ttft_median_s,
            m.ttft_p90_s,
            m.median_gap_s * 1000.0,
            m.max_gap_s * 1000.0,
            m.max_gap_s / m.median_gap_s,
            m.worst_stream_stall
        );
    }
    section(head, std::mem::take(&mut body));
    let head = format!(
        "\n| shared ~750-token prefix, all at once, {SHARED_PREFIX_MAX_TOKENS} tokens each | clients | TTFT median s | TTFT p90 s | vs llama-server (TTFT median) |\n|---|---|---|---|---|\n"
    );
    for r in of(Scenario::SharedPrefix) {
        let m = &r.summary;
        let vs = vs(r, |m| m.ttft_median_s);
        body += &format!("| {} | {} | {:.3} | {:.3} | {vs} |\n", r.server, r.clients, m.ttft_median_s, m.ttft_p90_s);
    }
    section(head, std::mem::take(&mut body));
    let head = format!(
        "\n| answers of {MIXED_SHORTEST} to {} tokens, all at once | clients | aggregate tok/s | TTFT median s | vs llama-server (aggregate) |\n|---|---|---|---|---|\n",
        2 * MAX_TOKENS - MIXED_SHORTEST
    );
    for r in of(Scenario::MixedLengths) {
        let m = &r.summary;
        let vs = vs(r, |m| m.aggregate_tok_s);
        body +=
            &format!("| {} | {} | {:.1} | {:.3} | {vs} |\n", r.server, r.clients, m.aggregate_tok_s, m.ttft_median_s);
    }
    section(head, body);
    s
}

/// The `lms` binary the server benchmarks start: `$LMS_BIN`, else the one beside this binary.
pub(crate) fn lms_bin() -> std::io::Result<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("LMS_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(format!("lms{}", std::env::consts::EXE_SUFFIX)))
}
