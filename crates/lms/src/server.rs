//! `lms server start`: the server in the foreground until Ctrl-C or SIGTERM.

use anyhow::Result;
use clap::Args;

use crate::manage;

#[derive(Args)]
pub struct ServerArgs {
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
    /// Where the prompt cache is kept across restarts: written when a model unloads (and at
    /// shutdown), read back when the same model file loads again, so prompts warm before a
    /// restart are warm after it. Default: `$LMSTUDIO_PROMPT_CACHE_DIR`, else the platform's cache
    /// directory (`~/.cache/lmstudio-rs/prompt-cache`).
    #[arg(long, value_name = "DIR")]
    prompt_cache_dir: Option<std::path::PathBuf>,
    /// Keep no prompt cache across restarts.
    #[arg(long, conflicts_with = "prompt_cache_dir")]
    no_prompt_cache_dir: bool,
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
    gpu: Option<lmstudio::GpuOffload>,
    #[command(flatten)]
    attention: crate::loading::Attention,
    /// Put the layers of the models the server loads on these llama.cpp RPC workers (`lms
    /// rpc-worker` on each host; `host:port,...`). A worker lost while a model is loaded ends the
    /// server (llama.cpp aborts): run it under a supervisor (deploy/systemd/lms-server.service).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
    rpc: Vec<String>,
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
    /// What the server queues for one SDK websocket that does not read its replies, in MiB; past
    /// it the client is disconnected.
    #[arg(long, default_value_t = (lmstudio_server::MAX_SOCKET_QUEUE_BYTES >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_socket_queue_mib: u64,
    /// Do not also listen on the SDK discovery port 41343.
    #[arg(long)]
    no_discovery_port: bool,
    /// Do not serve the web app (chat, completions, models) at `/`.
    #[arg(long)]
    no_web_app: bool,
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
    guardrail: lmstudio::Guardrail,
    /// Keep the models loaded on demand when another is: without this, loading one on demand
    /// unloads the one loaded on demand before it (as LM Studio does).
    #[arg(long)]
    no_auto_evict: bool,
}

/// Runs `lms server start`.
pub fn start(args: ServerArgs) -> Result<()> {
    let load = lmstudio::LoadConfig {
        parallel: Some(args.parallel),
        context_length: args.context_length,
        cpu_threads: args.threads,
        prompt_cache_mib: args.prompt_cache_mib,
        prompt_cache_dir: if args.no_prompt_cache_dir {
            None
        } else {
            Some(args.prompt_cache_dir.clone().unwrap_or_else(lmstudio::default_prompt_cache_dir))
        },
        prompt_cache_disk_mib: args.prompt_cache_disk_mib,
        try_mmap: args.mmap,
        gpu: args.gpu,
        flash_attention: args.attention.flash_attention,
        ttl: (args.ttl > 0).then_some(args.ttl),
        guardrail: args.guardrail,
        rpc: args.rpc.clone(),
        ..Default::default()
    };
    load.validate()?;
    let client = lmstudio::Client::with_load_config(lmstudio::ModelStore::from_env(), load.clone());
    client.set_auto_evict(!args.no_auto_evict)?;
    if let Some(model) = &args.model {
        let llm = client.load(model, &lmstudio::LoadConfig { ttl: None, ..load.clone() })?;
        eprintln!("loaded {}", llm.identifier());
    }
    let config = lmstudio_server::ServerConfig {
        host: args.host,
        port: args.port,
        discovery_port: !args.no_discovery_port,
        web_app: !args.no_web_app,
        api_key: args.api_key,
        cors_origins: args.cors_origins,
        header_read_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections as usize,
        max_body_bytes: (args.max_body_mib << 20) as usize,
        max_socket_queue_bytes: (args.max_socket_queue_mib << 20) as usize,
    };
    let web_app = config.web_app;
    let runtime = tokio::runtime::Runtime::new()?;
    let pid_port = std::sync::Mutex::new(None);
    // Ctrl-C or SIGTERM (service managers, `kill`, `lms server stop`): the same orderly shutdown.
    // The handlers go in before the pid file and "listening on" are written: whoever reads those
    // may signal at once, and a signal without a handler would kill the process mid-flight.
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in_runtime = runtime.enter();
        signal(SignalKind::interrupt()).and_then(|int| Ok((int, signal(SignalKind::terminate())?))).ok()
    };
    let served = runtime.block_on(lmstudio_server::serve(
        client,
        config,
        |addrs| {
            // The pid file first: whoever reads "listening on" may run `lms server stop` at once.
            if let Some(a) = addrs.first() {
                *pid_port.lock().unwrap_or_else(|p| p.into_inner()) = Some(a.port());
                if let Err(e) = manage::write_pid_file(a.port()) {
                    eprintln!("warning: no pid file, so `lms server stop` cannot find this server: {e}");
                }
            }
            for a in addrs {
                eprintln!("listening on http://{a}");
            }
            if let Some(a) = addrs.first().filter(|_| web_app) {
                eprintln!("web app: http://{a}/ (chat, completions, models)");
            }
        },
        async {
            #[cfg(unix)]
            match signals {
                Some((mut int, mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
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
