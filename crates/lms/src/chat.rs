//! `lms chat`: a conversation in the terminal. Each answer streams as it is generated; the history
//! is kept (the model's chat template renders it); `/reset`, `/system TEXT`, `/exit`. Ctrl-C stops
//! the answer being generated, not the program.

use std::io::{BufRead, Write};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use clap::Args;

/// Options of `lms chat`.
#[derive(Args)]
pub struct ChatArgs {
    /// The model (key, path or loaded identifier); default: the default model, fetched if missing.
    model: Option<String>,
    /// A system prompt to start with.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Tokens of context (the whole conversation must fit; older turns are cut from the middle).
    #[arg(long)]
    context_length: Option<u32>,
    /// CPU threads.
    #[arg(long)]
    threads: Option<u32>,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let load = lmstudio::LoadConfig {
        context_length: args.context_length,
        cpu_threads: args.threads,
        parallel: Some(1),
        ..Default::default()
    };
    let model = crate::loading::load_model(args.model.as_deref(), &load)?;
    let config = lmstudio::Config { max_tokens: args.max_tokens, temperature: args.temperature, ..Default::default() };
    config.validate()?;
    let mut chat = args.system.map_or_else(lmstudio::Chat::new, lmstudio::Chat::with_system_prompt);
    // Ctrl-C cancels the answer in flight; with none, it says how to leave.
    let answering: Arc<Mutex<Option<lmstudio::CancelHandle>>> = Arc::default();
    let on_interrupt = Arc::clone(&answering);
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            while tokio::signal::ctrl_c().await.is_ok() {
                match on_interrupt.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    Some(handle) => handle.cancel(),
                    None => eprintln!("\n(/exit or Ctrl-D to leave)"),
                }
            }
        });
    });
    eprintln!("chatting with {} (/reset, /system TEXT, /exit)", model.identifier());
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        let Some(line) = lines.next() else { break };
        let line = line?;
        let line = line.trim();
        match line.split_once(' ').map_or((line, ""), |(c, rest)| (c, rest.trim())) {
            ("", _) => continue,
            ("/exit" | "/quit", _) => break,
            ("/reset", _) => {
                chat.reset();
                eprintln!("(history cleared)");
                continue;
            }
            ("/system", text) if !text.is_empty() => {
                chat.set_system_prompt(text);
                eprintln!("(system prompt set)");
                continue;
            }
            (command, _) if command.starts_with('/') => {
                eprintln!("unknown command {command}: /reset, /system TEXT, /exit");
                continue;
            }
            _ => {}
        }
        let mut next = chat.clone();
        next.add_user_message(line);
        let mut stream = match model.respond_stream(&next, config.clone()) {
            Ok(stream) => stream,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        chat = next;
        *answering.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream.cancel_handle());
        let mut out = std::io::stdout().lock();
        for fragment in &mut stream {
            match fragment {
                Ok(f) => {
                    let _ = out.write_all(f.content.as_bytes());
                    let _ = out.flush();
                }
                Err(e) => eprintln!("\nerror: {e}"),
            }
        }
        *answering.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let _ = writeln!(out);
        match stream.result() {
            Ok(result) => {
                if result.stats.stop_reason == lmstudio::StopReason::UserStopped {
                    eprintln!("[stopped]");
                }
                chat.append(&result.message());
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}
