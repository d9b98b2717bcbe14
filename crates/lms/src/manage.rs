//! The commands that manage a running server's models, as LM Studio's `lms` manages its daemon's:
//! `ps`, `load`, `unload`, `server status`. The server is found at `$LMSTUDIO_HOST` (host:port),
//! else on the default port; they speak LM Studio's SDK protocol to it.

use anyhow::{bail, Context, Result};
use clap::Args;
use lmstudio as lms;

/// Where the server is looked for.
fn host() -> String {
    std::env::var("LMSTUDIO_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "127.0.0.1:1234".into())
}

/// A client of the running server, or an error that says how to start one.
fn server() -> Result<lms::Client> {
    let host = host();
    lms::Client::connect(&host)
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
    }
    for i in loaded {
        println!(
            "{:<28} {:<24} ctx {:>6}  {:>6} MB  {}",
            i.identifier.as_deref().unwrap_or("?"),
            i.model_key,
            i.context_length.unwrap_or(0),
            i.size_bytes / 1_000_000,
            i.path
        );
    }
    Ok(())
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
}

/// `lms load`: a new instance on the running server.
pub fn load(args: LoadArgs) -> Result<()> {
    let mut config = lms::LoadConfig {
        identifier: args.identifier,
        context_length: args.context_length,
        ttl: args.ttl,
        ..Default::default()
    };
    if let Some(p) = args.parallel {
        config.parallel = p;
    }
    if args.estimate_only {
        let (estimate, available) = lms::Client::new().estimate(&args.model, &config)?;
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"estimate": estimate, "availableMib": available}))?
        );
        eprintln!(
            "loading {} needs about {estimate}; available: {}",
            args.model,
            available.map_or("unknown".into(), |a| format!("{a} MiB"))
        );
        return Ok(());
    }
    let client = server()?;
    let llm = client.load(&args.model, &config)?;
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
    match lms::Client::connect(&host) {
        Ok(client) => {
            let loaded = client.list_loaded()?;
            println!("running on {host}; {} model instance(s) loaded", loaded.len());
            Ok(())
        }
        Err(e) => bail!("not running on {host} ({e})"),
    }
}
