//! The server's live log, as LM Studio's diagnostics name its events: the text each prediction
//! gives the model (`llm.prediction.input`), what the model answered with its stats
//! (`llm.prediction.output`), and the server's own lines (`server.log`: requests, with status and
//! time). One hub feeds `GET /logs` (server-sent events: the web app's Logs page, `lms log
//! stream`) and the SDK's `diagnostics` / `streamLogs` channel.
//!
//! Whole prompts and outputs are kept only when asked: model events are made only while someone
//! listens; the server's lines are also kept, the last [`KEPT`], for a listener that arrives.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::sync::lock;

/// Events kept for a listener that arrives later.
const KEPT: usize = 500;
/// The most text one event carries (a longer prompt is cut, saying so).
const MAX_TEXT: usize = 256 * 1024;

/// One event (LM Studio's `DiagnosticsLogEvent`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    pub data: LogData,
}

/// What happened (LM Studio's `DiagnosticsLogEventData`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub(crate) enum LogData {
    #[serde(rename = "llm.prediction.input", rename_all = "camelCase")]
    Input { input: String, model_path: String, model_identifier: String },
    #[serde(rename = "llm.prediction.output", rename_all = "camelCase")]
    Output { output: String, stats: Box<lmstudio::Stats>, model_path: String, model_identifier: String },
    #[serde(rename = "server.log")]
    Server { content: String, level: &'static str },
}

/// The hub: a broadcast to the listeners, and the server lines kept.
pub(crate) struct Logs {
    tx: broadcast::Sender<Arc<LogEvent>>,
    kept: Mutex<VecDeque<Arc<LogEvent>>>,
}

impl Default for Logs {
    fn default() -> Self {
        Self { tx: broadcast::channel(1024).0, kept: Mutex::new(VecDeque::new()) }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn capped(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut: longer than 256 KiB]");
    }
    text
}

impl Logs {
    /// Whether anyone listens (model events are made only then).
    pub(crate) fn listened(&self) -> bool {
        self.listeners() > 0
    }

    /// Clients following the live log (`GET /logs`, the SDK's `streamLogs`).
    pub(crate) fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    fn push(&self, data: LogData) {
        let event = Arc::new(LogEvent { timestamp: now_ms(), data });
        let mut kept = lock(&self.kept);
        if matches!(event.data, LogData::Server { .. }) {
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&event));
        }
        // Sent under the lock, so that a new listener's kept lines and live events do not overlap.
        let _ = self.tx.send(event);
    }

    /// A server line.
    pub(crate) fn server(&self, level: &'static str, content: String) {
        self.push(LogData::Server { content, level });
    }

    /// The prompt a prediction gives the model, while someone listens.
    pub(crate) fn prompt(&self, event: &lmstudio::PromptEvent<'_>) {
        if self.listened() {
            self.push(LogData::Input {
                input: capped(event.prompt.to_owned()),
                model_path: event.model_path.to_owned(),
                model_identifier: event.model_identifier.to_owned(),
            });
        }
    }

    /// A prediction's answer and stats, while someone listens.
    pub(crate) fn output(&self, result: &lmstudio::PredictionResult) {
        if self.listened() {
            let info = &result.model_info;
            self.push(LogData::Output {
                output: capped(result.content.clone()),
                stats: Box::new(result.stats.clone()),
                model_path: info.path.clone(),
                model_identifier: info.identifier.clone().unwrap_or_else(|| info.model_key.clone()),
            });
        }
    }

    /// The server lines kept (when `history`), and every event from now on.
    pub(crate) fn subscribe(&self, history: bool) -> (Vec<Arc<LogEvent>>, broadcast::Receiver<Arc<LogEvent>>) {
        let kept = lock(&self.kept);
        let past = if history { kept.iter().cloned().collect() } else { Vec::new() };
        (past, self.tx.subscribe())
    }
}

/// The next event for a listener; a listener that fell behind is told how many it missed.
pub(crate) async fn next(rx: &mut broadcast::Receiver<Arc<LogEvent>>) -> Option<Arc<LogEvent>> {
    match rx.recv().await {
        Ok(event) => Some(event),
        Err(broadcast::error::RecvError::Lagged(missed)) => Some(Arc::new(LogEvent {
            timestamp: now_ms(),
            data: LogData::Server {
                content: format!("{missed} log events were dropped: this listener fell behind"),
                level: "warn",
            },
        })),
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The three events as they go out (`GET /logs`, the SDK's `streamLogs`), LM Studio's
    /// `DiagnosticsLogEvent` shapes.
    #[test]
    fn events_have_lm_studios_shapes() {
        let at = |data| LogEvent { timestamp: 1_796_400_000_000, data };
        let stats = lmstudio::Stats {
            stop_reason: lmstudio::StopReason::EosFound,
            tokens_per_second: Some(50.0),
            num_gpu_layers: None,
            time_to_first_token_sec: Some(0.04),
            prompt_tokens_count: Some(10),
            predicted_tokens_count: Some(3),
            total_tokens_count: Some(13),
            cached_prompt_tokens_count: Some(0),
            reasoning_tokens_count: None,
            stop_string: None,
            drafts: None,
        };
        let events = [
            at(LogData::Input {
                input: "<start_of_turn>user\nHi<end_of_turn>\n".into(),
                model_path: "/m/gemma.gguf".into(),
                model_identifier: "gemma-3-270m".into(),
            }),
            at(LogData::Output {
                output: "Hello!".into(),
                stats: Box::new(stats),
                model_path: "/m/gemma.gguf".into(),
                model_identifier: "gemma-3-270m".into(),
            }),
            at(LogData::Server { content: "POST /v1/chat/completions 200 12.5 ms".into(), level: "info" }),
        ];
        insta::assert_json_snapshot!(events);
    }
}
