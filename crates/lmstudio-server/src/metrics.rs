//! Prometheus counters, rendered in the text exposition format at `/metrics`: ours (`lms_*`),
//! and the gauges and counters routers read under vLLM's names (`vllm:*`: the Kubernetes Gateway
//! API Inference Extension's endpoint picker, llm-d and SGLang's gateway pick a replica by them).

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

/// Counters updated by the handlers.
#[derive(Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub predictions: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Of the prompt tokens, those taken from a cache (a slot's prefix, host memory, disk)
    /// rather than evaluated.
    pub cached_prompt_tokens: AtomicU64,
    pub predicted_tokens: AtomicU64,
    pub errors: AtomicU64,
    /// `communicationWarning`s SDK clients sent: messages of ours they could not take.
    pub client_warnings: AtomicU64,
    /// SDK sockets disconnected because their client stopped reading (a full write queue).
    pub slow_clients: AtomicU64,
    /// The live log, which each prediction's answer also goes to.
    pub logs: std::sync::Arc<crate::logs::Logs>,
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
        self.cached_prompt_tokens.fetch_add(s.cached_prompt_tokens_count.unwrap_or(0), Ordering::Relaxed);
        self.predicted_tokens.fetch_add(s.predicted_tokens_count.unwrap_or(0), Ordering::Relaxed);
        self.logs.output(result);
    }
}

/// `/health`: 200 `{"status": "ok"}`, or 503 `{"status": "failed"}` while a loaded instance's
/// engine has failed (a probe then takes the replica out, or a supervisor restarts it). `lms
/// server --model` listens only once its model is loaded, so a replica that answers is ready.
pub(crate) fn health(client: &lmstudio::Client) -> impl IntoResponse {
    let loaded = client.list_loaded().unwrap_or_default();
    let failed = activities(client, &loaded).iter().any(|a| a.failure.is_some());
    let (status, word) = if failed { (StatusCode::SERVICE_UNAVAILABLE, "failed") } else { (StatusCode::OK, "ok") };
    (status, axum::Json(serde_json::json!({ "status": word })))
}

/// What each of the `loaded` instances is doing (those whose engine answers).
fn activities(client: &lmstudio::Client, loaded: &[lmstudio::ModelInfo]) -> Vec<lmstudio::Activity> {
    loaded
        .iter()
        .filter_map(|info| client.get_loaded(info.identifier.as_deref()?).ok().flatten()?.activity().ok())
        .collect()
}

/// The counters and the engines' gauges in Prometheus's text format (`/metrics`).
pub(crate) fn render(m: &Metrics, client: &lmstudio::Client) -> impl IntoResponse {
    let (prompt, cached) = (m.prompt_tokens.load(Ordering::Relaxed), m.cached_prompt_tokens.load(Ordering::Relaxed));
    let predicted = m.predicted_tokens.load(Ordering::Relaxed);
    let counters = [
        ("lms_http_requests_total", "HTTP completion requests received.", m.requests.load(Ordering::Relaxed)),
        ("lms_predictions_total", "Predictions completed.", m.predictions.load(Ordering::Relaxed)),
        ("lms_prompt_tokens_total", "Prompt tokens of completed predictions.", prompt),
        ("lms_prompt_tokens_cached_total", "Of those, tokens taken from a cache, not evaluated.", cached),
        ("lms_prompt_tokens_evaluated_total", "Of those, tokens evaluated.", prompt.saturating_sub(cached)),
        ("vllm:prompt_tokens_total", "Prompt tokens of completed predictions (vLLM's name).", prompt),
        ("vllm:generation_tokens_total", "Tokens predicted (vLLM's name).", predicted),
        ("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache (vLLM's name).", prompt),
        ("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache (vLLM's name).", cached),
        ("lms_predicted_tokens_total", "Tokens predicted.", predicted),
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
    let activities = activities(client, &loaded);
    let sum = |f: fn(&lmstudio::Activity) -> usize| activities.iter().map(f).sum::<usize>();
    let (held, capacity) = (sum(|a| a.kv_tokens), sum(|a| a.kv_capacity));
    let kv_usage = if capacity > 0 { held as f64 / capacity as f64 } else { 0.0 };
    // Usize counts as floats: Prometheus's text holds both, and an integral float prints as one.
    let gauges = [
        ("lms_predictions_running", "Predictions holding a slot.", sum(|a| a.running) as f64),
        ("lms_predictions_queued", "Predictions waiting for a slot.", sum(|a| a.queued) as f64),
        (
            "lms_prediction_slots",
            "Predictions that can run at once, over all loaded instances.",
            sum(|a| a.slots) as f64,
        ),
        (
            "lms_prompt_cache_bytes",
            "Host memory held by saved prompts, over all loaded instances.",
            sum(|a| a.prompt_cache_bytes) as f64,
        ),
        ("lms_models_loaded", "Loaded model instances.", loaded.len() as f64),
        (
            "lms_log_streams",
            "Clients following the live log (GET /logs, the SDK's streamLogs).",
            m.logs.listeners() as f64,
        ),
        (
            "lms_models_failed",
            "Loaded instances whose engine failed (unload and load them again).",
            sum(|a| usize::from(a.failure.is_some())) as f64,
        ),
        ("vllm:num_requests_running", "Predictions holding a slot (vLLM's name).", sum(|a| a.running) as f64),
        ("vllm:num_requests_waiting", "Predictions waiting for a slot (vLLM's name).", sum(|a| a.queued) as f64),
        (
            "vllm:kv_cache_usage_perc",
            "Share of the KV cache the running predictions hold, 0 to 1 (vLLM's name).",
            kv_usage,
        ),
        ("vllm:gpu_cache_usage_perc", "The same share, by vLLM's older name.", kv_usage),
    ];
    for (name, help, value) in gauges {
        out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
