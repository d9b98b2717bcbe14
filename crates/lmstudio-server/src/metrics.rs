//! Prometheus counters, rendered in the text exposition format at `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::header;
use axum::response::IntoResponse;

/// Counters updated by the handlers.
#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub predictions: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub predicted_tokens: AtomicU64,
    pub errors: AtomicU64,
    /// `communicationWarning`s SDK clients sent: messages of ours they could not take.
    pub client_warnings: AtomicU64,
    /// SDK sockets disconnected because their client stopped reading (a full write queue).
    pub slow_clients: AtomicU64,
}

impl Metrics {
    pub(crate) fn record(&self, result: &lmstudio::PredictionResult) {
        self.predictions.fetch_add(1, Ordering::Relaxed);
        let s = &result.stats;
        tracing::info!(
            model = result.model_info.identifier.as_deref().unwrap_or(""),
            prompt = s.prompt_tokens_count.unwrap_or(0),
            cached = s.cached_prompt_tokens_count.unwrap_or(0),
            predicted = s.predicted_tokens_count.unwrap_or(0),
            first_token_s = s.time_to_first_token_sec.unwrap_or(0.0),
            tokens_per_s = s.tokens_per_second.unwrap_or(0.0),
            stop = ?s.stop_reason,
            "prediction done"
        );
        self.prompt_tokens.fetch_add(s.prompt_tokens_count.unwrap_or(0), Ordering::Relaxed);
        self.predicted_tokens.fetch_add(s.predicted_tokens_count.unwrap_or(0), Ordering::Relaxed);
    }
}

/// The counters and the engines' gauges in Prometheus's text format (`/metrics`).
pub(crate) fn render(m: &Metrics, client: &lmstudio::Client) -> impl IntoResponse {
    let counters = [
        ("lms_http_requests_total", "HTTP completion requests received.", m.requests.load(Ordering::Relaxed)),
        ("lms_predictions_total", "Predictions completed.", m.predictions.load(Ordering::Relaxed)),
        ("lms_prompt_tokens_total", "Prompt tokens of completed predictions.", m.prompt_tokens.load(Ordering::Relaxed)),
        ("lms_predicted_tokens_total", "Tokens predicted.", m.predicted_tokens.load(Ordering::Relaxed)),
        ("lms_request_errors_total", "Requests that ended in an error.", m.errors.load(Ordering::Relaxed)),
        (
            "lms_client_warnings_total",
            "Messages SDK clients could not take (communicationWarning).",
            m.client_warnings.load(Ordering::Relaxed),
        ),
        (
            "lms_slow_clients_disconnected_total",
            "SDK sockets closed because their client stopped reading.",
            m.slow_clients.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        out += &format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
    }
    // Gauges come from the engines, so that every way a prediction can end (a client that hangs
    // up included) is counted where it happens.
    let loaded = client.list_loaded().unwrap_or_default();
    let activities: Vec<lmstudio::Activity> = loaded
        .iter()
        .filter_map(|info| client.get_loaded(info.identifier.as_deref()?).ok().flatten()?.activity().ok())
        .collect();
    let sum = |f: fn(&lmstudio::Activity) -> usize| activities.iter().map(f).sum::<usize>();
    let gauges = [
        ("lms_predictions_running", "Predictions holding a slot.", sum(|a| a.running)),
        ("lms_predictions_queued", "Predictions waiting for a slot.", sum(|a| a.queued)),
        ("lms_prediction_slots", "Predictions that can run at once, over all loaded instances.", sum(|a| a.slots)),
        (
            "lms_prompt_cache_bytes",
            "Host memory held by saved prompts, over all loaded instances.",
            sum(|a| a.prompt_cache_bytes),
        ),
        ("lms_models_loaded", "Loaded model instances.", loaded.len()),
        (
            "lms_models_failed",
            "Loaded instances whose engine failed (unload and load them again).",
            sum(|a| usize::from(a.failure.is_some())),
        ),
    ];
    for (name, help, value) in gauges {
        out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
