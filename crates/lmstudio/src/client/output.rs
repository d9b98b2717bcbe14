//! What a chat's output is, read while it streams: reasoning split from the answer
//! ([`crate::reasoning`]), and calls read out of the answer ([`crate::tools`]), on a thread of
//! their own between the engine and the caller, so that fragments are labelled and call syntax is
//! never shown.

use crate::reasoning::{Pieces, ReasoningReader};
use crate::tools::CallReader;
use crate::types::config::{Config, ReasoningParsing};
use crate::types::error::{Error, Result};
use crate::types::event::Event;
use crate::types::result::{Fragment, PredictionResult, ReasoningType, StopReason};

/// How a prediction's output is read; the default reads nothing (a raw completion).
#[derive(Debug, Default)]
pub(super) struct OutputReader {
    reasoning: Option<ReasoningReader>,
    calls: Option<CallReader>,
    /// Tokens given out as reasoning so far.
    reasoning_tokens: u64,
    /// The reasoning and the answer (call syntax still in it) read so far: the engine's fragments
    /// make up its whole output, so these are the result's at the end.
    reasoning_text: String,
    answer_text: String,
}

impl OutputReader {
    /// The reader of a chat whose prompt is `prompt`: reasoning as `config` parses it (a prompt
    /// that ends with the start marker opened it), calls with `calls`.
    pub(super) fn of_chat(prompt: &str, config: &Config, calls: Option<CallReader>) -> Self {
        let parsing = config.reasoning_parsing.clone().unwrap_or_default();
        let reasoning = parsing.enabled.then(|| {
            let ReasoningParsing { start_string, end_string, .. } = &parsing;
            ReasoningReader::new(start_string, end_string, prompt.trim_end().ends_with(start_string.as_str()))
        });
        Self { reasoning, calls, reasoning_tokens: 0, reasoning_text: String::new(), answer_text: String::new() }
    }

    /// Events for the engine, read on a thread of their own into `out`; `out` itself when there
    /// is nothing to read.
    pub(super) fn spawn(self, out: flume::Sender<Event>) -> Result<flume::Sender<Event>> {
        if self.reasoning.is_none() && self.calls.is_none() {
            return Ok(out);
        }
        let (tx, events) = flume::unbounded();
        std::thread::Builder::new()
            .name("lms-output".into())
            .spawn(move || self.run(&events, &out))
            .map_err(|e| Error::Engine(format!("no thread to read the output: {e}")))?;
        Ok(tx)
    }

    fn run(mut self, events: &flume::Receiver<Event>, out: &flume::Sender<Event>) {
        let mut pending = empty();
        for event in events.iter() {
            let sent = match event {
                Event::Fragment(f) => {
                    pending.tokens_count += f.tokens_count;
                    pending.logprobs.extend(f.logprobs);
                    let pieces = match &mut self.reasoning {
                        Some(r) => r.feed(&f.content),
                        None => vec![(ReasoningType::None, f.content)],
                    };
                    self.send(pieces, &mut pending, out)
                }
                Event::Done(done) => match *done {
                    Ok(mut result) => {
                        let tail = self.reasoning.as_mut().map(ReasoningReader::finish).unwrap_or_default();
                        if !self.send(tail, &mut pending, out) {
                            return;
                        }
                        let rest = self.finish(&mut result);
                        let last = Fragment { content: rest, ..std::mem::replace(&mut pending, empty()) };
                        if !last.content.is_empty() && out.send(Event::Fragment(last)).is_err() {
                            return;
                        }
                        out.send(Event::Done(Box::new(Ok(result)))).is_ok()
                    }
                    failed => out.send(Event::Done(Box::new(failed))).is_ok(),
                },
                other => out.send(other).is_ok(),
            };
            if !sent {
                return; // the caller went away; the engine sees the cancel
            }
        }
    }

    /// Sends the labelled pieces that have text to show (answer text through the call reader),
    /// the tokens and log probabilities so far with the first of them.
    fn send(&mut self, pieces: Pieces, pending: &mut Fragment, out: &flume::Sender<Event>) -> bool {
        for (kind, text) in pieces {
            match kind {
                ReasoningType::Reasoning => self.reasoning_text.push_str(&text),
                ReasoningType::None => self.answer_text.push_str(&text),
                ReasoningType::StartTag | ReasoningType::EndTag => {}
            }
            let content = match (&mut self.calls, kind) {
                (Some(calls), ReasoningType::None) => calls.feed(&text),
                _ => text,
            };
            if content.is_empty() {
                continue;
            }
            let fragment = Fragment { content, reasoning: kind, ..std::mem::replace(pending, empty()) };
            if kind != ReasoningType::None {
                self.reasoning_tokens += u64::from(fragment.tokens_count);
            }
            if out.send(Event::Fragment(fragment)).is_err() {
                return false;
            }
        }
        true
    }

    /// The result's reasoning, answer and calls, from what was read (the whole output, all its
    /// pieces sent); the answer text not shown yet.
    fn finish(&mut self, result: &mut PredictionResult) -> String {
        let (reasoning, answer) = (std::mem::take(&mut self.reasoning_text), std::mem::take(&mut self.answer_text));
        if !reasoning.is_empty() {
            result.stats.reasoning_tokens_count = Some(self.reasoning_tokens);
        }
        result.reasoning_content = reasoning;
        let Some(calls) = &mut self.calls else {
            result.content = answer;
            return String::new();
        };
        let (text, tool_calls, rest) = calls.finish(&answer);
        // Calls end an answer that ended by itself; a cut or a failure says so.
        let natural = matches!(result.stats.stop_reason, StopReason::EosFound | StopReason::StopStringFound);
        if !tool_calls.is_empty() && natural {
            result.stats.stop_reason = StopReason::ToolCalls;
        }
        (result.content, result.tool_calls) = (text, tool_calls);
        rest
    }
}

fn empty() -> Fragment {
    Fragment { content: String::new(), tokens_count: 0, logprobs: Vec::new(), reasoning: ReasoningType::None }
}
