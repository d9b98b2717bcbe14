//! The commands that manage a running server's models, as LM Studio's `lms` manages its daemon's:
//! `ps`, `load`, `unload`, `server status`. The server is found at `$LMSTUDIO_HOST` (host:port),
//! else on the default port; they speak LM Studio's SDK protocol to it.

use anyhow::{bail, Context, Result};
use clap::Args;

/// Where the server is looked for.
pub fn host() -> String {
    std::env::var("LMSTUDIO_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1:1234".into())
}

/// A client of the running server, or an error that says how to start one.
fn server() -> Result<lmstudio::Client> {
    let host = host();
    lmstudio::Client::connect(&host)
        .with_context(|| format!("no server at {host}: start one with `lms server start` (or set LMSTUDIO_HOST)"))
}

/// `lms ps [--json]`: the loaded instances.
pub fn ps(json: bool) -> Result<()> {
    let loaded = server()?.list_loaded()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&loaded)?);
        return Ok(());
    }
    if loaded.is_empty() {
        eprintln!("no models loaded (lms load KEY)");
        return Ok(());
    }
    println!(
        "{:<28} {:<24} {:>7} {:>8} {:>7} {:>6} {:>9} {:>8}",
        "IDENTIFIER", "MODEL", "CONTEXT", "PARALLEL", "RUNNING", "QUEUED", "TTL LEFT", "MEMORY"
    );
    for i in loaded {
        let state = i.state.unwrap_or_default();
        let ttl_left = state.ttl_left_ms.map_or("-".into(), |ms| duration(ms / 1000));
        println!(
            "{:<28} {:<24} {:>7} {:>8} {:>7} {:>6} {:>9} {:>5} MiB{}",
            i.identifier.as_deref().unwrap_or("?"),
            i.model_key,
            i.context_length.unwrap_or(0),
            state.activity.slots,
            state.activity.running,
            state.activity.queued,
            ttl_left,
            state.memory_mib,
            if state.jit { "  (JIT)" } else { "" },
        );
    }
    Ok(())
}

/// `1h 05m`, `4m 10s`, `12s`.
fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Options of `lms load`.
#[derive(Args)]
pub struct LoadArgs {
    /// The model (key, path or part of one).
    model: String,
    /// The name the instance answers to (default: the key, then `key:2`...).
    #[arg(long)]
    identifier: Option<String>,
    /// Tokens of context per slot.
    #[arg(long)]
    context_length: Option<u32>,
    /// Predictions that run at once.
    #[arg(long)]
    parallel: Option<u32>,
    /// Unload after this many seconds without a prediction.
    #[arg(long)]
    ttl: Option<u64>,
    /// Print the memory estimate of this load (weights, KV cache, compute, prompt cache) and what
    /// is available, from the local models directory; load nothing.
    #[arg(long)]
    estimate_only: bool,
    /// GPU offload, as LM Studio's `lms load --gpu`: `off`, `max` or a share of the layers in
    /// 0..1. Where no GPU device is found (`lms runtime ls`), `max` runs on the CPU and a share
    /// above 0 is refused.
    #[arg(long, value_name = "off|max|0..1")]
    gpu: Option<lmstudio::GpuOffload>,
    #[command(flatten)]
    attention: crate::loading::Attention,
    /// How an embedding's token outputs become one vector (default: what the model file names,
    /// mean where it names none).
    #[arg(long, value_name = "mean|cls|last|rank")]
    pooling: Option<lmstudio::Pooling>,
    /// Put the model's layers on these llama.cpp RPC workers (`lms rpc-worker` on each host;
    /// `host:port,...`), as the server reaches them; `--gpu` says how many layers go.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    rpc: Vec<String>,
    /// When the name matches several models, load the first of them (in path order) instead of
    /// listing them.
    #[arg(short = 'y', long = "yes")]
    yes: bool,
}

/// `lms load`: a new instance on the running server.
pub fn load(args: LoadArgs) -> Result<()> {
    let config = lmstudio::LoadConfig {
        identifier: args.identifier,
        context_length: args.context_length,
        parallel: args.parallel,
        ttl: args.ttl,
        gpu: args.gpu,
        flash_attention: args.attention.flash_attention,
        pooling: args.pooling,
        rpc: args.rpc,
        ..Default::default()
    };
    if args.estimate_only {
        let (estimate, available) = lmstudio::Client::new().estimate(&args.model, &config)?;
        /// `lms load --estimate-only --json`.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Estimate {
            estimate: lmstudio::MemoryEstimate,
            available_mib: Option<u64>,
        }
        println!("{}", serde_json::to_string_pretty(&Estimate { estimate, available_mib: available })?);
        eprintln!(
            "loading {} needs about {estimate}; available: {}",
            args.model,
            available.map_or("unknown".into(), |a| format!("{a} MiB"))
        );
        return Ok(());
    }
    let client = server()?;
    let llm = match client.load_with(&args.model, &config, &crate::loading::progress_bar()) {
        Err(lmstudio::Error::AmbiguousModel { candidates, .. }) if args.yes && !candidates.is_empty() => {
            let first = candidates.iter().min().cloned().unwrap_or_default();
            eprintln!("{} names {} models; loading {first}", args.model, candidates.len());
            client.load_with(&first, &config, &crate::loading::progress_bar())?
        }
        other => other?,
    };
    let info = llm.info();
    println!("{}", llm.identifier());
    eprintln!("loaded {} ({}, context {}) on {}", info.model_key, info.path, info.context_length.unwrap_or(0), host());
    Ok(())
}

/// `lms unload ID | --all`.
pub fn unload(identifier: Option<String>, all: bool) -> Result<()> {
    let client = server()?;
    let targets = match (identifier, all) {
        (Some(id), false) => vec![id],
        (None, true) => client.list_loaded()?.into_iter().filter_map(|i| i.identifier).collect(),
        _ => bail!("name one instance (lms ps lists them) or pass --all"),
    };
    for id in targets {
        client.unload(&id)?;
        eprintln!("unloaded {id}");
    }
    Ok(())
}

/// `lms server status`: whether a server answers, and what it has loaded.
pub fn status() -> Result<()> {
    let host = host();
    match lmstudio::Client::connect(&host) {
        Ok(client) => {
            let loaded = client.list_loaded()?;
            println!("running on {host}; {} model instance(s) loaded", loaded.len());
            Ok(())
        }
        Err(e) => bail!("not running on {host} ({e})"),
    }
}

/// Where `lms server start` notes its process id, per port.
fn pid_file(port: u16) -> std::path::PathBuf {
    let base = dirs::runtime_dir().or_else(dirs::data_local_dir).unwrap_or_else(std::env::temp_dir);
    base.join("lmstudio-rs").join(format!("server-{port}.pid"))
}

pub fn write_pid_file(port: u16) -> std::io::Result<()> {
    let path = pid_file(port);
    std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
    std::fs::write(path, std::process::id().to_string())
}

pub fn remove_pid_file(port: u16) {
    let path = pid_file(port);
    // Only our own: another server may have started on the port since.
    if std::fs::read_to_string(&path).is_ok_and(|p| p.trim() == std::process::id().to_string()) {
        let _ = std::fs::remove_file(path);
    }
}

/// `lms server stop`: SIGTERM to the `lms` process whose pid file names the port, then waits for it.
#[cfg(unix)]
pub fn stop() -> Result<()> {
    let host = host();
    let port: u16 = host.rsplit(':').next().and_then(|p| p.parse().ok()).context("LMSTUDIO_HOST has no port")?;
    let path = pid_file(port);
    let pid: i32 = std::fs::read_to_string(&path)
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("no server started by lms on port {port} ({} is missing)", path.display()))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("lms") {
        let _ = std::fs::remove_file(&path);
        bail!("the server on port {port} (pid {pid}) is no longer running");
    }
    // kill(1): this crate has no unsafe code, so no kill(2) of its own.
    let signalled = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    if !signalled.is_ok_and(|s| s.success()) {
        bail!("cannot signal pid {pid} (kill -TERM failed)");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Gone, or a zombie its parent has not reaped yet.
    let running = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
    };
    while running() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("stopped the server on port {port} (pid {pid})");
    Ok(())
}

#[cfg(not(unix))]
pub fn stop() -> Result<()> {
    bail!("`lms server stop` needs a Unix system; stop the server with Ctrl-C")
}
