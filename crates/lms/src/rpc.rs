//! `lms rpc-worker`: llama.cpp's RPC worker, so that another machine's `lms` can put a model's
//! layers on this one (`--rpc host:port`). Served by this same binary, so both sides speak the
//! same protocol version.

use anyhow::Result;
use clap::Args;

/// Options of `lms rpc-worker`.
#[derive(Args)]
pub struct RpcWorkerArgs {
    /// The address to listen on. Loopback unless `--allow-remote`.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port.
    #[arg(long, default_value_t = 50052)]
    port: u16,
    /// CPU threads for the work it is sent (default: all cores).
    #[arg(long)]
    threads: Option<u32>,
    /// Keep large tensors a client sends here, by hash: loading the same model again then sends
    /// only the hashes.
    #[arg(long, value_name = "DIR")]
    cache: Option<std::path::PathBuf>,
    /// Listen on an address other than loopback. llama.cpp's RPC protocol has no authentication
    /// and no encryption: anyone who can reach the port can run work on this machine and read
    /// what the worker holds. Use it only on a network you trust (or behind a tunnel).
    #[arg(long)]
    allow_remote: bool,
}

/// Runs `lms rpc-worker` until the process is stopped.
pub fn run(args: RpcWorkerArgs) -> Result<()> {
    let worker = lmstudio::RpcWorker {
        host: args.host,
        port: args.port,
        threads: args.threads,
        cache_dir: args.cache,
        allow_remote: args.allow_remote,
    };
    if worker.is_remote() && worker.allow_remote {
        eprintln!(
            "warning: listening on {}: llama.cpp's RPC protocol has no authentication and no encryption; anyone who \
             reaches port {} can run work on this machine and read what it holds",
            worker.host, worker.port
        );
    }
    worker.serve()?;
    Ok(())
}
