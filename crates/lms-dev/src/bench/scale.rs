//! `lms-dev bench-scale`: beyond one machine, on loopback (bench/scale.md; issue 30, item 6).
//! - A model split over two `lms rpc-worker` processes against the same model in one process:
//!   load time, decode tok/s, and whether the greedy text is the same; llama.cpp's own
//!   `rpc-server` and `llama-server --rpc`, from one source tree, as the reference rows.
//! - Replicas behind HAProxy (deploy/haproxy/haproxy.cfg) and SGLang's model gateway (`smg`),
//!   prefix affinity against round robin:
//!   tenants with their own long system prompts, several turns each, interleaved; the replicas'
//!   prompt-cache hit rate from their counters, time to first token, requests per replica.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::json;

use super::load::{free_port, llama_server, lms_bin, ours, start, Server};
use super::loadgen::{percentile, post_json};

/// Options of `lms-dev bench-scale`.
#[derive(Args)]
pub struct ScaleArgs {
    /// CPU threads: the one process's, each worker's, each replica's.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Tokens each greedy completion of the RPC part predicts.
    #[arg(long, default_value_t = 64)]
    tokens: u32,
    /// Tenants of the routing part, each with its own system prompt.
    #[arg(long, default_value_t = 8)]
    tenants: usize,
    /// Replicas behind the router.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Turns of each tenant's conversation.
    #[arg(long, default_value_t = 4)]
    turns: usize,
    /// Only the RPC part, or only the routing part.
    #[arg(long, value_parser = ["rpc", "routing"])]
    only: Option<String>,
    /// The folder with llama.cpp's `llama-server` and `rpc-server` (`scripts/build-llama-tools rpc`).
    #[arg(long, default_value = "target/llama-tools/bin")]
    llama_tools: PathBuf,
    /// SGLang's model gateway (`pip install smg`), measured beside HAProxy when present.
    #[arg(long, default_value = "target/smg-venv/bin/smg")]
    smg: Option<PathBuf>,
    /// Write the tables to this markdown file (e.g. `bench/scale.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The greedy prompts of the RPC part.
const PROMPTS: [&str; 3] = ["The history of the printing press", "fn main() {\n    let", "1, 1, 2, 3, 5, 8,"];

/// A worker process (ours or llama.cpp's) on a loopback port; killed on drop.
struct Worker {
    child: Child,
    endpoint: String,
}

impl Worker {
    fn start(mut command: Command, port: u16) -> Result<Self> {
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("starting a worker")?;
        let mut worker = Self { child, endpoint: format!("127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&worker.endpoint).is_err() {
            if let Some(status) = worker.child.try_wait()? {
                bail!("the worker exited: {status}");
            }
            anyhow::ensure!(Instant::now() < deadline, "the worker never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(worker)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RPC-part row: how the model ran, its load time, decode rate and greedy texts.
struct RpcRow {
    /// `lmstudio-rs` or `llama.cpp`: rows compare with their own family's one-process row.
    family: &'static str,
    setup: String,
    load_s: f64,
    tok_s: f64,
    texts: Vec<String>,
}

/// The greedy completions of [`PROMPTS`] on `server`: texts and the median decode rate. `ours`
/// picks the endpoint (LM Studio's REST v0 has the stats; llama-server's `/completion` its timings).
fn complete_all(server: &Server, key: &str, tokens: u32, ours: bool) -> Result<(Vec<String>, f64)> {
    let (mut texts, mut rates) = (Vec::new(), Vec::new());
    for prompt in PROMPTS {
        if ours {
            let body = json!({"model": key, "prompt": prompt, "max_tokens": tokens, "temperature": 0});
            let reply = post_json(server.addr(), "/api/v0/completions", &body)?;
            texts.push(reply["choices"][0]["text"].as_str().context("no text")?.to_owned());
            rates.push(reply["stats"]["tokens_per_second"].as_f64().context("no rate")?);
        } else {
            let body = json!({"prompt": prompt, "n_predict": tokens, "temperature": 0, "cache_prompt": false});
            let reply = post_json(server.addr(), "/completion", &body)?;
            texts.push(reply["content"].as_str().context("no text")?.to_owned());
            rates.push(reply["timings"]["predicted_per_second"].as_f64().context("no rate")?);
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok((texts, rates[rates.len() / 2]))
}

fn rpc_part(args: &ScaleArgs) -> Result<Vec<RpcRow>> {
    let stored = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY)?;
    let (path, key) = (stored.path.clone(), stored.key.clone());
    let threads = args.threads.to_string();
    let ours_worker = || -> Result<Worker> {
        let port = free_port()?;
        let mut command = Command::new(lms_bin()?);
        command.args(["rpc-worker", "--port", &port.to_string(), "--threads", &threads]);
        Worker::start(command, port)
    };
    let mut rows = Vec::new();
    let mut run = |setup: &str, start: &dyn Fn() -> Result<Server>, is_ours: bool| -> Result<()> {
        let family = if is_ours { "lmstudio-rs" } else { "llama.cpp" };
        let started = Instant::now();
        let server = start()?;
        let load_s = started.elapsed().as_secs_f64();
        let (texts, tok_s) = complete_all(&server, &key, args.tokens, is_ours)?;
        eprintln!("{setup}: load {load_s:.2} s, {tok_s:.1} tok/s");
        rows.push(RpcRow { family, setup: setup.to_owned(), load_s, tok_s, texts });
        Ok(())
    };
    run("lmstudio-rs, one process", &|| ours(&path, &key, 1, args.threads, &[]), true)?;
    {
        let (a, b) = (ours_worker()?, ours_worker()?);
        let rpc = vec!["--rpc".to_owned(), format!("{},{}", a.endpoint, b.endpoint)];
        run("lmstudio-rs, 2 `lms rpc-worker`", &|| ours(&path, &key, 1, args.threads, &rpc), true)?;
    }
    {
        let a = ours_worker()?;
        let rpc = vec!["--rpc".to_owned(), a.endpoint.clone()];
        run("lmstudio-rs, 1 `lms rpc-worker`", &|| ours(&path, &key, 1, args.threads, &rpc), true)?;
    }
    let tool = args.llama_tools.join("llama-server");
    let rpc_server = args.llama_tools.join("rpc-server");
    if !(tool.exists() && rpc_server.exists()) {
        eprintln!("{} or rpc-server is missing (scripts/build-llama-tools rpc): no reference rows", tool.display());
        return Ok(rows);
    }
    run("llama-server, one process", &|| llama_server(&tool, &path, &key, 1, args.threads, &[]), false)?;
    let theirs_worker = || -> Result<Worker> {
        let port = free_port()?;
        let mut command = Command::new(&rpc_server);
        command.args(["-p", &port.to_string(), "-t", &threads]);
        Worker::start(command, port)
    };
    let (a, b) = (theirs_worker()?, theirs_worker()?);
    let endpoints = format!("{},{}", a.endpoint, b.endpoint);
    let extra = [
        std::ffi::OsStr::new("--rpc"),
        std::ffi::OsStr::new(&endpoints),
        std::ffi::OsStr::new("-ngl"),
        std::ffi::OsStr::new("99"),
    ];
    run("llama-server --rpc, 2 `rpc-server`", &|| llama_server(&tool, &path, &key, 1, args.threads, &extra), false)?;
    Ok(rows)
}

/// The first character where two texts differ (`None`: the same).
fn first_difference(a: &str, b: &str) -> Option<usize> {
    let same = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    (a != b).then_some(same)
}

fn rpc_table(rows: &[RpcRow], args: &ScaleArgs) -> String {
    let mut md = format!(
        "\n## A model split over RPC workers\n\nThe default model, {t} threads for the one process and for each worker, {n} greedy tokens for each of {p} prompts. Load: from the server's start to its first healthy answer (the workers already running). Decode: the median of the three completions' rates. Same text: prompts whose greedy text is the same as the same server's in one process, and where the first differs.\n\n| setup | load s | decode tok/s | same text as one process |\n|---|---|---|---|\n",
        t = args.threads,
        n = args.tokens,
        p = PROMPTS.len()
    );
    for row in rows {
        let alone = rows.iter().find(|r| r.setup.contains("one process") && r.family == row.family);
        let same = match alone {
            Some(a) if std::ptr::eq(a, row) => "(itself)".to_owned(),
            Some(a) => {
                let diffs: Vec<Option<usize>> =
                    a.texts.iter().zip(&row.texts).map(|(x, y)| first_difference(x, y)).collect();
                let same = diffs.iter().filter(|d| d.is_none()).count();
                let at: Vec<String> = diffs.iter().flatten().map(|c| format!("char {c}")).collect();
                if at.is_empty() {
                    format!("{same} of {}", diffs.len())
                } else {
                    format!("{same} of {} (differs at {})", diffs.len(), at.join(", "))
                }
            }
            None => "-".to_owned(),
        };
        md += &format!("| {} | {:.2} | {:.1} | {} |\n", row.setup, row.load_s, row.tok_s, same);
    }
    let split = rows.iter().find(|r| r.setup.contains("2 `lms"));
    let one = rows.iter().find(|r| r.setup.contains("1 `lms"));
    if let (Some(split), Some(one)) = (split, one) {
        let same = split.texts.iter().zip(&one.texts).filter(|(a, b)| a == b).count();
        md += &format!("\nSplit over two workers against all layers on one worker: the same greedy text for {same} of {} prompts.\n", split.texts.len());
    }
    let theirs = rows.iter().find(|r| r.setup.contains("2 `rpc-server"));
    if let (Some(split), Some(theirs)) = (split, theirs) {
        md += &format!(
            "Split over two workers, ours against llama.cpp's: decode {:.2}x, load {:.2}x faster.\n",
            split.tok_s / theirs.tok_s,
            theirs.load_s / split.load_s
        );
    }
    md
}

/// A router process, and the configuration file written for it; killed (and removed) on drop.
struct RouterProcess(Child, Option<PathBuf>);

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(file) = &self.1 {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A counter of a replica's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> Result<f64> {
    let mut sock = TcpStream::connect(addr)?;
    use std::io::{Read, Write};
    write!(sock, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    sock.read_to_string(&mut text)?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

struct RoutingRow {
    policy: &'static str,
    hit_rate: f64,
    ttft_p50: f64,
    ttft_p90: f64,
    per_replica: Vec<f64>,
}

/// A tenant's system prompt of about 1,000 tokens, its own from the first word.
fn system_prompt(tenant: usize) -> String {
    let topics = [
        "billing", "search", "travel", "legal", "garden", "music", "health", "chess", "weather", "cooking", "sports",
        "finance",
    ];
    let topic = topics[tenant % topics.len()];
    let mut s = format!("You are the assistant of the {topic} team (tenant {tenant}). ");
    for rule in 0..45 {
        s += &format!(
            "Rule {rule} of the {topic} team: answer briefly, cite the {topic} handbook section {}, and never guess. ",
            rule * 3 + tenant
        );
    }
    s
}

/// The routers measured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Router<'a> {
    /// HAProxy, deploy/haproxy/haproxy.cfg with `balance roundrobin`.
    RoundRobin,
    /// HAProxy, deploy/haproxy/haproxy.cfg as it is.
    Affinity,
    /// SGLang's model gateway at this path, `--policy cache_aware`.
    Smg(&'a Path),
}

/// HAProxy with deploy/haproxy/haproxy.cfg in front of `replicas` on `bind`: the file as it is,
/// with a `server` line per replica (it has two), and round robin in place of the hash unless
/// `affinity`.
fn haproxy(replicas: &[Server], bind: SocketAddr, affinity: bool) -> Result<RouterProcess> {
    let config =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg"))?;
    let servers: Vec<String> =
        (1..=replicas.len()).map(|i| format!("    server r{i} \"${{LMS_REPLICA_{i}}}\"")).collect();
    let lines: Vec<&str> = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("server r"))
        .filter(|l| affinity || !l.trim_start().starts_with("hash-"))
        .collect();
    let mut config = lines.join("\n") + "\n" + &servers.join("\n") + "\n";
    if !affinity {
        config = config.replace("balance hash req.body,bytes(0,2048)", "balance roundrobin");
    }
    let file = std::env::temp_dir().join(format!("lms-bench-scale-{}-{}.cfg", std::process::id(), bind.port()));
    std::fs::write(&file, config)?;
    let mut command = Command::new("haproxy");
    command.args(["-db", "-f"]).arg(&file).env("LMS_HAPROXY_BIND", bind.to_string());
    for (i, replica) in replicas.iter().enumerate() {
        command.env(format!("LMS_REPLICA_{}", i + 1), replica.addr().to_string());
    }
    let child =
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("haproxy (apt-get install haproxy)")?;
    Ok(RouterProcess(child, Some(file)))
}

fn routing_policy(args: &ScaleArgs, policy: &'static str, router: Router) -> Result<RoutingRow> {
    let stored = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY)?;
    let (path, key) = (stored.path.clone(), stored.key.clone());
    let replica = || -> Result<Server> {
        let port = free_port()?;
        let mut cmd = Command::new(lms_bin()?);
        cmd.args(["server", "start", "--no-discovery-port", "--port", &port.to_string(), "--no-prompt-cache-dir"])
            .args(["--parallel", "2", "--context-length", "4096", "--threads", &args.threads.to_string()])
            .arg("--model")
            .arg(&path);
        start(cmd, port, &key)
    };
    let replicas = (0..args.replicas).map(|_| replica()).collect::<Result<Vec<_>>>()?;
    let port = free_port()?;
    let bind: SocketAddr = ([127, 0, 0, 1], port).into();
    let _router = match router {
        Router::RoundRobin | Router::Affinity => haproxy(&replicas, bind, router == Router::Affinity)?,
        Router::Smg(smg) => {
            let urls: Vec<String> = replicas.iter().map(|r| format!("http://{}", r.addr())).collect();
            let child = Command::new(smg)
                .args(["launch", "--host", "127.0.0.1", "--port", &port.to_string(), "--policy", "cache_aware"])
                .arg("--worker-urls")
                .args(&urls)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("smg (pip install smg)")?;
            RouterProcess(child, None)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(bind).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the router never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3)); // its first health checks
    let mut ttft = Vec::new();
    let mut histories: Vec<Vec<serde_json::Value>> =
        (0..args.tenants).map(|t| vec![json!({"role": "system", "content": system_prompt(t)})]).collect();
    for turn in 0..args.turns {
        // Interleaved: every tenant's turn before anyone's next, in an order that changes.
        let mut order: Vec<usize> = (0..args.tenants).collect();
        if turn % 2 == 1 {
            order.reverse();
        }
        for tenant in order {
            let history = &mut histories[tenant];
            history.push(json!({"role": "user", "content": format!("Question {turn} of tenant {tenant}: what does rule {turn} say?")}));
            let body = json!({"model": key, "messages": history, "max_tokens": 1, "temperature": 0});
            let started = Instant::now();
            post_json(bind, "/v1/chat/completions", &body)?;
            ttft.push(started.elapsed().as_secs_f64());
            history.push(json!({"role": "assistant", "content": format!("Rule {turn} says to answer briefly.")}));
        }
    }
    let (mut cached, mut evaluated, mut per_replica) = (0.0, 0.0, Vec::new());
    for replica in &replicas {
        cached += metric(replica.addr(), "lms_prompt_tokens_cached_total")?;
        evaluated += metric(replica.addr(), "lms_prompt_tokens_evaluated_total")?;
        per_replica.push(metric(replica.addr(), "lms_predictions_total")?);
    }
    let row = RoutingRow {
        policy,
        hit_rate: cached / (cached + evaluated).max(1.0),
        ttft_p50: percentile(ttft.clone(), 0.5),
        ttft_p90: percentile(ttft, 0.9),
        per_replica,
    };
    eprintln!(
        "{policy}: hit rate {:.2}, TTFT p50 {:.3} s, p90 {:.3} s, {:?}",
        row.hit_rate, row.ttft_p50, row.ttft_p90, row.per_replica
    );
    Ok(row)
}

fn routing_table(rows: &[RoutingRow], args: &ScaleArgs) -> String {
    let mut md = format!(
        "\n## Replicas behind a router\n\n{r} `lms server` replicas (the default model, 2 slots, {t} threads each) behind HAProxy 2.6 with deploy/haproxy/haproxy.cfg (prefix affinity: a consistent hash of the body's first 2 KiB), the same file with `balance roundrobin` (a `server` line per replica), and SGLang's model gateway (`smg launch --policy cache_aware`, `pip install smg`, deploy/smg/README.md) where it is installed. {n} tenants, each with its own system prompt of about 1,000 tokens, {k} turns each (the conversation so far, then a new question), interleaved: every tenant's turn before the next turn, in alternating order, one request at a time. Hit rate: prompt tokens reused from a cache over all prompt tokens, from the replicas' own counters. TTFT: the time of a request with `max_tokens` 1 through the router.\n\n| routing | prompt-cache hit rate | TTFT p50 s | TTFT p90 s | requests per replica |\n|---|---|---|---|---|\n",
        r = args.replicas,
        t = args.threads,
        n = args.tenants,
        k = args.turns
    );
    for row in rows {
        let per: Vec<String> = row.per_replica.iter().map(|n| format!("{n:.0}")).collect();
        md += &format!(
            "| {} | {:.2} | {:.3} | {:.3} | {} |\n",
            row.policy,
            row.hit_rate,
            row.ttft_p50,
            row.ttft_p90,
            per.join(" / ")
        );
    }
    if let [rr, others @ ..] = rows {
        md += "\n";
        for other in others {
            md += &format!(
                "{} against round robin: hit rate {:.2}x, TTFT p50 {:.2}x lower, p90 {:.2}x lower.\n",
                other.policy,
                other.hit_rate / rr.hit_rate.max(1e-9),
                rr.ttft_p50 / other.ttft_p50,
                rr.ttft_p90 / other.ttft_p90
            );
        }
    }
    md
}

/// Runs the bench and prints (and writes) its tables.
pub fn run(args: &ScaleArgs) -> Result<()> {
    let mut md = String::new();
    if args.only.as_deref() != Some("routing") {
        md += &rpc_table(&rpc_part(args)?, args);
    }
    if args.only.as_deref() != Some("rpc") {
        let mut rows = vec![
            routing_policy(args, "HAProxy, round robin", Router::RoundRobin)?,
            routing_policy(args, "HAProxy, prefix affinity", Router::Affinity)?,
        ];
        match args.smg.as_deref().filter(|p| p.exists()) {
            Some(smg) => rows.push(routing_policy(args, "smg, cache_aware", Router::Smg(smg))?),
            None => eprintln!("smg is missing (pip install smg; --smg PATH): no smg row"),
        }
        md += &routing_table(&rows, args);
    }
    print!("{md}");
    if let Some(out) = &args.out {
        let head = "# Beyond one machine: RPC workers and replicas\n\n`lms-dev bench-scale` (issue 30), on loopback: every process on this one host, so the figures show what the split and the routing cost and save, not what a network adds.\n";
        std::fs::write(out, head.to_owned() + &md)?;
    }
    Ok(())
}
