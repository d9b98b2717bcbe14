//! Progress callbacks: prompt processing from 0.0 to 1.0, the first token, each fragment and the
//! final message.
//!
//! Run: `cargo run --release --example progress`

use lmstudio as lms;

fn main() -> lms::Result<()> {
    let llm = lms::default_llm()?;
    // A long prompt, so that processing it takes a while and reports several steps.
    let prompt = format!("{}My name is", "Here is a long story about a small town. ".repeat(150));
    let config = lms::Config { max_tokens: Some(30), seed: Some(3), ..Default::default() };
    let completion = llm
        .complete_stream(&prompt, config)?
        .on_prompt_processing_progress(|progress| println!("{:.1}% complete", progress * 100.0))
        .on_first_token(|| println!("[first token]"))
        .on_prediction_fragment(|fragment| print!("{}", fragment.content))
        .on_message(|message| println!("\n[message: {} chars]", message.content.len()))
        .wait_for_result()?;
    println!(
        "{} tokens, stop reason {}",
        completion.stats.predicted_tokens_count.unwrap_or(0),
        completion.stats.stop_reason
    );
    Ok(())
}
