//! `lms-dev stress`: `lms server` under streaming clients that hang up at random points or cancel over
//! the SDK protocol, then checks that nothing was lost: every request accounted for, gauges back
//! to 0, no slot stuck (a fresh request's time to first token as before), memory back; and that
//! huge inputs (a 100k-token prompt, a 5,000-message chat) never hold up `/health`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::load::{self, Server};
use super::loadgen::percentile;

/// Options of `lms-dev stress`.
#[derive(Args)]
pub struct StressArgs {
    /// The model (default: the default model).
    #[arg(long, short)]
    model: Option<String>,
    /// Streaming requests in all.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Share of requests whose client hangs up: a third before sending its headers, a third
    /// during prompt processing, a third mid-stream.
    #[arg(long, default_value_t = 0.3)]
    disconnect: f64,
    /// Share of requests cancelled over the SDK protocol.
    #[arg(long, default_value_t = 0.1)]
    cancel: f64,
    /// No request starts after this many seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Prediction slots of the server.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// CPU threads of the server.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Seed of the random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Report the timing checks (TTFT after / before, `/health` latency) without failing on them:
    /// on a shared machine (CI) timings say little; the other checks still fail the run.
    #[arg(long)]
    no_timing_checks: bool,
    /// The server's queue for one SDK websocket (`lms server --max-socket-queue-mib`); a
    /// client that never reads is disconnected past it.
    #[arg(long, default_value_t = 16)]
    socket_queue_mib: u64,
    /// Replies the client that never reads asks for, in MiB (1 MiB a call).
    #[arg(long, default_value_t = 96)]
    unread_mib: usize,
    /// Write the figures to this Markdown file (e.g. `bench/stress.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    Completed,
    CutBeforeHeaders,
    CutInPrompt,
    CutMidStream,
    Cancelled,
    Overloaded,
    Failed,
}

const OUTCOMES: [(Outcome, &str); 7] = [
    (Outcome::Completed, "completed"),
    (Outcome::CutBeforeHeaders, "cut by client before its headers"),
    (Outcome::CutInPrompt, "cut by client during prompt processing"),
    (Outcome::CutMidStream, "cut by client mid-stream"),
    (Outcome::Cancelled, "cancelled over the SDK protocol"),
    (Outcome::Overloaded, "refused: overloaded (429)"),
    (Outcome::Failed, "failed (anything else)"),
];

/// A small seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    /// Stream `stream` of `seed`: SplitMix64 of both, so that neighbouring streams are unrelated.
    fn new(seed: u64, stream: u64) -> Self {
        let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.wrapping_add(0x632b_e59b_d9b4_e019);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() * f64::from(n)) as u32
    }
}

fn post(addr: SocketAddr, path: &str, body: &str) -> Result<TcpStream> {
    let mut sock = TcpStream::connect(addr).context("connecting")?;
    sock.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        sock,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    Ok(sock)
}

fn get(addr: SocketAddr, path: &str) -> Result<String> {
    let mut sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(sock, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    sock.read_to_string(&mut out)?;
    Ok(out)
}

fn gauge(addr: SocketAddr, name: &str) -> Result<f64> {
    let metrics = get(addr, "/metrics")?;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("no {name} on /metrics"))
}

/// One streaming completion over HTTP. `hang_up` after that many events (0: right after the
/// response headers, before any event).
fn http_stream(addr: SocketAddr, body: &str, hang_up: Option<usize>) -> Result<Outcome> {
    let mut reader = BufReader::new(post(addr, "/v1/completions", body)?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    match status.as_str() {
        "200" => {}
        "429" => return Ok(Outcome::Overloaded),
        _ => return Ok(Outcome::Failed),
    }
    let mut events = 0;
    loop {
        if hang_up == Some(events) {
            return Ok(if events == 0 { Outcome::CutInPrompt } else { Outcome::CutMidStream });
        }
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(Outcome::Failed);
        }
        let Some(data) = line.trim_end().strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            return Ok(Outcome::Failed); // an end without a finish_reason
        }
        let v: serde_json::Value = serde_json::from_str(data).context("an event")?;
        if v.get("error").is_some() {
            return Ok(Outcome::Failed);
        }
        if !v["choices"][0]["finish_reason"].is_null() {
            return Ok(if hang_up.is_some() { Outcome::Failed } else { Outcome::Completed });
        }
        events += 1;
    }
}

/// One prediction over the SDK protocol, cancelled after `after` fragments.
fn sdk_cancel(addr: SocketAddr, model: &str, prompt: &str, after: usize) -> Result<Outcome> {
    let client = lmstudio::Client::connect(&addr.to_string())?;
    let llm = client.llm(model)?;
    let config = lmstudio::Config { max_tokens: Some(200), ignore_eos: Some(true), ..Default::default() };
    let mut stream = match llm.complete_stream(prompt, config) {
        Err(lmstudio::Error::Overloaded { .. }) => return Ok(Outcome::Overloaded),
        other => other?,
    };
    for _ in 0..after {
        match stream.next() {
            Some(Ok(_)) => {}
            Some(Err(lmstudio::Error::Overloaded { .. })) => return Ok(Outcome::Overloaded),
            _ => return Ok(Outcome::Failed),
        }
    }
    stream.cancel();
    let result = stream.wait_for_result()?;
    Ok(if result.stats.stop_reason == lmstudio::StopReason::UserStopped { Outcome::Cancelled } else { Outcome::Failed })
}

fn one_request(addr: SocketAddr, model: &str, args: &StressArgs, i: usize, prompt: &str, long: &str) -> Outcome {
    let mut rng = Rng::new(args.seed, i as u64);
    let fate = rng.next();
    let body = |prompt: &str, max_tokens: u32| {
        serde_json::json!({"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": true,
            "temperature": 0.8, "seed": i, "ignore_eos": true})
        .to_string()
    };
    let third = args.disconnect / 3.0;
    let outcome = if fate < third {
        // Half a request head, then gone.
        TcpStream::connect(addr)
            .and_then(|mut s| s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Le"))
            .map(|()| Outcome::CutBeforeHeaders)
            .map_err(anyhow::Error::from)
    } else if fate < 2.0 * third {
        http_stream(addr, &body(long, 16), Some(0))
    } else if fate < args.disconnect {
        http_stream(addr, &body(prompt, 64), Some(1 + rng.below(5) as usize))
    } else if fate < args.disconnect + args.cancel {
        sdk_cancel(addr, model, prompt, 1 + rng.below(3) as usize)
    } else {
        http_stream(addr, &body(prompt, 8 + rng.below(33)), None)
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("request {i}: {e:#}");
        Outcome::Failed
    })
}

/// Median time to first token of `n` fresh prompts, one after another (ms).
fn ttft_ms(addr: SocketAddr, model: &str, n: usize) -> Result<f64> {
    let mut ttfts = Vec::new();
    for prompt in load::prompts(n) {
        let body = serde_json::json!({"model": model, "prompt": prompt, "max_tokens": 4, "stream": true,
            "temperature": 0, "ignore_eos": true})
        .to_string();
        let t0 = Instant::now();
        let mut reader = BufReader::new(post(addr, "/v1/completions", &body)?);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if line.starts_with("data: {") {
                ttfts.push(t0.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            line.clear();
        }
    }
    Ok(percentile(ttfts, 0.5))
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS")?;
    Ok(kb / 1024.0)
}

/// Memory as the run sees it: the server's RSS and, of it, the prompt cache's share.
struct Memory {
    rss_mib: f64,
    cache_mib: f64,
}

fn memory(server: &Server) -> Result<Memory> {
    let cache_mib = gauge(server.addr(), "lms_prompt_cache_bytes")? / (1024.0 * 1024.0);
    Ok(Memory { rss_mib: rss_mib(server.pid())?, cache_mib })
}

/// What a websocket client that sends calls and never reads their replies costs the server.
struct Unread {
    /// The most the server's RSS grew meanwhile.
    peak_growth_mib: f64,
    /// Calls sent before the server stopped taking them.
    sent: usize,
    /// Whether the server counted it as a slow client it disconnected.
    disconnected: bool,
}

/// Sends `calls` applyPromptTemplate calls of a 1 MiB message (each reply about as long) on one
/// SDK websocket without reading a reply, sampling the server's RSS until it gives up on the
/// client (or 30 s pass).
fn unread_replies(server: &Server, model: &str, calls: usize) -> Result<Unread> {
    use lmstudio::wire::protocol::{self as p, ApplyPromptTemplate, Rpc};
    let (addr, pid) = (server.addr(), server.pid());
    let counted = |addr| gauge(addr, "lms_slow_clients_disconnected_total");
    let (before_rss, before_count) = (rss_mib(pid)?, counted(addr)?);
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/llm"), TcpStream::connect(addr)?)?;
    let auth = p::Auth { auth_version: 1, client_identifier: "unread".into(), client_passkey: "unread".into() };
    ws.send(tungstenite::Message::text(serde_json::to_string(&auth)?))?;
    ws.read()?; // the auth reply: the last thing read
    let peak = std::sync::Arc::new(Mutex::new(0.0f64));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && !done.load(Ordering::SeqCst) {
                if let Ok(rss) = rss_mib(pid) {
                    let mut p = peak.lock().unwrap_or_else(|p| p.into_inner());
                    *p = p.max(rss - before_rss);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let message = lmstudio::ChatMessage::new("user", "lighthouse ".repeat((1 << 20) / 11));
    let parameter = p::ApplyPromptTemplateParameter {
        specifier: p::ModelSpecifier::identifier(model),
        history: p::ChatHistory::of(&[message]),
        prediction_config_stack: Default::default(),
        opts: serde_json::Value::Null,
    };
    let mut sent = 0;
    for call_id in 0..calls {
        let call = p::ClientMessage::RpcCall {
            endpoint: ApplyPromptTemplate::ENDPOINT.into(),
            call_id: call_id as i64,
            parameter: Some(p::encode(&parameter)),
        };
        if ws.send(tungstenite::Message::text(serde_json::to_string(&call)?)).is_err() {
            break; // disconnected
        }
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut disconnected = false;
    while Instant::now() < deadline && !disconnected {
        std::thread::sleep(Duration::from_millis(200));
        disconnected = counted(addr)? > before_count;
    }
    // A second more of samples: what the server frees, it frees by then.
    std::thread::sleep(Duration::from_secs(1));
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    let peak_growth_mib = *peak.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Unread { peak_growth_mib, sent, disconnected })
}

/// The slowest `/health` answer while `work` runs on another thread, and what `work` returned.
fn health_during<T: Send + 'static>(
    addr: SocketAddr,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<(f64, usize, T)> {
    let worker = std::thread::spawn(work);
    let (mut worst, mut probes) = (0.0f64, 0);
    while !worker.is_finished() {
        let t0 = Instant::now();
        let health = get(addr, "/health")?;
        if !health.starts_with("HTTP/1.1 200") {
            bail!("/health answered {health}");
        }
        worst = worst.max(t0.elapsed().as_secs_f64() * 1000.0);
        probes += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = worker.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?;
    Ok((worst, probes, out))
}

/// What a huge request got back, with how long it took: status line and the start of the body.
fn huge(addr: SocketAddr, path: &str, body: String) -> Result<(String, f64)> {
    let t0 = Instant::now();
    let mut response = String::new();
    post(addr, path, &body)?.read_to_string(&mut response)?;
    let status = response.lines().next().unwrap_or_default().to_owned();
    let error = response.split_once("\r\n\r\n").map(|(_, b)| b.chars().take(120).collect::<String>());
    Ok((format!("{status}: {}", error.unwrap_or_default()), t0.elapsed().as_secs_f64() * 1000.0))
}

pub fn run(args: StressArgs) -> Result<()> {
    let store = lmstudio::ModelStore::from_env();
    let stored = store.resolve(args.model.as_deref().unwrap_or(lmstudio::DEFAULT_MODEL_KEY))?;
    let model = stored.key.clone();
    let queue = ["--max-socket-queue-mib".to_owned(), args.socket_queue_mib.to_string()];
    let server = load::ours(&stored.path, &model, args.parallel, args.threads, &queue)?;
    let addr = server.addr();
    eprintln!("server on {addr}; warming up");
    ttft_ms(addr, &model, 4)?;
    let ttft_before = ttft_ms(addr, &model, 5)?;
    let mem_before = memory(&server)?;

    // About 800 tokens: the prompt processing a hang-up interrupts.
    let long = load::prompts(16).concat();
    let prompts = load::prompts(args.requests);
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.in_flight {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= args.requests || Instant::now() > deadline {
                    return;
                }
                let outcome = one_request(addr, &model, &args, i, &prompts[i], &long);
                outcomes.lock().unwrap_or_else(|p| p.into_inner()).push(outcome);
            });
        }
    });
    let chaos_s = t0.elapsed().as_secs_f64();
    let outcomes = outcomes.into_inner().unwrap_or_else(|p| p.into_inner());
    let not_started = args.requests - outcomes.len();
    eprintln!("{} requests in {chaos_s:.0} s; waiting for the gauges", outcomes.len());

    // Every prediction a client abandoned ends at the engine's next step.
    let drain = Instant::now();
    let (mut running, mut queued) = (f64::NAN, f64::NAN);
    while drain.elapsed() < Duration::from_secs(60) {
        (running, queued) = (gauge(addr, "lms_predictions_running")?, gauge(addr, "lms_predictions_queued")?);
        if running == 0.0 && queued == 0.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let drain_ms = drain.elapsed().as_secs_f64() * 1000.0;
    let ttft_after = ttft_ms(addr, &model, 5)?;
    let mem_after = memory(&server)?;

    // Huge inputs, one at a time, with /health probed meanwhile.
    let words = "lighthouse keeper counted the stairs ".repeat(25_000); // ~100k tokens
    let body = serde_json::json!({"model": model, "prompt": words, "max_tokens": 4}).to_string();
    let (health_prompt, probes_prompt, prompt_out) = health_during(addr, move || huge(addr, "/v1/completions", body))?;
    let (prompt_reply, prompt_ms) = prompt_out?;
    let messages: Vec<serde_json::Value> = (0..5000)
        .map(|i| serde_json::json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("message {i}")}))
        .collect();
    let body = serde_json::json!({"model": model, "messages": messages, "max_tokens": 4}).to_string();
    let (health_chat, probes_chat, chat_out) = health_during(addr, move || huge(addr, "/v1/chat/completions", body))?;
    let (chat_reply, chat_ms) = chat_out?;
    // The same 100k tokens over the SDK protocol with `stopAtLimit`: a context-overflow error.
    let (model_key, words) = (model.clone(), "lighthouse keeper counted the stairs ".repeat(25_000));
    let (health_overflow, probes_overflow, overflow_out) = health_during(addr, move || {
        let t0 = Instant::now();
        let config = lmstudio::Config {
            max_tokens: Some(4),
            context_overflow_policy: Some(lmstudio::ContextOverflowPolicy::StopAtLimit),
            ..Default::default()
        };
        let outcome =
            lmstudio::Client::connect(&addr.to_string()).and_then(|c| c.llm(&model_key)?.complete(&words, config));
        (outcome.map(|r| r.content), t0.elapsed().as_secs_f64() * 1000.0)
    })?;
    let (overflow, overflow_ms) = overflow_out;
    let overflow_reply = match &overflow {
        Err(e @ lmstudio::Error::ContextOverflow { .. }) => format!("ContextOverflow: {e}"),
        Err(e) => format!("unexpected error: {e}"),
        Ok(text) => format!("unexpected completion: {text:?}"),
    };
    eprintln!("a client that never reads its replies");
    let unread = unread_replies(&server, &model, args.unread_mib)?;
    let peak_rss = server.stop();

    let count = |o: Outcome| outcomes.iter().filter(|x| **x == o).count();
    // What the calls in flight hold beside the queue (requests read, templates rendered, replies
    // written): 39 to 121 MiB over seven runs, not in proportion to the calls taken (33 calls: 121;
    // 28: 90), so the allocator's retention counts; unbounded, the server grew 187 and was never
    // disconnected, which fails the check whatever it grew.
    const UNREAD_MARGIN_MIB: u64 = 128;
    let ttft_ratio = ttft_after / ttft_before;
    let own = |m: &Memory| m.rss_mib - m.cache_mib;
    let rss_ratio = own(&mem_after) / own(&mem_before);
    // (what, passed, whether it is a timing)
    let checks = [
        (
            "every request completed, was cut or cancelled by its client, or was refused as overloaded",
            count(Outcome::Failed) == 0,
            false,
        ),
        ("gauges back to 0 (running, queued)", running == 0.0 && queued == 0.0, false),
        ("no slot stuck: TTFT after / before <= 1.2", ttft_ratio <= 1.2, true),
        ("RSS less the prompt cache: after / before <= 1.1", rss_ratio <= 1.1, false),
        (
            "a prompt over the context with stopAtLimit: ContextOverflow",
            matches!(overflow, Err(lmstudio::Error::ContextOverflow { .. })),
            false,
        ),
        (
            "a client that never reads is disconnected; the server grows by at most its queue + 128 MiB",
            unread.disconnected && unread.peak_growth_mib <= (args.socket_queue_mib + UNREAD_MARGIN_MIB) as f64,
            false,
        ),
        (
            "/health within 100 ms during huge inputs",
            health_prompt <= 100.0 && health_chat <= 100.0 && health_overflow <= 100.0,
            true,
        ),
    ];
    let mut md = String::new();
    md += &format!(
        "`lms-dev stress --requests {} --in-flight {} --disconnect {} --cancel {} --seconds {} --parallel {} --threads {} --seed {}` \
         ({}, {} cores): {} requests ran in {chaos_s:.0} s, {not_started} not started (time limit).\n\n",
        args.requests, args.in_flight, args.disconnect, args.cancel, args.seconds, args.parallel, args.threads,
        args.seed, model, std::thread::available_parallelism().map_or(0, |n| n.get()), outcomes.len()
    );
    md += "| requests by outcome | count |\n|---|---|\n";
    for (o, name) in OUTCOMES {
        md += &format!("| {name} | {} |\n", count(o));
    }
    md += "\n| after the run | before | after |\n|---|---|---|\n";
    md += &format!(
        "| predictions running / queued (gauges; {drain_ms:.0} ms to drain) | 0 / 0 | {running} / {queued} |\n"
    );
    md += &format!("| TTFT of a fresh ~50-token prompt, median of 5 (ms) | {ttft_before:.1} | {ttft_after:.1} ({ttft_ratio:.2}x) |\n");
    md += &format!("| RSS (MiB) | {:.0} | {:.0} |\n", mem_before.rss_mib, mem_after.rss_mib);
    md += &format!("| of it, the prompt cache (MiB) | {:.0} | {:.0} |\n", mem_before.cache_mib, mem_after.cache_mib);
    md += &format!(
        "| RSS less the prompt cache (MiB) | {:.0} | {:.0} ({rss_ratio:.2}x) |\n",
        own(&mem_before),
        own(&mem_after)
    );
    md += &format!("| peak RSS over the run (MiB) | | {peak_rss:.0} |\n");
    md += "\n| huge input | answer | took (ms) | slowest /health meanwhile (ms) | /health probes |\n|---|---|---|---|---|\n";
    md += &format!(
        "| 100k-token prompt, /v1/completions | {} | {prompt_ms:.0} | {health_prompt:.1} | {probes_prompt} |\n",
        prompt_reply.replace('|', "\\|")
    );
    md += &format!(
        "| 5,000-message chat, /v1/chat/completions | {} | {chat_ms:.0} | {health_chat:.1} | {probes_chat} |\n",
        chat_reply.replace('|', "\\|")
    );
    md += &format!(
        "| 100k-token prompt, SDK protocol, stopAtLimit | {} | {overflow_ms:.0} | {health_overflow:.1} | {probes_overflow} |\n",
        overflow_reply.chars().take(120).collect::<String>().replace('|', "\\|")
    );
    md += "\n| a client that never reads its replies | |\n|---|---|\n";
    md += &format!("| the server's queue per socket (MiB) | {} |\n", args.socket_queue_mib);
    md += &format!("| replies asked for, 1 MiB each (calls sent / asked) | {} / {} |\n", unread.sent, args.unread_mib);
    md += &format!("| peak growth of the server's RSS meanwhile (MiB) | {:.0} |\n", unread.peak_growth_mib);
    md += &format!("| disconnected as a slow client | {} |\n", if unread.disconnected { "yes" } else { "no" });
    md += "\n| check | |\n|---|---|\n";
    for (what, ok, _) in checks {
        md += &format!("| {what} | {} |\n", if ok { "pass" } else { "FAIL" });
    }
    println!("{md}");
    if let Some(out) = &args.out {
        std::fs::write(out, &md).with_context(|| format!("writing {}", out.display()))?;
    }
    let waived = |timing: bool| timing && args.no_timing_checks;
    if checks.iter().any(|&(_, ok, timing)| !ok && !waived(timing)) {
        bail!("a check failed");
    }
    Ok(())
}
