//! `lms-dev`: the benchmarks and the stress test of lmstudio-rs, apart from the `lms` a user
//! installs. Each writes its table into `bench/` (see bench/README.md); the server ones drive the
//! `lms` binary that lies beside this one (or `$LMS_BIN`).

mod bench;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "lms-dev", version, about = "Benchmarks and the stress test of lmstudio-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure prompt processing and decode speed (see README: Benchmarks).
    Bench(bench::BenchArgs),
    /// Measure decode speed with structured output (a JSON schema, a grammar) against the same
    /// tokens without, and the first-use compile time (see bench/structured.md).
    BenchStructured(bench::structured::StructuredArgs),
    /// Measure decode speed with n-gram speculation against without, and how often the greedy
    /// text is the same (see bench/speculation.md).
    BenchSpeculation(bench::speculation::SpeculationArgs),
    /// Measure what choosing a token costs, ours beside llama.cpp's sampler chain, on a real
    /// model's logits (see bench/sampling.md).
    BenchSampling(bench::sampling::SamplingArgs),
    /// Measure `/v1/embeddings`, ours beside llama-server's, on the same model and threads (see
    /// bench/embeddings.md).
    BenchEmbeddings(bench::embeddings::EmbeddingsArgs),
    /// Measure a model split over RPC workers against one process, and replicas behind HAProxy
    /// with prefix affinity against round robin (see bench/scale.md).
    BenchScale(bench::scale::ScaleArgs),
    /// Profile `lms server` and `llama-server` with Linux `perf` while clients stream: where the
    /// time goes (see bench/profile.md).
    BenchProfile(bench::profile::ProfileArgs),
    /// Drive `lms server` with clients that hang up and cancel, then check nothing was lost
    /// (see bench/HARDENING.md).
    Stress(bench::stress::StressArgs),
}

fn main() -> ExitCode {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LMS_LOG").unwrap_or_else(|_| "warn,llama-cpp-2=error".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::BenchStructured(args) => bench::structured::run(args),
        Command::BenchSpeculation(args) => bench::speculation::run(args),
        Command::BenchSampling(args) => bench::sampling::run(args),
        Command::BenchEmbeddings(args) => bench::embeddings::run(&args),
        Command::BenchScale(args) => bench::scale::run(&args),
        Command::BenchProfile(args) => bench::profile::run(&args),
        Command::Stress(args) => bench::stress::run(args),
    }
}
