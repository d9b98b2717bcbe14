//! The async (tokio) API: load, stream fragments as a `futures::Stream`, then await the result.
//!
//! Run: `cargo run --release --example stream_async`

use futures_util::StreamExt;
use lmstudio as lms;

#[tokio::main]
async fn main() -> lms::Result<()> {
    let model = lms::client().default_llm_async().await?;
    let config = lms::Config { max_tokens: Some(40), seed: Some(5), ..Default::default() };
    let mut stream = model.complete_stream_async("The best thing about Rust is", config).await?;
    while let Some(fragment) = stream.next().await {
        print!("{}", fragment?.content);
    }
    let result = stream.result()?;
    println!(
        "\n{} tok/s, stop reason {}",
        result.stats.tokens_per_second.unwrap_or(0.0) as u32,
        result.stats.stop_reason
    );
    Ok(())
}
