//! Prometheus counters, rendered in the text exposition format at `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

/// Counters updated by the handlers.
#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub predictions: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub predicted_tokens: AtomicU64,
    pub errors: AtomicU64,
    pub running: AtomicI64,
}

impl Metrics {
    pub(crate) fn record(&self, result: &lmstudio::PredictionResult) {
        self.predictions.fetch_add(1, Ordering::Relaxed);
        let s = &result.stats;
        self.prompt_tokens.fetch_add(s.prompt_tokens_count.unwrap_or(0), Ordering::Relaxed);
        self.predicted_tokens.fetch_add(s.predicted_tokens_count.unwrap_or(0), Ordering::Relaxed);
    }
}

pub(crate) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let m = state.metrics();
    let counters = [
        ("lms_http_requests_total", "HTTP completion requests received.", m.requests.load(Ordering::Relaxed)),
        ("lms_predictions_total", "Predictions completed.", m.predictions.load(Ordering::Relaxed)),
        ("lms_prompt_tokens_total", "Prompt tokens of completed predictions.", m.prompt_tokens.load(Ordering::Relaxed)),
        ("lms_predicted_tokens_total", "Tokens predicted.", m.predicted_tokens.load(Ordering::Relaxed)),
        ("lms_request_errors_total", "Requests that ended in an error.", m.errors.load(Ordering::Relaxed)),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
    }
    let running = m.running.load(Ordering::Relaxed);
    out += &format!("# HELP lms_predictions_running Predictions in progress.\n# TYPE lms_predictions_running gauge\nlms_predictions_running {running}\n");
    out += &format!(
        "# HELP lms_models_loaded Loaded model instances.\n# TYPE lms_models_loaded gauge\nlms_models_loaded {}\n",
        state.client().list_loaded().map_or(0, |l| l.len())
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
