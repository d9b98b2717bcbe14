//! `lms-dev bench`: prompt-processing and decode speed through our API, next to llama.cpp's own
//! `llama-bench` on the same model and thread count, written as a markdown and a JSON table.

pub mod embeddings;
mod load;
mod loadgen;
pub mod profile;
mod rss;
pub mod sampling;
pub mod scale;
pub mod speculation;
pub mod stress;
pub mod structured;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use loadgen::percentile;

/// Options of `lms-dev bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The model (default: the default model).
    #[arg(long, short)]
    model: Option<String>,
    /// CPU threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Prompt tokens for the prompt-processing test.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to generate for the decode test.
    #[arg(long, default_value_t = 128)]
    gen_tokens: u32,
    /// Tokens of context before the long-context decode test (llama-bench's `-d`); 0 skips it.
    #[arg(long, default_value_t = 3000)]
    depth: usize,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    repetitions: usize,
    /// A folder with llama.cpp's `llama-bench`, `llama-server` and `llama-batched-bench`
    /// (`scripts/build-llama-tools` makes one), to run side by side.
    #[arg(long, env = "LLAMA_TOOLS")]
    llama_tools: Option<PathBuf>,
    /// Concurrent streaming clients for the server load test.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    clients: Vec<usize>,
    /// Skip the server load test.
    #[arg(long)]
    no_load: bool,
    /// Only the single-stream table (no websocket path, no server load test).
    #[arg(long)]
    single_stream: bool,
    /// Only the server load test (no single-stream table, no websocket path).
    #[arg(long, conflicts_with_all = ["single_stream", "no_load"])]
    load_only: bool,
    /// The load test's scenarios: all start at once (`together`, at each `--clients`), one every
    /// 0.5 s, a shared ~750-token prefix, answers of different lengths (the last three at the most
    /// clients).
    #[arg(long, value_delimiter = ',', default_value = "together,staggered,shared-prefix,mixed-lengths")]
    scenarios: Vec<load::Scenario>,
    /// GPU offload for ours (`off`, `max`, a share in 0..1); llama-bench gets `-ngl 99` when any.
    #[arg(long, value_name = "off|max|0..1")]
    gpu: Option<lmstudio::GpuOffload>,
    /// Write `<out>.md` and `<out>.json` (e.g. `bench/results`).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Serialize, Default, Clone)]
struct Row {
    what: String,
    pp_tok_s: f64,
    tg_tok_s: f64,
    /// Decode after `--depth` tokens of context.
    tg_depth_tok_s: f64,
    ttft_ms: f64,
    peak_rss_mib: f64,
    /// Time to first token of a cold 1,000-token prompt.
    prefix_cold_ms: f64,
    /// Time to first token of the same prefix plus about 20 new tokens.
    prefix_warm_ms: f64,
}

/// The model a bench names (default: the default model, fetched if missing), loaded with one
/// slot and `threads` CPU threads.
fn load_one_slot(
    store: &lmstudio::ModelStore,
    model: Option<&str>,
    threads: u32,
    gpu: Option<lmstudio::GpuOffload>,
) -> Result<lmstudio::Llm> {
    let name = match model {
        Some(m) => m.to_owned(),
        None => {
            store.ensure_default_model(&mut |l| eprintln!("{l}"))?;
            lmstudio::DEFAULT_MODEL_KEY.into()
        }
    };
    let load = lmstudio::LoadConfig { cpu_threads: Some(threads), parallel: Some(1), gpu, ..Default::default() };
    Ok(lmstudio::Client::with_store(store.clone()).load(&name, &load)?)
}

pub fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.prompt_tokens >= 16, "--prompt-tokens must be at least 16");
    anyhow::ensure!(args.gen_tokens >= 1, "--gen-tokens must be at least 1");
    anyhow::ensure!(args.repetitions >= 1, "--repetitions must be at least 1");
    anyhow::ensure!(args.clients.iter().all(|&n| n >= 1), "--clients must all be at least 1");
    let store = lmstudio::ModelStore::from_env();
    let model = load_one_slot(&store, args.model.as_deref(), args.threads, args.gpu)?;
    let path = store.root().join(&model.info().path);
    if args.load_only {
        let (md, load) = load_test(model, &path, &args)?;
        return write_out(&args, &md, &serde_json::json!({ "load": load }));
    }
    let prompt = prompt_of(&model, args.prompt_tokens - 4)?;
    let greedy = |max| lmstudio::Config {
        max_tokens: Some(max),
        temperature: Some(0.0),
        repeat_penalty: Some(1.0),
        ..Default::default()
    };
    // A prompt of exactly `prompt_tokens` tokens starting with `first`: evaluated in one batch, as
    // llama-bench does.
    let sized = |first: &str| -> Result<String> {
        let mut text = format!("{first} {prompt}");
        while model.count_tokens(&text)? < args.prompt_tokens {
            text.push_str(" fox");
        }
        Ok(text)
    };
    let context = model.info().context_length.unwrap_or(0) as usize;
    // A round's first word and its decoded tokens come on top of `depth`.
    anyhow::ensure!(
        args.depth == 0 || args.depth + args.gen_tokens as usize + 8 <= context,
        "--depth and --gen-tokens must fit in the model's {context}-token context"
    );
    let deep = (args.depth > 0).then(|| prompt_of(&model, args.depth)).transpose()?;
    // Warm up as llama-bench does (each of its tests runs once first, not counted): the weights
    // paged in, and the buffers a full prompt batch computes in touched once (the first such batch
    // in a process ran about 7% slower than the next ones, measured).
    model.complete(&sized("warm-up")?, greedy(4))?;
    let mut ours = Vec::new();
    // llama-bench from the tools' llama.cpp, and (when built) the same source on the llama.cpp that
    // our sys crate vendors: the second is the same-commit comparison.
    let benches: Vec<PathBuf> = args
        .llama_tools
        .iter()
        .flat_map(|dir| ["llama-bench", "llama-bench-crate"].map(|b| dir.join(b)))
        .filter(|b| b.exists())
        .collect();
    // Each llama-bench twice: flash attention off and on (its own default on the CPU, and ours).
    let mut theirs = vec![Vec::new(); 2 * benches.len()];
    for round in 0..args.repetitions {
        eprintln!("round {}/{}", round + 1, args.repetitions);
        // A different first word each round defeats the prefix cache: every round is cold.
        let pp = model.complete(&sized(&round.to_string())?, greedy(1))?;
        let pp_secs = pp.stats.time_to_first_token_sec.unwrap_or(f64::NAN);
        let tg = model.complete(
            &format!("{round} Once upon a time"),
            lmstudio::Config { max_tokens: Some(args.gen_tokens), seed: Some(round as u32), ..Default::default() },
        )?;
        let short = model.complete(&format!("{round} My name is"), greedy(1))?;
        let tg_depth = match &deep {
            Some(deep) => model
                .complete(
                    &format!("{round} {deep}"),
                    lmstudio::Config {
                        max_tokens: Some(args.gen_tokens),
                        ignore_eos: Some(true),
                        seed: Some(round as u32),
                        ..Default::default()
                    },
                )?
                .stats
                .tokens_per_second
                .unwrap_or(f64::NAN),
            None => f64::NAN,
        };
        // Its own first words, so that no earlier prompt (kept in host memory) shares the prefix.
        let prefix = format!("{round} Prefix test: {}", prompt_of(&model, 1000)?);
        let cold = model.complete(&prefix, greedy(1))?;
        let warm = model.complete(
            &format!("{prefix} and then the fox ran into the forest to find the others, who were waiting"),
            greedy(1),
        )?;
        let ttft = |r: &lmstudio::PredictionResult| r.stats.time_to_first_token_sec.unwrap_or(f64::NAN) * 1000.0;
        ours.push(Row {
            what: "lmstudio-rs (this build, through the public API)".into(),
            pp_tok_s: pp.stats.prompt_tokens_count.unwrap_or(0) as f64 / pp_secs,
            tg_tok_s: tg.stats.tokens_per_second.unwrap_or(f64::NAN),
            tg_depth_tok_s: tg_depth,
            ttft_ms: short.stats.time_to_first_token_sec.unwrap_or(f64::NAN) * 1000.0,
            peak_rss_mib: rss::peak_rss_mib(std::process::id()).unwrap_or(f64::NAN),
            prefix_cold_ms: ttft(&cold),
            prefix_warm_ms: ttft(&warm),
        });
        for (bin, rows) in benches.iter().zip(theirs.chunks_mut(2)) {
            let [off, on] = llama_bench(bin, &path, &args)?;
            rows[0].push(off);
            rows[1].push(on);
        }
    }
    let mut rows = vec![median(&ours)];
    rows.extend(theirs.iter().map(|t| median(t)));
    let mut md = markdown(&rows, &args);
    let (two_md, two_rows) = two_models(&store, &model, &args)?;
    md += &two_md;
    let mut remote_rows = Vec::new();
    if !args.single_stream {
        let (remote_md, rows) = remote_path(&model, &path, &args)?;
        md += &remote_md;
        remote_rows = rows;
    }
    let mut load = None;
    if !args.no_load && !args.single_stream && !args.clients.is_empty() {
        let (table, results) = load_test(model, &path, &args)?;
        md += &table;
        load = Some(results);
    }
    let json =
        serde_json::json!({"single_stream": rows, "two_models": two_rows, "websocket": remote_rows, "load": load});
    write_out(&args, &md, &json)
}

/// The server load test on the model at `path`; `model` is unloaded first (the servers load their own).
fn load_test(model: lmstudio::Llm, path: &std::path::Path, args: &BenchArgs) -> Result<(String, load::LoadResults)> {
    let key = model.info().model_key.clone();
    drop(model); // unloads it: the client that loaded it is gone
    load::run(path, &key, &args.clients, args.threads, args.llama_tools.as_deref(), args.repetitions, &args.scenarios)
}

/// Prints the tables and, with `--out`, writes them and the results beside.
fn write_out(args: &BenchArgs, md: &str, json: &serde_json::Value) -> Result<()> {
    println!("{md}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out.with_extension("md"), md)?;
        std::fs::write(out.with_extension("json"), serde_json::to_string_pretty(json)?)?;
        eprintln!("wrote {}.md and .json", out.display());
    }
    Ok(())
}

#[derive(Serialize, Clone)]
struct TwoModelsRow {
    what: String,
    tg_tok_s: f64,
}

/// Decode speed of `first` alone, then with a second model (the same file under another
/// identifier) loaded in the same process and run once, alternating which of the two decodes:
/// whether one engine's threads slow another's once both have run.
fn two_models(
    store: &lmstudio::ModelStore,
    first: &lmstudio::Llm,
    args: &BenchArgs,
) -> Result<(String, Vec<TwoModelsRow>)> {
    let tg = |model: &lmstudio::Llm, round: usize| -> Result<f64> {
        let config =
            lmstudio::Config { max_tokens: Some(args.gen_tokens), seed: Some(round as u32), ..Default::default() };
        let r = model.complete(&format!("{round} Two models: once upon a time"), config)?;
        Ok(r.stats.tokens_per_second.unwrap_or(f64::NAN))
    };
    let mut alone = Vec::new();
    for round in 0..args.repetitions {
        alone.push(tg(first, round)?);
    }
    let load = lmstudio::LoadConfig {
        cpu_threads: Some(args.threads),
        parallel: Some(1),
        gpu: args.gpu,
        identifier: Some("bench-second".into()),
        ..Default::default()
    };
    let second = lmstudio::Client::with_store(store.clone()).load(&first.info().path, &load)?;
    let (mut first_after, mut second_tg) = (Vec::new(), Vec::new());
    for round in 0..args.repetitions {
        second_tg.push(tg(&second, round)?);
        first_after.push(tg(first, round)?);
    }
    drop(second);
    let rows: Vec<TwoModelsRow> = [
        ("the first model, alone in the process", alone),
        ("the first model, a second loaded and run", first_after),
        ("the second model (the same file)", second_tg),
    ]
    .into_iter()
    .map(|(what, v)| TwoModelsRow { what: what.into(), tg_tok_s: percentile(v, 0.5) })
    .collect();
    let mut md = format!("\n| two models in one process | tg{} tok/s |\n|---|---|\n", args.gen_tokens);
    for r in &rows {
        md += &format!("| {} | {:.1} |\n", r.what, r.tg_tok_s);
    }
    md += &format!("| with a second model / alone | {:.2} |\n", rows[1].tg_tok_s / rows[0].tg_tok_s);
    Ok((md, rows))
}

/// A prompt of exactly `n` tokens for this model.
fn prompt_of(model: &lmstudio::Llm, n: usize) -> lmstudio::Result<String> {
    let words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches ";
    let mut text = String::new();
    while model.count_tokens(&text)? < n {
        text.push_str(words);
    }
    while model.count_tokens(&text)? > n {
        text.pop();
    }
    Ok(text)
}

/// llama-bench (`bin`) on `model` with our threads and offload, flash attention off and on, and
/// `test` naming the test (`-p`, `-n`, `-d`): its JSON runs and the process's peak RSS in MiB.
fn run_llama_bench(
    bin: &std::path::Path,
    model: &std::path::Path,
    args: &BenchArgs,
    test: &[String],
) -> Result<(Vec<serde_json::Value>, f64)> {
    let ngl = if matches!(args.gpu, None | Some(lmstudio::GpuOffload::Off)) { "0" } else { "99" };
    let child = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-t", &args.threads.to_string(), "-r", "1", "-ngl", ngl, "-fa", "0,1", "-o", "json"])
        .args(test)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let watcher = rss::watch_peak_rss(child.id());
    let out = child.wait_with_output()?;
    let peak = watcher.join().unwrap_or(f64::NAN);
    anyhow::ensure!(out.status.success(), "{} {} failed", bin.display(), test.join(" "));
    Ok((serde_json::from_slice(&out.stdout).context("llama-bench JSON")?, peak))
}

/// One llama-bench run: its rows with flash attention off and on.
fn llama_bench(bin: &std::path::Path, model: &std::path::Path, args: &BenchArgs) -> Result<[Row; 2]> {
    let n = args.gen_tokens.to_string();
    let (mut runs, peak) =
        run_llama_bench(bin, model, args, &["-p".into(), args.prompt_tokens.to_string(), "-n".into(), n.clone()])?;
    if args.depth > 0 {
        // Decode only, after `depth` tokens (llama-bench fills them before each run).
        let deep = ["-p".into(), "0".into(), "-n".into(), n, "-d".into(), args.depth.to_string()];
        runs.extend(run_llama_bench(bin, model, args, &deep)?.0);
    }
    let name = bin.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut rows = [0, 1].map(|fa| Row {
        what: format!("{name} -fa {fa}"),
        peak_rss_mib: peak,
        ttft_ms: f64::NAN,
        ..Default::default()
    });
    for r in runs {
        let ts = r["avg_ts"].as_f64().unwrap_or(f64::NAN);
        let row = &mut rows[usize::from(r["flash_attn"].as_i64() == Some(1))];
        if r["n_prompt"].as_u64().unwrap_or(0) > 0 {
            row.pp_tok_s = ts;
        } else if r["n_depth"].as_u64().unwrap_or(0) > 0 {
            row.tg_depth_tok_s = ts;
        } else {
            row.tg_tok_s = ts;
        }
    }
    Ok(rows)
}

fn median(rows: &[Row]) -> Row {
    let med = |f: fn(&Row) -> f64| percentile(rows.iter().map(f).collect(), 0.5);
    Row {
        what: rows[0].what.clone(),
        pp_tok_s: med(|r| r.pp_tok_s),
        tg_tok_s: med(|r| r.tg_tok_s),
        tg_depth_tok_s: med(|r| r.tg_depth_tok_s),
        ttft_ms: med(|r| r.ttft_ms),
        peak_rss_mib: med(|r| r.peak_rss_mib),
        prefix_cold_ms: med(|r| r.prefix_cold_ms),
        prefix_warm_ms: med(|r| r.prefix_warm_ms),
    }
}

fn markdown(rows: &[Row], args: &BenchArgs) -> String {
    let mut s = format!(
        "| what | pp{} tok/s | tg{} tok/s | tg{} @ {} tok/s | TTFT \"My name is\" ms | peak RSS MiB |\n|---|---|---|---|---|---|\n",
        args.prompt_tokens, args.gen_tokens, args.gen_tokens, args.depth
    );
    for r in rows {
        s += &format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            r.what, r.pp_tok_s, r.tg_tok_s, r.tg_depth_tok_s, r.ttft_ms, r.peak_rss_mib
        );
    }
    for theirs in &rows[1..] {
        s += &format!(
            "| ratio ours / {} | {:.2} | {:.2} | {:.2} | | |\n",
            theirs.what,
            rows[0].pp_tok_s / theirs.pp_tok_s,
            rows[0].tg_tok_s / theirs.tg_tok_s,
            rows[0].tg_depth_tok_s / theirs.tg_depth_tok_s
        );
    }
    let ours = &rows[0];
    s += &format!(
        "\n| prefix reuse (1,000-token prefix) | cold TTFT ms | TTFT with cached prefix + 20 tokens ms | warm / cold |\n|---|---|---|---|\n| lmstudio-rs | {:.1} | {:.1} | {:.3} |\n",
        ours.prefix_cold_ms,
        ours.prefix_warm_ms,
        ours.prefix_warm_ms / ours.prefix_cold_ms
    );
    s += &format!(
        "\n{} threads, median of {} rounds, each round ours then each llama-bench. Ours runs with its default attention on the CPU, flash attention on, as llama-bench's `-fa 1` rows (llama-bench's own default on the CPU). The `@` column decodes after that many tokens of context (llama-bench's `-d`); llama-bench keeps a window-sized cache for the window layers (`swa_full = false`), ours keeps every cell (so that a cache can be cut anywhere and a restore keeps its bits), which flash attention skips where the window masks them.\n",
        args.threads, args.repetitions
    );
    s
}

/// Client-side view of one streamed completion: time to the first fragment, and decode speed
/// from the first fragment to the last.
fn client_side(model: &lmstudio::Llm, prompt: &str, config: lmstudio::Config) -> Result<(f64, f64)> {
    let started = std::time::Instant::now();
    let mut stream = model.complete_stream(prompt, config)?;
    let mut first = None;
    let mut last = started;
    let mut tokens_after_first = 0u32;
    for fragment in &mut stream {
        let fragment = fragment?;
        let now = std::time::Instant::now();
        match first {
            None => first = Some(now),
            Some(_) => tokens_after_first += fragment.tokens_count,
        }
        last = now;
    }
    let first = first.context("no fragment arrived")?;
    let decode = f64::from(tokens_after_first) / (last - first).as_secs_f64();
    Ok(((first - started).as_secs_f64(), decode))
}

#[derive(Serialize, Clone)]
struct PathRow {
    path: String,
    decode_tok_s: f64,
    first_fragment_ms: f64,
}

/// Decode speed and request-to-first-fragment time through the embedded API and through the
/// websocket protocol to `lms server` on loopback, alternating, same model and threads.
fn remote_path(
    embedded: &lmstudio::Llm,
    model_path: &std::path::Path,
    args: &BenchArgs,
) -> Result<(String, Vec<PathRow>)> {
    let server = load::ours(model_path, &embedded.info().model_key, 1, args.threads, &[])?;
    let remote = lmstudio::Client::connect(&server.addr().to_string())?.llm(&embedded.info().model_key)?;
    let config = |seed| lmstudio::Config { max_tokens: Some(args.gen_tokens), seed: Some(seed), ..Default::default() };
    let mut samples: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..args.repetitions.max(1) {
        for (i, model) in [embedded, &remote].into_iter().enumerate() {
            let prompt = format!("{round} Once upon a time");
            samples[i].push(client_side(model, &prompt, config(round as u32))?);
        }
    }
    server.stop();
    let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| percentile(v.iter().map(f).collect(), 0.5);
    let rows: Vec<PathRow> = ["embedded API", "websocket to lms server (loopback)"]
        .iter()
        .zip(&samples)
        .map(|(name, v)| PathRow {
            path: name.to_string(),
            decode_tok_s: med(v, |s| s.1),
            first_fragment_ms: med(v, |s| s.0) * 1000.0,
        })
        .collect();
    let mut md = "\n| path | decode tok/s (client-side) | request to first fragment ms |\n|---|---|---|\n".to_owned();
    for r in &rows {
        md += &format!("| {} | {:.1} | {:.1} |\n", r.path, r.decode_tok_s, r.first_fragment_ms);
    }
    md += &format!("| websocket / embedded | {:.2} | |\n", rows[1].decode_tok_s / rows[0].decode_tok_s);
    Ok((md, rows))
}
