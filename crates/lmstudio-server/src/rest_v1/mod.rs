//! LM Studio's REST API v1, model management: `GET /api/v1/models` (with loaded instances),
//! `POST /api/v1/models/load`, `POST /api/v1/models/unload`, with LM Studio's field names; its
//! chat (`POST /api/v1/chat`) is [`chat`]'s.

pub(crate) mod chat;

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use lmstudio::store::hub::HubRequest;
use serde::{Deserialize, Serialize};

use crate::downloads::Status;
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/v1/models`.
#[derive(Debug, Serialize)]
pub(crate) struct Models {
    models: Vec<Model>,
}

/// A model with LM Studio's v1 field names.
#[derive(Debug, Serialize)]
struct Model {
    #[serde(rename = "type")]
    kind: String,
    publisher: String,
    key: String,
    display_name: String,
    architecture: Option<String>,
    quantization: Option<Quantization>,
    size_bytes: u64,
    params_string: Option<String>,
    loaded_instances: Vec<Instance>,
    max_context_length: u64,
    format: String,
    capabilities: Capabilities,
    description: Option<String>,
}

#[derive(Debug, Serialize)]
struct Quantization {
    name: String,
    bits_per_weight: u32,
}

#[derive(Debug, Serialize)]
struct Instance {
    id: Option<String>,
    config: InstanceConfig,
    /// Ours: its slots, running and queued predictions, TTL left and memory now.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<lmstudio::InstanceState>,
}

#[derive(Debug, Serialize)]
struct InstanceConfig {
    context_length: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Capabilities {
    vision: bool,
    trained_for_tool_use: bool,
}

pub(crate) async fn list_models(State(state): State<AppState>) -> Result<Json<Models>, ApiError> {
    let models = state.client().list_models_async().await?;
    let loaded = state.client().list_loaded_async().await?;
    Ok(Json(Models { models: models.iter().map(|m| Model::of(m, &loaded)).collect() }))
}

impl Model {
    /// `entry` as LM Studio lists it, with the state of its instances among `loaded`.
    fn of(entry: &lmstudio::ModelEntry, loaded: &[lmstudio::ModelInfo]) -> Self {
        let info = &entry.info;
        let state_of = |id: &Option<String>| loaded.iter().find(|l| l.identifier == *id).and_then(|l| l.state.clone());
        let instances = entry
            .instances
            .iter()
            .map(|i| Instance {
                id: i.identifier.clone(),
                config: InstanceConfig { context_length: i.context_length },
                state: state_of(&i.identifier),
            })
            .collect();
        Self {
            kind: info.kind.clone(),
            publisher: info.path.split('/').next().unwrap_or_default().to_owned(),
            key: info.model_key.clone(),
            display_name: info.display_name.clone(),
            architecture: info.architecture.clone(),
            quantization: info
                .quantization
                .as_ref()
                .map(|q| Quantization { name: q.name.clone(), bits_per_weight: q.bits }),
            size_bytes: info.size_bytes,
            params_string: info.params_string.clone(),
            loaded_instances: instances,
            max_context_length: info.max_context_length,
            format: info.format.clone(),
            capabilities: Capabilities { vision: info.vision, trained_for_tool_use: info.trained_for_tool_use },
            description: None,
        }
    }
}

/// The reply to a load, in both shapes LM Studio's docs have given it: `model_instance_id` and
/// `config` (0.4.0), `type`, `instance_id`, `status` and, when asked, `load_config` (later).
#[derive(Debug, Serialize)]
pub(crate) struct Loaded {
    #[serde(rename = "type")]
    kind: String,
    instance_id: String,
    model_instance_id: String,
    status: &'static str,
    config: InstanceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_config: Option<InstanceConfig>,
    load_time_seconds: f64,
}

/// The reply to an unload.
#[derive(Debug, Serialize)]
pub(crate) struct Unloaded {
    instance_id: String,
}

/// The reply to a download: the job, or that there is nothing to fetch.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum DownloadReply {
    Started(Status),
    /// `{"status": "already_downloaded"}`.
    Done {
        status: &'static str,
    },
}

/// The body of `POST /api/v1/models/load`: the settings in `config` (0.4.0's docs) or beside
/// `model` (later ones); LM Studio's other fields (batch size, experts) are refused by name until
/// we act on them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadRequest {
    model: String,
    #[serde(default)]
    config: LoadSettings,
    context_length: Option<u32>,
    flash_attention: Option<bool>,
    offload_kv_cache_to_gpu: Option<bool>,
    /// Ours, beyond LM Studio's: predictions at once (slots).
    parallel: Option<u32>,
    /// Ours: seconds without a prediction before the instance unloads.
    ttl: Option<u64>,
    /// Ours: GPU offload, `"off"`, `"max"` or a share of the layers.
    gpu: Option<lmstudio::GpuOffload>,
    /// Whether the reply has `load_config`.
    #[serde(default)]
    echo_load_config: bool,
}

impl LoadRequest {
    /// The load config it asks for: its settings over the server's own.
    fn load_config(&self, client: &lmstudio::Client) -> lmstudio::LoadConfig {
        let defaults = client.default_load_config();
        lmstudio::LoadConfig {
            context_length: self.config.context_length.or(self.context_length).or(defaults.context_length),
            flash_attention: self.config.flash_attention.or(self.flash_attention),
            offload_kv_cache_to_gpu: self.config.offload_kv_cache_to_gpu.or(self.offload_kv_cache_to_gpu),
            parallel: self.parallel.or(defaults.parallel),
            ttl: self.ttl.or(defaults.ttl),
            gpu: self.gpu.or(defaults.gpu),
            ..defaults
        }
    }
}

/// The reply to `POST /api/v1/models/estimate`: what the load would take and what is available.
#[derive(Debug, Serialize)]
pub(crate) struct Estimated {
    estimate: lmstudio::MemoryEstimate,
    /// The host memory available now (MiB), where the system says.
    available_mib: Option<u64>,
    /// Whether the estimate fits in it.
    fits: bool,
}

/// `POST /api/v1/models/estimate` (ours): the memory estimate of a load with the same body as
/// `load`, which loads nothing (the web app shows it before loading).
pub(crate) async fn estimate(
    State(state): State<AppState>,
    request: Result<Json<LoadRequest>, JsonRejection>,
) -> Result<Json<Estimated>, ApiError> {
    let request = crate::openai::parse(request)?;
    let client = state.client().clone();
    let config = request.load_config(&client);
    let (estimate, available_mib) = tokio::task::spawn_blocking(move || client.estimate(&request.model, &config))
        .await
        .map_err(|e| lmstudio::Error::Engine(e.to_string()))??;
    let fits = available_mib.is_none_or(|a| estimate.total_mib <= a);
    Ok(Json(Estimated { estimate, available_mib, fits }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LoadSettings {
    context_length: Option<u32>,
    flash_attention: Option<bool>,
    offload_kv_cache_to_gpu: Option<bool>,
}

pub(crate) async fn load(
    State(state): State<AppState>,
    request: Result<Json<LoadRequest>, JsonRejection>,
) -> Result<Json<Loaded>, ApiError> {
    let request = crate::openai::parse(request)?;
    let client = state.client();
    let config = request.load_config(client);
    let started = Instant::now();
    let llm = client.load_async(&request.model, &config).await?;
    let used = || InstanceConfig { context_length: llm.info().context_length };
    Ok(Json(Loaded {
        kind: llm.info().kind.clone(),
        instance_id: llm.identifier().to_owned(),
        model_instance_id: llm.identifier().to_owned(),
        status: "loaded",
        config: used(),
        load_config: request.echo_load_config.then(used),
        load_time_seconds: started.elapsed().as_secs_f64(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnloadRequest {
    instance_id: String,
}

pub(crate) async fn unload(
    State(state): State<AppState>,
    request: Result<Json<UnloadRequest>, JsonRejection>,
) -> Result<Json<Unloaded>, ApiError> {
    let request = crate::openai::parse(request)?;
    state.client().unload_async(&request.instance_id).await?;
    Ok(Json(Unloaded { instance_id: request.instance_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadRequest {
    /// `publisher/repo` on the hub, or a Hugging Face URL.
    model: String,
    /// The quantization to pick (default Q4_K_M).
    quantization: Option<String>,
}

pub(crate) async fn download(
    State(state): State<AppState>,
    request: Result<Json<DownloadRequest>, JsonRejection>,
) -> Result<Json<DownloadReply>, ApiError> {
    let request = crate::openai::parse(request)?;
    let store = state
        .client()
        .store()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("this server relays to another one and has no models directory"))?;
    let mut hub = HubRequest::parse(&request.model)?;
    if let Some(q) = request.quantization.filter(|q| !q.is_empty()) {
        hub.pick = Some(q);
    }
    // The hub's file list first: a repository or quantization that is not there is an error now.
    let planner = store.clone();
    let plan = tokio::task::spawn_blocking(move || planner.plan_hub_download(&hub))
        .await
        .map_err(|e| ApiError::from(lmstudio::Error::Engine(format!("the download task failed: {e}"))))??;
    if plan.complete() {
        return Ok(Json(DownloadReply::Done { status: "already_downloaded" }));
    }
    Ok(Json(DownloadReply::Started(state.downloads().start(store, plan).status())))
}

pub(crate) async fn download_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Status>, ApiError> {
    let job = state.downloads().get(&id);
    job.map(|j| Json(j.status())).ok_or_else(|| ApiError::not_found(format!("no download job {id:?}")))
}
