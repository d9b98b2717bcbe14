//! `lms-dev bench-profile`: where a server's time goes while N clients stream, ours beside
//! llama.cpp's `llama-server` on the same requests (the load test's clients), sampled by Linux
//! `perf` (Debian's `linux-perf`). Each server's samples are sorted into what the time is spent
//! on (the matrix kernels, the other tensor ops, threads waiting for each other, sampling, text,
//! the HTTP path, the kernel...) and into its threads. Writes bench/profile.md.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::load::{llama_server, ours, prompts, Server};
use super::loadgen;

/// Options of `lms-dev bench-profile`.
#[derive(Args)]
pub struct ProfileArgs {
    /// CPU threads of each server's model.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// Concurrent streaming clients (the server gets as many slots).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    clients: Vec<usize>,
    /// Tokens each client asks for.
    #[arg(long, default_value_t = 192)]
    tokens: u32,
    /// Samples per second and thread.
    #[arg(long, default_value_t = 499)]
    frequency: u32,
    /// The folder with llama.cpp's `llama-server` (`scripts/build-llama-tools`).
    #[arg(long, default_value = "target/llama-tools/bin")]
    llama_tools: PathBuf,
    /// Write the tables to this markdown file (e.g. `bench/profile.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What a sample's function is spent on, by its symbol (and shared object).
const KINDS: &[(&str, &[&str])] = &[
    (
        "attention (KQ and KQV products, softmax; flash attention)",
        &["vec_dot_f16", "flash_attn", "fp32_to_fp16", "soft_max"],
    ),
    (
        "matrix kernels (quantized dot products, gemm/gemv)",
        &["vec_dot", "gemm", "gemv", "mul_mat", "quantize_row", "repack"],
    ),
    (
        "threads waiting (OpenMP, ggml barriers, yields)",
        &[
            "gomp",
            "omp_",
            "ggml_barrier",
            "sched_yield",
            "ggml_graph_compute_thread_sync",
            "futex",
            "pthread_cond",
            "ggml_graph_compute_check",
        ],
    ),
    (
        "sampling",
        &[
            "sampler",
            "sample",
            "softmax_cpu",
            "logit",
            "top_k",
            "top_p",
            "min_p",
            "penalt",
            "select_nth",
            "partial_sort",
            "__introselect",
            "nth_element",
            "rand_distr",
            "gumbel",
        ],
    ),
    (
        "text (detokenize, stop strings, UTF-8)",
        &[
            "token_to_piece",
            "detoken",
            "stop_str",
            "utf8",
            "llama_vocab",
            "unicode",
            "memchr",
            "from_utf8",
            "aho_corasick",
        ],
    ),
    (
        "HTTP, JSON, async runtime",
        &[
            "tokio",
            "hyper",
            "axum",
            "serde",
            "mio::",
            "h1::",
            "httplib",
            "nlohmann",
            "json",
            "tungstenite",
            "sse",
            "bytes::",
        ],
    ),
    (
        "memory (copies, allocation)",
        &["memcpy", "memmove", "memset", "malloc", "free", "realloc", "__libc_calloc", "alloc::", "cfree"],
    ),
    (
        "other tensor ops (norms, rope, activations, copies into the KV cache)",
        &["ggml_", "llama_", "ggml-cpu", "fp16", "fp32", "gelu", "silu", "rope", "norm"],
    ),
];

/// Starts one of the servers compared.
type StartServer<'a> = Box<dyn Fn() -> Result<Server> + 'a>;

fn kind_of(dso: &str, symbol: &str) -> &'static str {
    if dso.contains("kernel") {
        return "the kernel (system calls, page faults, scheduling)";
    }
    let s = symbol.to_ascii_lowercase();
    if dso.contains("gomp") {
        return KINDS[2].0;
    }
    KINDS.iter().find(|(_, needles)| needles.iter().any(|n| s.contains(n))).map_or("other", |(name, _)| name)
}

/// One server's profile at one load: the share of samples by kind and by thread.
struct Profile {
    server: &'static str,
    clients: usize,
    aggregate_tok_s: f64,
    kinds: BTreeMap<&'static str, f64>,
    threads: Vec<(String, f64)>,
    top: Vec<(f64, String)>,
}

pub fn run(args: &ProfileArgs) -> Result<()> {
    if Command::new("perf").arg("--version").output().is_err() {
        bail!("`perf` is missing: apt-get install linux-perf");
    }
    let stored = lmstudio::ModelStore::from_env().resolve(lmstudio::DEFAULT_MODEL_KEY)?;
    let (path, key) = (stored.path.clone(), stored.key.clone());
    let tool = args.llama_tools.join("llama-server");
    let mut profiles = Vec::new();
    for &n in &args.clients {
        let no_fa = ["--flash-attention=off".to_owned()];
        let servers: [(&'static str, StartServer<'_>); 3] = [
            ("lms server", Box::new(|| ours(&path, &key, n, args.threads, &[]))),
            ("lms server --flash-attention=off", Box::new(|| ours(&path, &key, n, args.threads, &no_fa))),
            ("llama-server", Box::new(|| llama_server(&tool, &path, &key, n, args.threads, &[]))),
        ];
        for (name, start) in &servers {
            let server = start()?;
            profiles.push(profile(name, &server, n, args)?);
            server.stop();
        }
    }
    let table = tables(&profiles, args);
    println!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// Samples `server` with perf while `n` clients stream.
fn profile(name: &'static str, server: &Server, n: usize, args: &ProfileArgs) -> Result<Profile> {
    // Warm: the weights paged in, the first request's one-time costs paid.
    loadgen::run(server.addr(), server.model(), &prompts(1), &[8], 1, Duration::ZERO)?;
    let data = std::env::temp_dir().join(format!("lms-profile-{}-{n}-{}.data", std::process::id(), name.len()));
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-F", &args.frequency.to_string(), "-p", &server.pid().to_string(), "-o"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf record")?;
    std::thread::sleep(Duration::from_millis(300)); // perf attached to every thread
    let timings = loadgen::run(server.addr(), server.model(), &prompts(n), &[args.tokens], n, Duration::ZERO)?;
    // SIGINT: perf writes its file and exits.
    let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
    perf.wait()?;
    let summary = loadgen::summarize(&timings);
    let report = Command::new("perf")
        .args(["report", "-q", "--stdio", "--no-children", "--sort", "comm,dso,sym", "--percent-limit", "0", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .context("perf report")?;
    let _ = std::fs::remove_file(&data);
    let mut kinds = BTreeMap::new();
    let mut threads: BTreeMap<String, f64> = BTreeMap::new();
    let mut top = Vec::new();
    for line in String::from_utf8_lossy(&report.stdout).lines() {
        // "    12.34%  lms  lms  [.] ggml_vec_dot_q4_K_q8_K"
        let mut parts = line.split_whitespace();
        let Some(share) = parts.next().and_then(|p| p.strip_suffix('%')).and_then(|p| p.parse::<f64>().ok()) else {
            continue;
        };
        let (Some(comm), Some(dso)) = (parts.next(), parts.next()) else { continue };
        let symbol = parts.skip(1).collect::<Vec<_>>().join(" ");
        *kinds.entry(kind_of(dso, &symbol)).or_insert(0.0) += share;
        *threads.entry(thread_kind(comm)).or_insert(0.0) += share;
        top.push((share, format!("{symbol} ({dso})")));
    }
    top.sort_by(|a, b| b.0.total_cmp(&a.0));
    top.truncate(8);
    let mut threads: Vec<(String, f64)> = threads.into_iter().collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("{name}, {n} clients: {:.1} tok/s", summary.aggregate_tok_s);
    Ok(Profile { server: name, clients: n, aggregate_tok_s: summary.aggregate_tok_s, kinds, threads, top })
}

/// Threads grouped by what they are: perf names them by their comm (tokio's workers, our engine
/// thread, llama-server's HTTP threads; OpenMP's workers take their parent's name).
fn thread_kind(comm: &str) -> String {
    if comm.starts_with("tokio-runtime") {
        "tokio-runtime-worker".into()
    } else {
        comm.to_owned()
    }
}

fn tables(profiles: &[Profile], args: &ProfileArgs) -> String {
    let mut s = format!(
        "# Where the time goes\n\n`lms-dev bench-profile --out bench/profile.md`: `perf record -F {}` on each server's \
         process while {} streaming clients ask for {} tokens each (the load test's prompts, temperature 0.8), ours beside \
         llama.cpp's `llama-server` (same slots, context per slot, {} threads). Shares are of the samples taken in the \
         server process, all its threads (a busy-waiting thread counts).\n\n",
        args.frequency,
        args.clients.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
        args.tokens,
        args.threads
    );
    let mut kinds: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
    kinds.push("the kernel (system calls, page faults, scheduling)");
    kinds.push("other");
    s += "| what | ";
    s += &profiles.iter().map(|p| format!("{} x{}", p.server, p.clients)).collect::<Vec<_>>().join(" | ");
    s += " |\n|---|";
    s += &"---|".repeat(profiles.len());
    s += "\n| aggregate tok/s | ";
    s += &profiles.iter().map(|p| format!("{:.1}", p.aggregate_tok_s)).collect::<Vec<_>>().join(" | ");
    s += " |\n";
    for k in kinds {
        s += &format!("| {k} | ");
        s += &profiles
            .iter()
            .map(|p| format!("{:.1}%", p.kinds.get(k).copied().unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(" | ");
        s += " |\n";
    }
    s += "\n## By thread\n\n";
    for p in profiles {
        s += &format!("- {} x{}: ", p.server, p.clients);
        s += &p.threads.iter().take(6).map(|(t, v)| format!("{t} {v:.1}%")).collect::<Vec<_>>().join(", ");
        s += "\n";
    }
    s += "\n## The busiest functions\n\n";
    for p in profiles {
        s += &format!("- {} x{}: ", p.server, p.clients);
        s += &p.top.iter().map(|(v, f)| format!("`{f}` {v:.1}%")).collect::<Vec<_>>().join(", ");
        s += "\n";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_fall_into_their_kinds() {
        assert_eq!(kind_of("lms", "ggml_vec_dot_f16"), KINDS[0].0);
        assert_eq!(kind_of("lms", "ggml_compute_forward_flash_attn_ext"), KINDS[0].0);
        assert_eq!(kind_of("lms", "ggml_vec_dot_q4_K_q8_K"), KINDS[1].0);
        assert_eq!(kind_of("libgomp.so.1.0.0", "0x0000000000021f4a"), KINDS[2].0);
        assert_eq!(kind_of("lms", "lmstudio::engine::sampler::Sampler::sample"), KINDS[3].0);
        assert_eq!(kind_of("lms", "ggml_compute_forward_rms_norm_f32"), KINDS[7].0);
        assert_eq!(kind_of("[kernel.kallsyms]", "do_syscall_64"), "the kernel (system calls, page faults, scheduling)");
        assert_eq!(kind_of("lms", "something_else"), "other");
    }
}
