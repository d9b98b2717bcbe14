//! `lms bench`, part two: many streaming clients against `lms server` and, side by side, against
//! llama.cpp's `llama-server` with the same slots, context and threads, driven by the same client
//! code; plus `llama-batched-bench`, the engine's ceiling without HTTP or sampling.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::loadgen::{self, LoadSummary};

/// Tokens of context per slot, as in the reference measurements.
const CTX_PER_SLOT: usize = 1024;
const MAX_TOKENS: u32 = 128;

#[derive(Serialize, Clone)]
pub struct LoadRow {
    server: String,
    clients: usize,
    staggered: bool,
    summary: LoadSummary,
    peak_rss_mib: f64,
}

/// A server process under test; killed on drop.
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
    rss: Option<std::thread::JoinHandle<f64>>,
}

impl Server {
    /// The server's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
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

fn free_port() -> Result<u16> {
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
            let _ = write!(s, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
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

fn start(mut cmd: Command, port: u16) -> Result<Server> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting a server")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_healthy(addr, &mut child)?;
    let rss = Some(crate::bench::watch_peak_rss(child.id()));
    Ok(Server { child, addr, rss })
}

pub(crate) fn ours(model: &Path, slots: usize, threads: u32) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["server", "start", "--no-discovery-port", "--port", &port.to_string()])
        .args(["--parallel", &slots.to_string(), "--context-length", &CTX_PER_SLOT.to_string()])
        .args(["--threads", &threads.to_string(), "--model"])
        .arg(model);
    start(cmd, port)
}

fn llama_server(bin: &Path, model: &Path, slots: usize, threads: u32) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.arg("-m").arg(model).args(["--host", "127.0.0.1", "--port", &port.to_string(), "--no-webui"]).args([
        "-t",
        &threads.to_string(),
        "-np",
        &slots.to_string(),
        "-c",
        &(slots * CTX_PER_SLOT).to_string(),
    ]);
    start(cmd, port)
}

/// Distinct prompts of about 50 tokens, so no request shares more than a few tokens with another.
/// Each call gives new ones: a server's prompt cache (llama-server keeps past prompts in RAM and
/// restores them into any slot) must not turn a repeated measurement into a cache hit.
fn prompts(n: usize) -> Vec<String> {
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

fn measure(server: &Server, clients: usize, stagger: Duration) -> Result<LoadSummary> {
    // One warm-up request, so that both servers have paged the weights in.
    loadgen::run(server.addr, &prompts(1), 8, 1, Duration::ZERO)?;
    let runs = loadgen::run(server.addr, &prompts(clients), MAX_TOKENS, clients, stagger)?;
    Ok(loadgen::summarize(&runs))
}

fn median_summary(mut v: Vec<LoadSummary>) -> LoadSummary {
    v.sort_by(|a, b| a.aggregate_tok_s.total_cmp(&b.aggregate_tok_s));
    v[v.len() / 2].clone()
}

/// Starts a server with the given number of slots.
type StartServer<'a> = dyn Fn(usize) -> Result<Server> + 'a;

/// One server kind at one level: `rounds` runs, the median by aggregate throughput.
fn level(
    start_server: &StartServer<'_>,
    slots: usize,
    clients: usize,
    stagger: Duration,
    rounds: usize,
) -> Result<(LoadSummary, f64)> {
    let server = start_server(slots)?;
    let mut summaries = Vec::new();
    for _ in 0..rounds {
        summaries.push(measure(&server, clients, stagger)?);
    }
    let rss = server.stop();
    Ok((median_summary(summaries), rss))
}

/// `llama-batched-bench` decode speed (S_TG t/s) per batch size.
fn batched_bench(bin: &Path, model: &Path, threads: u32, sizes: &[usize]) -> Result<Vec<(usize, f64)>> {
    let npl: Vec<String> = sizes.iter().map(usize::to_string).collect();
    let ctx = sizes.iter().max().copied().unwrap_or(1) * CTX_PER_SLOT;
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-t", &threads.to_string(), "-c", &ctx.to_string(), "-b", "2048", "-ub", "512"])
        .args(["-npp", "64", "-ntg", &MAX_TOKENS.to_string(), "-npl", &npl.join(","), "--output-format", "jsonl"])
        .stderr(Stdio::null())
        .output()
        .context("running llama-batched-bench")?;
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let (Some(pl), Some(tg)) = (v["pl"].as_u64(), v["speed_tg"].as_f64()) {
                rows.push((pl as usize, tg));
            }
        }
    }
    Ok(rows)
}

/// Runs the load tests; returns the markdown tables and the rows.
pub fn run(
    model: &Path,
    clients: &[usize],
    threads: u32,
    tools: Option<&Path>,
    rounds: usize,
) -> Result<(String, Vec<LoadRow>)> {
    let rounds = rounds.max(1);
    let mut rows = Vec::new();
    let ours_start = |slots| ours(model, slots, threads);
    let llama_start = |slots| match tools {
        Some(t) => llama_server(&t.join("llama-server"), model, slots, threads),
        None => bail!("no llama-server"),
    };
    let mut servers: Vec<(&str, &StartServer<'_>)> = vec![("lms server", &ours_start)];
    if tools.is_some() {
        servers.push(("llama-server", &llama_start));
    }
    for &n in clients {
        for (name, start) in &servers {
            eprintln!("load: {name}, {n} clients");
            let (summary, rss) = level(*start, n, n, Duration::ZERO, rounds)?;
            rows.push(LoadRow { server: name.to_string(), clients: n, staggered: false, summary, peak_rss_mib: rss });
        }
    }
    let stagger_n = clients.iter().max().copied().unwrap_or(8);
    for (name, start) in &servers {
        eprintln!("load: {name}, {stagger_n} staggered clients");
        let (summary, rss) = level(*start, stagger_n, stagger_n, Duration::from_millis(500), 1)?;
        rows.push(LoadRow {
            server: name.to_string(),
            clients: stagger_n,
            staggered: true,
            summary,
            peak_rss_mib: rss,
        });
    }
    let ceiling = match tools {
        Some(t) => batched_bench(&t.join("llama-batched-bench"), model, threads, clients)?,
        None => Vec::new(),
    };
    Ok((tables(&rows, &ceiling), rows))
}

fn tables(rows: &[LoadRow], ceiling: &[(usize, f64)]) -> String {
    let mut s = "\n| server | clients | aggregate tok/s | per-stream tok/s | TTFT median s | TTFT p90 s | peak RSS MiB | vs llama-server | vs batched-bench ceiling |\n|---|---|---|---|---|---|---|---|---|\n".to_owned();
    for r in rows.iter().filter(|r| !r.staggered) {
        let theirs = rows.iter().find(|o| o.server == "llama-server" && o.clients == r.clients && !o.staggered);
        let vs = match theirs {
            Some(t) if r.server != "llama-server" => {
                format!("{:.2}", r.summary.aggregate_tok_s / t.summary.aggregate_tok_s)
            }
            _ => String::new(),
        };
        let ceil = ceiling
            .iter()
            .find(|(n, _)| *n == r.clients)
            .map(|(_, c)| format!("{:.2} of {c:.0}", r.summary.aggregate_tok_s / c))
            .unwrap_or_default();
        let m = &r.summary;
        s += &format!(
            "| {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.0} | {vs} | {ceil} |\n",
            r.server, r.clients, m.aggregate_tok_s, m.per_stream_tok_s, m.ttft_median_s, m.ttft_p90_s, r.peak_rss_mib
        );
    }
    s += "\n| staggered arrivals (0.5 s apart) | clients | TTFT median s | TTFT p90 s | median token gap ms | longest token gap ms | longest / median |\n|---|---|---|---|---|---|---|\n";
    for r in rows.iter().filter(|r| r.staggered) {
        let m = &r.summary;
        s += &format!(
            "| {} | {} | {:.3} | {:.3} | {:.1} | {:.1} | {:.1} |\n",
            r.server,
            r.clients,
            m.ttft_median_s,
            m.ttft_p90_s,
            m.median_gap_s * 1000.0,
            m.max_gap_s * 1000.0,
            m.max_gap_s / m.median_gap_s
        );
    }
    s
}
