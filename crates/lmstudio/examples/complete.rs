//! Generate a completion and print its stats (the seed page's first three steps).
//!
//! Run: `cargo run --release --example complete` (after `lms get`, which fetches the default model).

use lmstudio as lms;

fn main() -> lms::Result<()> {
    // 1. Instantiate a model.
    let model = lms::llm("gemma-3-270m")?;

    // 2. Generate a completion.
    let config = lms::Config { max_tokens: Some(100), seed: Some(1), ..Default::default() };
    let result = model.complete("My name is", config)?;
    println!("{result}");

    // 3. Print prediction stats.
    println!("Model used: {}", result.model_info.display_name);
    println!("Predicted tokens: {:?}", result.stats.predicted_tokens_count);
    println!("Time to first token (seconds): {:?}", result.stats.time_to_first_token_sec);
    println!("Stop reason: {}", result.stats.stop_reason);
    Ok(())
}
