//! Get an LLM to simulate a terminal: each command you type is appended to the history, and the
//! model completes what the terminal would print, up to the next `$` prompt.
//!
//! Run: `cargo run --release --example terminal` and type commands; `exit` or Ctrl-D ends it.

use std::io::{BufRead, Write};

use lmstudio as lms;

fn main() -> lms::Result<()> {
    let model = lms::default_llm()?;
    let mut console_history: Vec<String> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        print!("$ ");
        std::io::stdout().flush()?;
        let Some(user_command) = lines.next().transpose()? else {
            println!();
            break;
        };
        if user_command.trim() == "exit" {
            break;
        }
        console_history.push(format!("$ {user_command}"));
        let history_prompt = console_history.join("\n");
        let config = lms::Config { stop_strings: vec!["$".into()], max_tokens: Some(200), ..Default::default() };
        let mut prediction_stream = model.complete_stream(&history_prompt, config)?;
        for fragment in &mut prediction_stream {
            print!("{}", fragment?.content);
            std::io::stdout().flush()?;
        }
        println!();
        console_history.push(prediction_stream.result()?.content);
    }
    Ok(())
}
