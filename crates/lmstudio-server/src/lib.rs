//! lmstudio-server: LM Studio's SDK websocket protocol, OpenAI-compatible and LM Studio REST
//! endpoints over the `lmstudio` library, as an axum router.
//!
//! Architecture invariant: no model logic lives here. Every handler turns a request into calls of
//! the library's public API and its result back into the wire shape.

mod anthropic;
mod downloads;
mod embeddings;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod kept;
mod logs;
mod metrics;
mod openai;
mod origin;
mod rerank;
mod responses;
mod rest_v1;
mod sdk;
mod sse;
mod state;
mod sync;
mod tokens;
mod webapp;

use std::net::SocketAddr;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use error::ApiError;
pub use state::{AppState, MAX_BODY_BYTES, MAX_SOCKET_QUEUE_BYTES};

/// The port the LM Studio SDK probes first when no host is given.
pub const SDK_DISCOVERY_PORT: u16 = 41343;
/// `GET /lmstudio-greeting`: how the SDKs tell an LM Studio server from another.
#[derive(serde::Serialize)]
struct Greeting {
    lmstudio: bool,
}

/// The whole HTTP surface with the web app at `/` ([`ServerConfig::web_app`]).
pub fn router_with_web_app(state: AppState) -> Router {
    routes(state, webapp::routes())
}

/// The whole HTTP surface, without the web app.
pub fn router(state: AppState) -> Router {
    routes(state, Router::new())
}

/// The APIs, with `pages` beside them (under the same Origin and Host checks and request log).
fn routes(state: AppState, pages: Router<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/models", get(openai::list_models))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/responses", post(responses::create))
        .route("/v1/responses/{id}", get(responses::get).delete(responses::delete))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/api/v0/models", get(openai::rest_list_models))
        .route("/api/v0/models/{*id}", get(openai::rest_get_model))
        .route("/api/v0/completions", post(openai::rest_completions))
        .route("/api/v0/chat/completions", post(openai::rest_chat_completions))
        .route("/api/v1/chat", post(rest_v1::chat::chat))
        .route("/api/v1/models", get(rest_v1::list_models))
        .route("/api/v1/models/load", post(rest_v1::load))
        .route("/api/v1/models/unload", post(rest_v1::unload))
        .route("/api/v1/models/estimate", post(rest_v1::estimate))
        .route("/api/v1/models/download", post(rest_v1::download))
        .route("/api/v1/models/download/status/{job_id}", get(rest_v1::download_status))
        .route("/logs", get(stream_logs))
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { metrics::render(state.metrics(), state.client()) }),
        )
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_api_key));
    Router::new()
        .route("/lmstudio-greeting", get(|| async { Json(Greeting { lmstudio: true }) }))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/api/v0/embeddings", post(embeddings::embeddings))
        .route("/v1/rerank", post(rerank::rerank))
        .route("/v1/reranking", post(rerank::rerank))
        .route("/rerank", post(rerank::rerank))
        .route("/tokenize", post(tokens::tokenize))
        .route("/detokenize", post(tokens::detokenize))
        .route("/health", get(|State(state): State<AppState>| async move { metrics::health(state.client()) }))
        .merge(sdk::routes())
        .merge(pages)
        .merge(protected)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(state.body_limit()))
        .layer(axum::middleware::from_fn_with_state(state.clone(), origin::guard))
        .layer(axum::middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// Logs each request at `info` when its answer starts (a stream's first byte, not its end), and
/// to the live log (`/logs`) unless it is a probe, a scrape, the log itself or the web app's files.
async fn log_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let status = response.status().as_u16();
    tracing::info!(%method, path, status, ms = format!("{ms:.1}"), "request");
    let quiet = ["/health", "/metrics", "/logs", "/", "/app.js", "/app.css"];
    if !quiet.contains(&path.as_str()) {
        let level = if status >= 500 {
            "error"
        } else if status >= 400 {
            "warn"
        } else {
            "info"
        };
        state.metrics().logs.server(level, format!("{method} {path} {status} {ms:.1} ms"));
    }
    response
}

/// `GET /logs`: the live log as server-sent events, one [`logs::LogEvent`] each (`?history=1`:
/// the server lines kept, first).
async fn stream_logs(
    State(state): State<AppState>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> impl axum::response::IntoResponse {
    let history = query.get("history").is_some_and(|v| v == "1" || v == "true");
    let (past, mut rx) = state.metrics().logs.subscribe(history);
    sse::stream(move |tx| async move {
        let event = |e: &logs::LogEvent| {
            axum::response::sse::Event::default().json_data(e).unwrap_or_else(|_| axum::response::sse::Event::default())
        };
        for e in past {
            if tx.send(event(&e)).await.is_err() {
                return;
            }
        }
        loop {
            let next = tokio::select! {
                next = logs::next(&mut rx) => next,
                () = tx.closed() => return,
            };
            let Some(e) = next else { return };
            if tx.send(event(&e)).await.is_err() {
                return;
            }
        }
    })
}

async fn require_api_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // The scheme is case-insensitive (RFC 9110): `bearer KEY` is as good as `Bearer KEY`.
    // Anthropic's clients send `x-api-key: KEY` instead.
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    let given = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim));
    if !state.key_matches(given) {
        let refused = ApiError::unauthorized();
        return if request.uri().path().starts_with("/v1/messages") {
            refused.into_anthropic_response()
        } else {
            refused.into_response()
        };
    }
    next.run(request).await
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (loopback by default).
    pub host: String,
    /// Main port (1234 by default).
    pub port: u16,
    /// Also listen on the SDK's discovery port 41343 (on the same host).
    pub discovery_port: bool,
    /// Required bearer token, if any.
    pub api_key: Option<String>,
    /// Web origins (`https://app.example`) allowed to call the server from a browser, with CORS
    /// headers; pages on loopback may call it without them, any other page is refused.
    pub cors_origins: Vec<String>,
    /// How long a client may take to send a request's headers, and how long a kept-alive
    /// connection may sit idle before its next request (websockets, once open, are not bound).
    pub header_read_timeout: std::time::Duration,
    /// Connections served at once, per listener; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// The largest request body or websocket message taken ([`MAX_BODY_BYTES`] by default).
    pub max_body_bytes: usize,
    /// What an SDK socket may have waiting to be written before its client, which has stopped
    /// reading, is disconnected ([`MAX_SOCKET_QUEUE_BYTES`] by default).
    pub max_socket_queue_bytes: usize,
    /// Serve the web app (chat, completions, models) at `/`. On by default.
    pub web_app: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 1234,
            discovery_port: true,
            api_key: None,
            cors_origins: Vec::new(),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_connections: 1024,
            max_body_bytes: MAX_BODY_BYTES,
            max_socket_queue_bytes: MAX_SOCKET_QUEUE_BYTES,
            web_app: true,
        }
    }
}

/// How long connections may take to close once shutdown has begun.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves until `shutdown` resolves; returns the addresses it listened on through `on_ready`.
///
/// On shutdown every loaded model is unloaded first, so that running predictions end with a
/// reason (`modelUnloaded`: an SDK error, an error event over SSE) instead of being cut; then the
/// listeners stop, and connections still open 5 s later are dropped.
pub async fn serve(
    client: lmstudio::Client,
    config: ServerConfig,
    on_ready: impl FnOnce(&[SocketAddr]),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let loopback_bound = origin::is_loopback_host(&config.host);
    let state =
        AppState::with_policy(client.clone(), config.api_key.clone(), config.cors_origins.clone(), loopback_bound)
            .with_body_limit(config.max_body_bytes)
            .with_socket_queue_limit(config.max_socket_queue_bytes);
    // The prompts each prediction gives the model go to the live log while someone listens.
    let logs = std::sync::Arc::clone(&state.metrics().logs);
    let _ = client.on_prompt(Some(std::sync::Arc::new(move |e: &lmstudio::PromptEvent<'_>| logs.prompt(e))));
    let app = if config.web_app { router_with_web_app(state) } else { router(state) };
    let mut listeners = vec![tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?];
    if config.discovery_port && config.port != SDK_DISCOVERY_PORT {
        match tokio::net::TcpListener::bind((config.host.as_str(), SDK_DISCOVERY_PORT)).await {
            Ok(l) => listeners.push(l),
            Err(e) => tracing::warn!("not listening on the SDK discovery port {SDK_DISCOVERY_PORT}: {e}"),
        }
    }
    let addrs: Vec<SocketAddr> = listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    on_ready(&addrs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let unloading = tokio::task::spawn_blocking(move || {
            for id in client.list_loaded().unwrap_or_default().into_iter().filter_map(|i| i.identifier) {
                let _ = client.unload(&id);
            }
        });
        let _ = unloading.await;
        let _ = stop_tx.send(true);
    });
    let mut deadline = stop_rx.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(listener, app.clone(), stop_rx.clone(), config.clone()));
    }
    let serving = async {
        while let Some(done) = tasks.join_next().await {
            done.map_err(std::io::Error::other)?;
        }
        Ok(())
    };
    tokio::select! {
        served = serving => served,
        _ = async {
            let _ = deadline.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open {SHUTDOWN_GRACE:?} after shutdown began: closed");
            Ok(())
        }
    }
}

/// Accepts connections until `stop`, each served by hyper on a task of its own, at most
/// `config.max_connections` at once; then lets the open ones finish (graceful shutdown).
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    config: ServerConfig,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    let mut open = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a little instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        // The connections open are the tasks still serving them.
        while open.try_join_next().is_some() {}
        if open.len() >= config.max_connections {
            tracing::warn!("{} connections open: one more refused", config.max_connections);
            continue;
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).with_upgrades();
        let mut stop = stop.clone();
        open.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let stopping = tokio::select! {
                _ = conn.as_mut() => false,
                stopped = stop.wait_for(|s| *s) => stopped.is_ok(),
            };
            if stopping {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        });
    }
    while open.join_next().await.is_some() {}
}
