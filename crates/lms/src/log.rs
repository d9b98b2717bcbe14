//! `lms log stream`: the running server's live log (`GET /logs`), as LM Studio's CLI shows it:
//! the text each prediction gives the model, what it answered (with `--stats`, its stats), or the
//! server's own lines; `--json` prints each event as one line of JSON.

use std::io::{BufRead, BufReader, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The model's input and output.
    Model,
    /// The server's lines (requests, status, time).
    Server,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Input,
    Output,
}

/// Options of `lms log stream`.
#[derive(Args)]
pub struct StreamArgs {
    /// What to stream.
    #[arg(long, value_enum, default_value = "model")]
    source: Source,
    /// With `--source model`: `input`, `output` or both (comma-separated). Default: input.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "input")]
    filter: Vec<Direction>,
    /// Each event as one line of JSON.
    #[arg(long)]
    json: bool,
    /// With outputs: the prediction's stats (tokens, tokens per second, time to first token).
    #[arg(long)]
    stats: bool,
}

/// Runs `lms log stream` until the server goes away or the user stops it.
pub fn stream(args: StreamArgs) -> Result<()> {
    let host = crate::manage::host();
    let mut sock = std::net::TcpStream::connect(&host)
        .with_context(|| format!("no server at {host}: start one with `lms server start` (or set LMSTUDIO_HOST)"))?;
    let key = std::env::var("LMS_API_KEY").ok().filter(|k| !k.is_empty());
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    // HTTP/1.0: the body comes as it is, until the server closes (no chunks to take apart).
    write!(sock, "GET /logs HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n{auth}\r\n")?;
    let mut reader = BufReader::new(sock);
    let mut status = String::new();
    reader.read_line(&mut status)?;
    if status.split(' ').nth(1) != Some("200") {
        bail!("the server refused the log stream: {} (a key goes in $LMS_API_KEY)", status.trim());
    }
    eprintln!(
        "streaming {} logs from {host} (Ctrl-C stops)",
        if args.source == Source::Model { "model" } else { "server" }
    );
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(data) {
                if let Some(text) = render(&event, &args) {
                    writeln!(out, "{text}")?;
                    out.flush()?;
                }
            }
        }
        line.clear();
    }
    eprintln!("the server closed the log stream");
    Ok(())
}

/// How one event prints, or `None` when the options leave it out.
fn render(event: &serde_json::Value, args: &StreamArgs) -> Option<String> {
    let data = &event["data"];
    let kind = data["type"].as_str()?;
    let wanted = match kind {
        "llm.prediction.input" => args.source == Source::Model && args.filter.contains(&Direction::Input),
        "llm.prediction.output" => args.source == Source::Model && args.filter.contains(&Direction::Output),
        "server.log" => args.source == Source::Server,
        _ => false,
    };
    if !wanted {
        return None;
    }
    if args.json {
        return Some(event.to_string());
    }
    let when = event["timestamp"].as_u64().map(time_of_day).unwrap_or_default();
    let text = match kind {
        "server.log" => {
            format!("[{when}] [{}] {}", data["level"].as_str().unwrap_or("info"), data["content"].as_str()?)
        }
        _ => {
            let direction = if kind.ends_with("input") { "input" } else { "output" };
            let body = data[direction].as_str()?;
            let mut text = format!("[{when}] {} {direction}:\n{body}", data["modelIdentifier"].as_str().unwrap_or("?"));
            if args.stats && direction == "output" {
                let s = &data["stats"];
                text += &format!(
                    "\n(stats: {} prompt tokens, {} predicted, {:.1} tok/s, first token after {:.3} s, stop: {})",
                    s["promptTokensCount"],
                    s["predictedTokensCount"],
                    s["tokensPerSecond"].as_f64().unwrap_or(0.0),
                    s["timeToFirstTokenSec"].as_f64().unwrap_or(0.0),
                    s["stopReason"].as_str().unwrap_or("?")
                );
            }
            text
        }
    };
    Some(text)
}

/// `HH:MM:SS` (UTC) of a time in milliseconds since the epoch.
fn time_of_day(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}
