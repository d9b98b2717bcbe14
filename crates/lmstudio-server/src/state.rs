//! What every handler shares: the library client, the key, the counters, the download jobs and
//! the limits of this server.

use std::sync::Arc;

use crate::error::ApiError;
use crate::{downloads, kept, metrics};

/// Request bodies (and websocket messages) larger than this are refused (413 over HTTP), unless
/// [`AppState::with_body_limit`] says otherwise. 8 MiB holds a prompt of about two million tokens.
pub const MAX_BODY_BYTES: usize = 8 << 20;
/// What an SDK websocket may have queued for its client and not yet written, unless
/// [`AppState::with_socket_queue_limit`] says otherwise: past it, the client has stopped reading
/// and is disconnected (its predictions stop), so it cannot grow the server's memory.
pub const MAX_SOCKET_QUEUE_BYTES: usize = 16 << 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The largest request body or websocket message taken.
    body_limit: usize,
    /// The most bytes an SDK socket may have waiting to be written.
    socket_queue_limit: usize,
}

struct Inner {
    client: lmstudio::Client,
    api_key: Option<String>,
    metrics: metrics::Metrics,
    /// Origins that get CORS headers (`--cors-origin`).
    cors_origins: Vec<String>,
    /// Whether the server listens on loopback only, so that `Host` must name loopback too.
    loopback_bound: bool,
    /// `POST /api/v1/models/download` jobs.
    downloads: downloads::Jobs,
    /// Responses kept for `previous_response_id`.
    responses: kept::Store,
}

impl AppState {
    /// State over `client`; with `api_key`, every endpoint but the greeting and `/health` requires
    /// `Authorization: Bearer <key>` (websocket clients may instead send it as `clientPasskey`).
    pub fn new(client: lmstudio::Client, api_key: Option<String>) -> Self {
        Self::with_policy(client, api_key, Vec::new(), true)
    }

    /// [`AppState::new`] with the web-page policy of `origin.rs`: `cors_origins` get CORS headers;
    /// with `loopback_bound`, requests must name a loopback `Host`.
    pub fn with_policy(
        client: lmstudio::Client,
        api_key: Option<String>,
        cors_origins: Vec<String>,
        loopback_bound: bool,
    ) -> Self {
        let metrics = metrics::Metrics::default();
        let downloads = downloads::Jobs::default();
        let responses = kept::Store::default();
        let inner = Arc::new(Inner { client, api_key, metrics, cors_origins, loopback_bound, downloads, responses });
        Self { inner, body_limit: MAX_BODY_BYTES, socket_queue_limit: MAX_SOCKET_QUEUE_BYTES }
    }

    /// This state with request bodies and websocket messages limited to `bytes`.
    pub fn with_body_limit(self, bytes: usize) -> Self {
        Self { body_limit: bytes, ..self }
    }

    pub(crate) fn body_limit(&self) -> usize {
        self.body_limit
    }

    /// This state with an SDK socket's unwritten messages limited to `bytes`.
    pub fn with_socket_queue_limit(self, bytes: usize) -> Self {
        Self { socket_queue_limit: bytes, ..self }
    }

    pub(crate) fn socket_queue_limit(&self) -> usize {
        self.socket_queue_limit
    }

    pub(crate) fn cors_origins(&self) -> &[String] {
        &self.inner.cors_origins
    }

    pub(crate) fn loopback_bound(&self) -> bool {
        self.inner.loopback_bound
    }

    pub(crate) fn client(&self) -> &lmstudio::Client {
        &self.inner.client
    }

    /// The model a request names (loaded on demand), else any loaded model, else the default one.
    pub(crate) async fn llm(&self, model: Option<&str>) -> lmstudio::Result<lmstudio::Llm> {
        match model {
            Some(name) => self.client().llm_async(name).await,
            None => self.client().default_llm_async().await,
        }
    }

    /// The embedding model a request names (loaded on demand); `model` is required, as OpenAI's
    /// and llama-server's embedding and rerank requests have it.
    pub(crate) async fn embedding_model(&self, model: Option<&str>) -> Result<lmstudio::EmbeddingModel, ApiError> {
        let name = model.ok_or_else(|| ApiError::bad_request("`model` is required"))?;
        Ok(self.client().embedding_model_async(name).await?)
    }

    pub(crate) fn downloads(&self) -> &downloads::Jobs {
        &self.inner.downloads
    }

    pub(crate) fn responses(&self) -> &kept::Store {
        &self.inner.responses
    }

    pub(crate) fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn api_key(&self) -> Option<&str> {
        self.inner.api_key.as_deref()
    }

    /// Whether `given` is the API key (always, when the server has none). Compared in constant
    /// time, so that how long a refusal takes says nothing about how much of a guess was right.
    pub(crate) fn key_matches(&self, given: Option<&str>) -> bool {
        let Some(key) = self.api_key() else { return true };
        let given = given.unwrap_or_default().as_bytes();
        let key = key.as_bytes();
        let mut diff = u8::from(given.len() != key.len());
        for (i, k) in key.iter().enumerate() {
            diff |= k ^ given.get(i).copied().unwrap_or(!k);
        }
        diff == 0
    }
}
