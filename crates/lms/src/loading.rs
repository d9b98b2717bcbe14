//! Loading a model in this process for a command, with a progress bar on stderr.

use anyhow::Result;

// The attention option of the commands that load models (`lms load`, `lms server start`); a
// plain comment, as clap would take a doc comment for the about text of the commands.
#[derive(clap::Args)]
pub struct Attention {
    /// llama.cpp's flash attention for the models loaded (LM Studio's `flashAttention`): on by
    /// default on the CPU (faster decoding, most with several predictions at once and with a long
    /// context), off by default with layers on a GPU.
    #[arg(long, value_name = "on|off", num_args = 0..=1, require_equals = true, default_missing_value = "on",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub flash_attention: Option<bool>,
}

/// Loads the model asked for; with no name, the default model, fetched first if missing.
pub fn load_model(name: Option<&str>, config: &lmstudio::LoadConfig) -> Result<lmstudio::Llm> {
    let store = lmstudio::ModelStore::from_env();
    let name = match name {
        Some(n) => n.to_owned(),
        None => {
            store.ensure_default_model(&mut |line| eprintln!("{line}"))?;
            lmstudio::DEFAULT_MODEL_KEY.to_owned()
        }
    };
    Ok(lmstudio::Client::with_store(store).load_with(&name, config, &progress_bar())?)
}

/// Load progress as a bar on stderr when it is a terminal (nothing in a pipe or a log); a JIT
/// eviction is said either way.
pub fn progress_bar() -> lmstudio::OnLoad {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    std::sync::Arc::new(move |event| match event {
        lmstudio::LoadEvent::UnloadingOther(info) => {
            eprintln!("unloading {} (loaded on demand before)", info.identifier.as_deref().unwrap_or(&info.model_key));
        }
        lmstudio::LoadEvent::Progress(p) if tty => {
            const WIDTH: usize = 30;
            let filled = ((p.clamp(0.0, 1.0) * WIDTH as f32) as usize).min(WIDTH);
            eprint!("\rloading [{}{}] {:>3.0}%", "#".repeat(filled), " ".repeat(WIDTH - filled), p * 100.0);
            if p >= 1.0 {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
        lmstudio::LoadEvent::Progress(_) => {}
    })
}
