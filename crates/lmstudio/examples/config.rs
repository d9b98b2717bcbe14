//! Customize inferencing parameters, given as LM Studio's camelCase JSON or as a Rust struct.
//!
//! Run: `cargo run --release --example config`

use lmstudio as lms;

fn main() -> lms::Result<()> {
    let model = lms::default_llm()?;
    let initial_text = "Once upon a time,";

    let from_json = lms::Config::from_json(r#"{"temperature": 0.6, "maxTokens": 50, "seed": 7}"#)?;
    let result = model.complete(initial_text, from_json)?;
    println!("{initial_text}{result}\n");

    let tuned = lms::Config {
        temperature: Some(0.6),
        max_tokens: Some(50),
        top_k: Some(20),
        top_p: Some(0.9),
        min_p: Some(0.05),
        repeat_penalty: Some(1.2),
        seed: Some(7),
        ..Default::default()
    };
    let result = model.complete(initial_text, tuned)?;
    println!("{initial_text}{result}");
    Ok(())
}
